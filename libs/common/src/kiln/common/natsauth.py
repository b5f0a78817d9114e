"""Who may do what on the NATS bus: one user per Kiln service, each with its role's subjects.

The bus is not open: nats-server's `authorization` block lists one user per role, and a
client without credentials is refused. This module is the one home of those permissions;
the test harness, `make run` and the Kubernetes config (`deploy/k8s/base/nats-auth.conf`,
kept equal to `authorization_config()` by a test) all use it.

- tasks owns the topology: it creates and updates every stream, consumer, key-value bucket
  and the object store, publishes jobs, writes cancellations and queue pauses, consumes
  events and advisories, reads images and heartbeats.
- imagegen (the workers) takes jobs from its queues' consumers, acknowledges them, publishes
  events and heartbeats, writes images, shared polishes and the render index, reads stored
  images (to reuse them), reads and watches pauses and cancellations. It creates nothing:
  it waits until tasks has provisioned the bus.
- auth owns the `auth_accounts` bucket (account changes that tasks and imagegen read and
  watch).

Replies come back on a per-role inbox (`_INBOX.<role>.`), so no role can read or answer
another role's replies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from kiln.common import bus

TASKS = "tasks"
IMAGEGEN = "imagegen"
AUTH = "auth"
ROLES = (TASKS, IMAGEGEN, AUTH)
"""Every service role that connects to NATS; each is also the NATS user name."""

AUTH_ACCOUNTS_BUCKET = "auth_accounts"
"""Account changes (role, active) that auth writes and the other services watch."""


def inbox_prefix(role: str) -> str:
    """Where replies to `role`'s requests arrive (nats-py `inbox_prefix`)."""
    return f"_INBOX.{role}"


@dataclasses.dataclass(frozen=True)
class Permissions:
    """Subjects one user may publish to and subscribe to (everything else is denied)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def _kv(bucket: str) -> str:
    return f"KV_{bucket}"


def _obj(store: str) -> str:
    return f"OBJ_{store}"


def _manage(stream: str) -> list[str]:
    """Create, update, delete, purge and read a stream; create and use its consumers."""
    return [
        f"$JS.API.STREAM.*.{stream}",
        f"$JS.API.STREAM.MSG.*.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.CONSUMER.*.{stream}",
        f"$JS.API.CONSUMER.*.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]


def _read(stream: str) -> list[str]:
    """Look up a stream and get its messages (KV get, object metadata)."""
    return [
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
    ]


def _watch(stream: str) -> list[str]:
    """Ordered (ephemeral) consumers: KV watches and object reads, with flow control."""
    return [
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.INFO.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]


# Every role: account info (the health probe) and looking a stream up by subject (nats-py
# does that for ordered consumers).
_EVERY_ROLE = ["$JS.API.INFO", "$JS.API.STREAM.NAMES"]

_TASKS_STREAMS = (
    bus.JOBS_STREAM,
    bus.EVENTS_STREAM,
    bus.ADVISORIES_STREAM,
    _kv(bus.WORKERS_BUCKET),
    _kv(bus.QUEUE_STATE_BUCKET),
    _kv(bus.CANCELLATIONS_BUCKET),
    _kv(bus.POLISH_CACHE_BUCKET),
    _kv(bus.RENDER_INDEX_BUCKET),
    _obj(bus.IMAGES_STORE),
)


def _tasks() -> Permissions:
    owned = [subject for stream in _TASKS_STREAMS for subject in _manage(stream)]
    return Permissions(
        publish=(
            *_EVERY_ROLE,
            *owned,
            *_read(_kv(AUTH_ACCOUNTS_BUCKET)),
            *_watch(_kv(AUTH_ACCOUNTS_BUCKET)),
            *(bus.jobs_subject(q) for q in bus.QUEUES),
            f"$KV.{bus.CANCELLATIONS_BUCKET}.>",
            f"$KV.{bus.QUEUE_STATE_BUCKET}.>",
            f"$JS.ACK.{bus.EVENTS_STREAM}.{bus.PROGRESS_CONSUMER}.>",
            f"$JS.ACK.{bus.ADVISORIES_STREAM}.{bus.ADVISORIES_CONSUMER}.>",
            f"{bus.TASK_CHANGES_PREFIX}.>",
        ),
        subscribe=(f"{inbox_prefix(TASKS)}.>", f"{bus.TASK_CHANGES_PREFIX}.>"),
    )


def _imagegen() -> Permissions:
    images = _obj(bus.IMAGES_STORE)
    return Permissions(
        publish=(
            *_EVERY_ROLE,
            # Waiting until tasks has provisioned the bus.
            *(f"$JS.API.STREAM.INFO.{s}" for s in (bus.JOBS_STREAM, bus.EVENTS_STREAM)),
            f"$JS.API.STREAM.INFO.{bus.ADVISORIES_STREAM}",
            *(
                f"$JS.API.CONSUMER.INFO.{bus.JOBS_STREAM}.{bus.worker_consumer(q)}"
                for q in bus.QUEUES
            ),
            *(
                f"$JS.API.CONSUMER.MSG.NEXT.{bus.JOBS_STREAM}.{bus.worker_consumer(q)}"
                for q in bus.QUEUES
            ),
            *(f"$JS.ACK.{bus.JOBS_STREAM}.{bus.worker_consumer(q)}.>" for q in bus.QUEUES),
            bus.EVENTS_WILDCARD,
            f"$JS.API.STREAM.INFO.{_kv(bus.WORKERS_BUCKET)}",
            f"$KV.{bus.WORKERS_BUCKET}.>",
            *_read(_kv(bus.POLISH_CACHE_BUCKET)),
            f"$KV.{bus.POLISH_CACHE_BUCKET}.>",
            *_read(_kv(bus.RENDER_INDEX_BUCKET)),
            f"$KV.{bus.RENDER_INDEX_BUCKET}.>",
            *_read(_kv(bus.QUEUE_STATE_BUCKET)),
            *_watch(_kv(bus.QUEUE_STATE_BUCKET)),
            *_read(_kv(bus.CANCELLATIONS_BUCKET)),
            *_watch(_kv(bus.CANCELLATIONS_BUCKET)),
            *_read(_kv(AUTH_ACCOUNTS_BUCKET)),
            *_watch(_kv(AUTH_ACCOUNTS_BUCKET)),
            # Storing an image: look up an older version, purge its chunks, write chunks
            # and metadata.
            *_read(images),
            f"$JS.API.STREAM.PURGE.{images}",
            f"$O.{bus.IMAGES_STORE}.>",
            # Reusing a stored image: reading its chunks (an ordered consumer).
            *_watch(images),
        ),
        subscribe=(f"{inbox_prefix(IMAGEGEN)}.>",),
    )


def _auth() -> Permissions:
    bucket = AUTH_ACCOUNTS_BUCKET
    return Permissions(
        publish=(*_EVERY_ROLE, *_manage(_kv(bucket)), f"$KV.{bucket}.>"),
        subscribe=(f"{inbox_prefix(AUTH)}.>",),
    )


def permissions(role: str) -> Permissions:
    """What `role` may do; ValueError for an unknown role."""
    builders = {TASKS: _tasks, IMAGEGEN: _imagegen, AUTH: _auth}
    if role not in builders:
        raise ValueError(f"unknown NATS role {role!r}; one of {', '.join(ROLES)}")
    return builders[role]()


def password_variable(role: str) -> str:
    """The nats-server environment variable holding `role`'s password (Kubernetes)."""
    return f"KILN_NATS_{role.upper()}_PASSWORD"


def _quote(text: str) -> str:
    # Quoted, `$JS...` is a subject and not a variable reference.
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _subjects(subjects: Iterable[str]) -> list[str]:
    """One subject per line, so a review of the rendered file reads like a list."""
    return [f"        {_quote(s)}" for s in subjects]


def authorization_config(
    passwords: Mapping[str, str] | None = None, *, superuser: tuple[str, str] | None = None
) -> str:
    """The nats-server `authorization` block with one user per role.

    `passwords` maps a role to its password; a role left out gets a reference to the
    environment variable `password_variable(role)`, which nats-server resolves at start
    (the Kubernetes way: the variable comes from a Secret). `superuser` (name, password)
    adds a user without limits, for test harnesses only.
    """
    lines = [
        "# Generated by kiln.common.natsauth.authorization_config(); do not edit by hand.",
        "# One user per Kiln service; a client without credentials is refused.",
        "authorization {",
        "  users = [",
    ]
    for role in ROLES:
        given = (passwords or {}).get(role)
        password = _quote(given) if given is not None else f"${password_variable(role)}"
        allowed = permissions(role)
        lines += [
            f"    {{user: {_quote(role)}, password: {password}, permissions: {{",
            "      publish: {allow: [",
            *_subjects(allowed.publish),
            "      ]}",
            "      subscribe: {allow: [",
            *_subjects(allowed.subscribe),
            "      ]}",
            "    }}",
        ]
    if superuser is not None:
        lines.append(f"    {{user: {_quote(superuser[0])}, password: {_quote(superuser[1])}}}")
    lines += ["  ]", "}", ""]
    return "\n".join(lines)
