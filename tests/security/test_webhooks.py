"""Webhooks: private and loopback targets are refused under the default config, and a
webhook secret never shows up in any process's log, whether the task was refused or its
webhook was delivered."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import queue
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from security import rpcs
from security.badtokens import BadTokens
from security.conftest import World, register

from kiln.auth.v1 import auth_pb2_grpc
from kiln.common.testing.nats_server import NatsServer
from kiln.tasks.v1 import tasks_pb2

CREATE = rpcs.rpc_named("TaskService.CreateTask")

PRIVATE_TARGETS = [
    "http://127.0.0.1:8080/hook",
    "https://localhost/hook",
    "http://[::1]/hook",
    "https://10.1.2.3/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.10/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0/hook",
    "https://[fd00::1]/hook",
]


def _webhook_request(url: str, secret: str) -> tasks_pb2.CreateTaskRequest:
    return tasks_pb2.CreateTaskRequest(
        task_name="webhook",
        prompt_template="a red cube",
        settings=tasks_pb2.TaskSettings(
            queue=tasks_pb2.QUEUE_STANDARD,
            output_format=tasks_pb2.OUTPUT_FORMAT_JPEG,
            webhook=tasks_pb2.Webhook(url=url, secret=secret),
        ),
    )


@pytest.mark.parametrize("url", PRIVATE_TARGETS)
def test_private_and_loopback_targets_are_refused_by_default(world: World, url: str) -> None:
    """With the default config a webhook to a private, loopback, link-local or unspecified
    address is INVALID_ARGUMENT on settings.webhook.url, and the error does not echo the
    secret; at the end of the package no process has logged it either."""
    secret = f"refused-{secrets.token_hex(12)}"
    outcome = rpcs.call(
        world.channels[rpcs.TASKS], CREATE, _webhook_request(url, secret), world.owner.metadata
    )
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome
    assert "settings.webhook.url" in outcome.details
    assert secret not in outcome.all_text()
    assert secret not in world.logs()


# IPv6 forms that reach 127.0.0.1 (NAT64, 6to4, IPv4-compatible, IPv4-mapped), and URLs
# no HTTP client or resolver can use (no IDNA form, a malformed A-label, a 64-character label).
EMBEDDED_AND_UNSENDABLE_TARGETS = [
    "http://[64:ff9b::7f00:1]/hook",
    "http://[2002:7f00:1::]/hook",
    "http://[::7f00:1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://\u2460.example/hook",
    "http://xn--.example/hook",
    f"http://{'a' * 64}.example/hook",
]


@pytest.mark.parametrize("url", EMBEDDED_AND_UNSENDABLE_TARGETS)
def test_embedded_ipv4_and_unsendable_targets_are_refused(world: World, url: str) -> None:
    """CreateTask refuses, as INVALID_ARGUMENT on settings.webhook.url, an IPv6 literal that
    embeds a loopback IPv4 address and a URL that could never be sent."""
    outcome = rpcs.call(
        world.channels[rpcs.TASKS],
        CREATE,
        _webhook_request(url, "embedded-secret-0123"),
        world.owner.metadata,
    )
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome
    assert "settings.webhook.url" in outcome.details


class _Receiver(http.server.BaseHTTPRequestHandler):
    inbox: queue.Queue[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.inbox.put(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, queue.Queue[tuple[dict[str, str], bytes]]]]:
    """A local HTTP server that records every POST."""
    inbox: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
    handler = type("Receiver", (_Receiver,), {"inbox": inbox})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", inbox
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(180)
def test_delivered_webhook_is_signed_and_its_secret_never_logged(
    postgres_server: Any,
    private_nats: NatsServer,
    tmp_path: Path,
    receiver: tuple[str, queue.Queue[tuple[dict[str, str], bytes]]],
) -> None:
    """On a stack that allows private targets, a finished task's webhook arrives with a
    valid HMAC signature; the secret is absent from GetTask and from every line auth, tasks
    and the worker logged from start to delivery."""
    url, inbox = receiver
    secret = f"delivered-{secrets.token_hex(16)}"
    with rpcs.own_stack(
        postgres_server, private_nats, tmp_path, {"TASKS_WEBHOOK_ALLOW_PRIVATE": "true"}
    ) as stack:
        channels = {
            rpcs.AUTH: grpc.insecure_channel(stack.auth.target),
            rpcs.TASKS: grpc.insecure_channel(stack.tasks.target),
        }
        try:
            owner = register(auth_pb2_grpc.AuthServiceStub(channels[rpcs.AUTH]), "hooked")
            world = World(
                stack,
                channels,
                owner,
                owner,
                owner,
                owner,
                BadTokens(tmp_path / "keys", owner.token),
            )
            created = world.tasks.CreateTask(
                _webhook_request(url, secret), metadata=owner.metadata, timeout=20
            ).task
            headers, body = inbox.get(timeout=90)
            timestamp = headers["kiln-webhook-timestamp"]
            expected = hmac.new(
                secret.encode(), f"{timestamp}.{body.decode()}".encode(), hashlib.sha256
            ).hexdigest()
            assert hmac.compare_digest(headers["kiln-webhook-signature"], expected)
            assert created.id.encode() in body
            task = world.tasks.GetTask(
                tasks_pb2.GetTaskRequest(task_id=created.id), metadata=owner.metadata
            ).task
            assert task.settings.webhook.url == url
            assert task.settings.webhook.secret == ""
            logs = world.logs()
            assert "webhook" in logs  # the sender did log its work...
            assert secret not in logs  # ...but never the secret
            assert secret not in body.decode()
        finally:
            for channel in channels.values():
                channel.close()
