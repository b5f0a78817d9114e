"""Webhooks: deliveries recorded with the change they report, then POSTed, signed, retried.

A delivery row is inserted in the same transaction as the change (a task finishing, or a
subtask finishing when the task asked for those), so a crash never loses or invents one.
The sender claims due rows with SKIP LOCKED (safe with several replicas), POSTs the stored
JSON body with headers

    Kiln-Webhook-Id: <delivery id, stable across retries>
    Kiln-Webhook-Event: task_finished | subtask_finished
    Kiln-Webhook-Timestamp: <unix seconds>
    Kiln-Webhook-Signature: hex(HMAC-SHA256(secret, f"{timestamp}.{body}"))

and records every attempt. A 2xx ends the delivery; anything else is retried with doubling
delays until the attempt limit. Targets are resolved at delivery time and refused when any
address is private or loopback, unless the config allows those. The secret is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import socket
import time
import urllib.parse
import uuid
from typing import Any

import httpx
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tasks import metrics, model, store, validation

log = structlog.get_logger("tasks.webhooks")

TASK_FINISHED = "task_finished"
SUBTASK_FINISHED = "subtask_finished"


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def task_payload(task: model.Task) -> dict[str, Any]:
    """What a webhook says about a task."""
    return {
        "id": task.id,
        "task_name": task.task_name,
        "owner_id": task.owner_id,
        "state": task.state,
        "total_images": task.total_images,
        "succeeded_count": task.succeeded_count,
        "failed_count": task.failed_count,
        "cancelled_count": task.cancelled_count,
        "version": task.version,
        "create_time": _time(task.create_time),
        "finish_time": _time(task.finish_time),
    }


async def enqueue(
    conn: AsyncConnection, task: model.Task, event: str, extra: dict[str, Any] | None = None
) -> bool:
    """Records a delivery of `event` for `task` if its webhook wants it; True if recorded."""
    wanted = task.webhook_events or ["task_finished"]
    if not task.webhook_url or event not in wanted:
        return False
    delivery_id = str(uuid.uuid4())
    body = {"id": delivery_id, "event": event, "task": task_payload(task), **(extra or {})}
    await store.enqueue_webhook(conn, delivery_id, task.id, event, json.dumps(body))
    return True


def subtask_payload(
    subtask_id: str, index: int, state: str, error_type: str | None
) -> dict[str, Any]:
    """What a webhook says about a finished subtask."""
    return {"subtask": {"id": subtask_id, "index": index, "state": state, "error_type": error_type}}


def sign(secret: str, timestamp: str, body: str) -> str:
    """The hex HMAC-SHA256 of f"{timestamp}.{body}" under `secret`."""
    return hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


_CLAIM = """
SELECT d.id, d.task_id, d.event, d.payload, d.attempts, t.webhook_url, t.webhook_secret
FROM tasks.webhook_deliveries d JOIN tasks.tasks t ON t.id = d.task_id
WHERE d.state = 'pending' AND d.next_attempt_time <= now()
ORDER BY d.next_attempt_time LIMIT :limit FOR UPDATE OF d SKIP LOCKED
"""


class Sender:
    """Sends due webhook deliveries until stopped."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        allow_private: bool,
        timeout: float,
        max_attempts: int,
        backoff: float,
        poll: float,
    ) -> None:
        self._engine = engine
        self._allow_private = allow_private
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._poll = poll
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    def wake(self) -> None:
        """Looks for due deliveries now (call after committing one)."""
        self._wake.set()

    async def close(self) -> None:
        """Closes the HTTP client."""
        await self._client.aclose()

    async def run(self) -> None:
        """The sender loop."""
        while True:
            try:
                sent = await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("webhook_round_failed", exc_info=True)
                sent = 0
            if not sent:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    async def send_due(self, limit: int = 20) -> int:
        """Sends up to `limit` due deliveries concurrently; returns how many were tried."""
        async with self._engine.begin() as conn:
            rows = (await conn.execute(text(_CLAIM), {"limit": limit})).mappings().all()
            if not rows:
                return 0
            outcomes = await asyncio.gather(*(self._post(dict(r)) for r in rows))
            for row, (status, error, duration_ms) in zip(rows, outcomes, strict=True):
                await self._record(conn, dict(row), status, error, duration_ms)
        return len(rows)

    async def _post(self, row: dict[str, Any]) -> tuple[int | None, str | None, int]:
        started = time.perf_counter()
        url: str = row["webhook_url"] or ""
        refusal = None if self._allow_private else await _target_refusal(url)
        if refusal is not None:
            return None, f"refused: {refusal}", 0
        timestamp = str(int(time.time()))
        body: str = row["payload"]
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "kiln-webhooks/1",
            "Kiln-Webhook-Id": str(row["id"]),
            "Kiln-Webhook-Event": row["event"],
            "Kiln-Webhook-Timestamp": timestamp,
            "Kiln-Webhook-Signature": sign(row["webhook_secret"] or "", timestamp, body),
        }
        try:
            response = await self._client.post(url, content=body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            return None, type(exc).__name__, _ms(started)
        return response.status_code, None, _ms(started)

    async def _record(
        self,
        conn: AsyncConnection,
        row: dict[str, Any],
        status: int | None,
        error: str | None,
        duration_ms: int,
    ) -> None:
        attempt = int(row["attempts"]) + 1
        ok = status is not None and 200 <= status < 300
        refused = error is not None and error.startswith("refused")
        if ok:
            state = "delivered"
        elif refused or attempt >= self._max_attempts:
            state = "failed"
        else:
            state = "pending"
        delay = min(self._backoff * 2 ** (attempt - 1), self._backoff * 64)
        await conn.execute(
            text(
                "INSERT INTO tasks.webhook_attempts (delivery_id, attempt, status_code, error, "
                "duration_ms) VALUES (CAST(:id AS uuid), :a, :s, :e, :d)"
            ),
            {"id": str(row["id"]), "a": attempt, "s": status, "e": error, "d": duration_ms},
        )
        await conn.execute(
            text(
                "UPDATE tasks.webhook_deliveries SET attempts = :a, state = :st, "
                "last_status = :s, last_error = :e, update_time = now(), "
                "next_attempt_time = now() + make_interval(secs => :delay) "
                "WHERE id = CAST(:id AS uuid)"
            ),
            {
                "id": str(row["id"]),
                "a": attempt,
                "st": state,
                "s": status,
                "e": error,
                "delay": delay,
            },
        )
        metrics.WEBHOOK_ATTEMPTS.labels(outcome=state).inc()
        log.info(
            "webhook_attempted",
            delivery_id=str(row["id"]),
            task_id=str(row["task_id"]),
            webhook_event=row["event"],
            attempt=attempt,
            status_code=status,
            error=error,
            outcome=state,
        )


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


async def _target_refusal(url: str) -> str | None:
    """Why `url` may not be called now: its host resolves to a refused address."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").removesuffix(".")
    refusal = validation.host_refusal(host)
    if refusal is not None:
        return refusal
    port = parts.port or (443 if parts.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return None  # the POST fails and is retried like any unreachable target
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        refusal = validation.address_refusal(address)
        if refusal is not None:
            return refusal
    return None
