"""A real HTTP server that plays scripted answers, standing in for external APIs.

`FakeApi` (served by the `fake_api` fixture) is a `ThreadingHTTPServer` on 127.0.0.1,
port 0, serving from a background thread, so the code under test goes through real
sockets, real HTTP parsing and real timeouts. Tests queue answers with
`fake_api.reply(...)`; each request takes the next one and is recorded in
`fake_api.requests`.
"""

from __future__ import annotations

import base64
import dataclasses
import http.server
import io
import json
import threading
from typing import Any

from PIL import Image


@dataclasses.dataclass(frozen=True)
class Reply:
    """One scripted answer (see `FakeApi.reply`)."""

    status: int = 200
    body: object = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The request body decoded as JSON."""
        return json.loads(self.body)


class FakeApi:
    """The scripted server; `url` is its base URL, `requests` what it has received."""

    def __init__(self) -> None:
        self._replies: list[Reply] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.requests: list[Seen] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def reply(
        self,
        status: int = 200,
        body: object = b"",
        *,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Queue one answer; answers are used in order, an unplanned request gets a 599.

        A JSON-able `body` is sent as JSON, bytes as they are; `delay` seconds pass first.
        """
        with self._lock:
            self._replies.append(Reply(status, body, dict(headers or {}), delay))

    @staticmethod
    def png_base64(width: int, height: int, colour: tuple[int, int, int] = (200, 40, 40)) -> str:
        """A solid PNG of the given size, base64-encoded as image APIs return it."""
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), colour).save(buffer, "PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    def take(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            if self._replies:
                return self._replies.pop(0)
        return Reply(status=599, body={"error": "no reply planned"})


def _handler_for(api: FakeApi) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen = Seen("POST", self.path, dict(self.headers.items()), self.rfile.read(length))
            reply = api.take(seen)
            if reply.delay and api.stopping.wait(reply.delay):
                return  # the test is over; do not answer a client that is gone
            body = reply.body
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and hung up, which some tests want

        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # keep test output quiet

    return Handler
