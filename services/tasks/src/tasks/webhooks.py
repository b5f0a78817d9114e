"""Webhooks: deliveries recorded with the change they report, then POSTed, signed, retried.

A delivery row is inserted in the same transaction as the change (a task finishing, or a
subtask finishing when the task asked for those), so a crash never loses or invents one.
The sender claims due rows with SKIP LOCKED (safe with several replicas), POSTs the stored
JSON body with headers

    Kiln-Webhook-Id: <delivery id, stable across retries>
    Kiln-Webhook-Event: task_finished | subtask_finished
    Kiln-Webhook-Timestamp: <unix seconds>
    Kiln-Webhook-Signature: hex(HMAC-SHA256(secret, f"{timestamp}.{body}"))

and records every attempt: the attempt row is written (and the delivery leased) before the
POST and completed after it, so a crash in between leaves a record, never a silent repeat.
A 2xx ends the delivery; anything else is retried with doubling delays until the attempt
limit. Each delivery fails on its own: a bad URL, a failed lookup or any error while
sending is that delivery's failed attempt and never stops the others. Targets are resolved
once per attempt, refused when any address is not public (unless the config allows private
ones), and the POST goes to the checked address (`webhook_target`). The secret is never
logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import ssl
import time
import uuid
from typing import Any

import httpx
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kiln.common.backoff import Backoff
from tasks import metrics, model, store, webhook_target

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


_EXHAUSTED = """
UPDATE tasks.webhook_deliveries SET state = 'failed', update_time = now(),
    last_status = NULL, last_error = :error
WHERE state = 'pending' AND next_attempt_time <= now() AND attempts >= :max_attempts
"""

_CLAIM = """
SELECT d.id, d.task_id, d.event, d.payload, d.attempts, t.webhook_url, t.webhook_secret
FROM tasks.webhook_deliveries d JOIN tasks.tasks t ON t.id = d.task_id
WHERE d.state = 'pending' AND d.next_attempt_time <= now() AND d.attempts < :max_attempts
ORDER BY d.next_attempt_time LIMIT :limit FOR UPDATE OF d SKIP LOCKED
"""

_START_ATTEMPT = """
INSERT INTO tasks.webhook_attempts (delivery_id, attempt, error, duration_ms)
VALUES (CAST(:id AS uuid), :attempt, :error, 0) RETURNING id
"""

_LEASE = """
UPDATE tasks.webhook_deliveries SET attempts = :attempt, update_time = now(),
    next_attempt_time = now() + make_interval(secs => :lease)
WHERE id = CAST(:id AS uuid)
"""

UNFINISHED = "no outcome recorded (the sender stopped during the attempt)"
"""What an attempt row says until its outcome replaces it: if the process dies in
between, the row stays, so a POST is never repeated without a record of the earlier one."""


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One claimed delivery: its row and the number and record id of this attempt."""

    row: dict[str, Any]
    number: int
    record_id: int


@dataclasses.dataclass(frozen=True)
class Result:
    """How an attempt ended."""

    status: int | None = None
    error: str | None = None
    duration_ms: int = 0
    final: bool = False
    """True when retrying cannot help (the target is refused or the URL unusable)."""


class Sender:
    """Sends due webhook deliveries until stopped.

    Each claimed delivery is recorded as an attempt (and leased) before anything is sent,
    then sent and its outcome recorded on its own: any error of one delivery, in its URL,
    its lookup, its POST or its record, is a failed attempt of that delivery alone.
    `resolver` looks names up and `verify` is the TLS trust; both default to the system's
    (tests answer lookups themselves and trust their own CA).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        allow_private: bool,
        timeout: float,
        max_attempts: int,
        backoff: float,
        poll: float,
        resolver: webhook_target.Resolver = webhook_target.system_resolver,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._engine = engine
        self._allow_private = allow_private
        self._max_attempts = max_attempts
        self._delays = Backoff(first=backoff, cap=backoff * 64)
        self._poll = poll
        self._resolve = resolver
        self._timeout = timeout
        # Past the lease an unfinished attempt (its process died) is tried again.
        self._lease = 3 * timeout + 10
        self._wake = asyncio.Event()
        # No pooled connections: a connection opened for one host name (TLS verified for
        # it) must never carry a request for another name that resolves to the same
        # address. No proxies from the environment: they would resolve the name again.
        self._client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            verify=verify,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

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
        attempts = await self._claim(limit)
        await asyncio.gather(*(self._deliver(attempt) for attempt in attempts))
        return len(attempts)

    async def _claim(self, limit: int) -> list[Attempt]:
        """Records an unfinished attempt for each due delivery and leases it, in one short
        transaction, before any of them is sent."""
        async with self._engine.begin() as conn:
            await conn.execute(
                text(_EXHAUSTED), {"error": UNFINISHED, "max_attempts": self._max_attempts}
            )
            rows = (
                (
                    await conn.execute(
                        text(_CLAIM), {"limit": limit, "max_attempts": self._max_attempts}
                    )
                )
                .mappings()
                .all()
            )
            attempts = []
            for row in rows:
                number = int(row["attempts"]) + 1
                ids = {"id": str(row["id"]), "attempt": number}
                record_id = await conn.scalar(text(_START_ATTEMPT), {**ids, "error": UNFINISHED})
                await conn.execute(text(_LEASE), {**ids, "lease": self._lease})
                attempts.append(Attempt(dict(row), number, int(record_id or 0)))
        return attempts

    async def _deliver(self, attempt: Attempt) -> None:
        started = time.perf_counter()
        try:
            # One deadline for the whole attempt: httpx times each read on its own, so a
            # target that trickles its answer a byte at a time would otherwise hold the
            # round, and every other delivery in it, for as long as it likes.
            async with asyncio.timeout(self._timeout):
                result = await self._post(attempt.row)
        except TimeoutError:
            result = Result(
                error=f"timeout: no answer within {self._timeout:g} s", duration_ms=_ms(started)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Whatever breaks in one delivery is that delivery's failed attempt.
            result = Result(error=f"error: {type(exc).__name__}", duration_ms=_ms(started))
        try:
            await self._record(attempt, result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The attempt row keeps saying it has no outcome; the lease brings it back.
            log.warning(
                "webhook_record_failed",
                delivery_id=str(attempt.row["id"]),
                error=type(exc).__name__,
            )

    async def _post(self, row: dict[str, Any]) -> Result:
        started = time.perf_counter()
        try:
            target = webhook_target.parse(row["webhook_url"] or "")
            addresses = await webhook_target.checked_addresses(
                target, self._resolve, allow_private=self._allow_private
            )
        except webhook_target.LookupFailed as exc:
            return Result(error=str(exc), duration_ms=_ms(started))
        except webhook_target.Refused as exc:
            return Result(error=f"refused: {exc}", final=True)
        except webhook_target.TargetError as exc:
            return Result(error=f"invalid URL: {exc}", final=True)
        timestamp = str(int(time.time()))
        body: str = row["payload"]
        headers = {
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": "kiln-webhooks/1",
            "Kiln-Webhook-Id": str(row["id"]),
            "Kiln-Webhook-Event": row["event"],
            "Kiln-Webhook-Timestamp": timestamp,
            "Kiln-Webhook-Signature": sign(row["webhook_secret"] or "", timestamp, body),
        }
        # Connect to a checked address; TLS still sends and verifies the URL's name.
        extensions = {"sni_hostname": target.host} if target.literal is None else {}
        error = "no address"
        for address in addresses:
            try:
                response = await self._client.post(
                    webhook_target.pinned_url(target, address),
                    content=body.encode(),
                    headers=headers,
                    extensions=extensions,
                )
            except httpx.ConnectError:
                error = "ConnectError"
                continue  # nothing was sent: the next checked address may answer
            except httpx.HTTPError as exc:
                return Result(error=type(exc).__name__, duration_ms=_ms(started))
            return Result(status=response.status_code, duration_ms=_ms(started))
        return Result(error=error, duration_ms=_ms(started))

    async def _record(self, attempt: Attempt, result: Result) -> None:
        row, number = attempt.row, attempt.number
        status, error = result.status, result.error
        if status is not None and 200 <= status < 300:
            state = "delivered"
        elif result.final or number >= self._max_attempts:
            state = "failed"
        else:
            state = "pending"
        delay = self._delays.delay(number)
        async with self._engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE tasks.webhook_attempts SET status_code = :s, error = :e, "
                    "duration_ms = :d WHERE id = :record"
                ),
                {"record": attempt.record_id, "s": status, "e": error, "d": result.duration_ms},
            )
            # Only while no later attempt took the delivery over (after a lost lease).
            await conn.execute(
                text(
                    "UPDATE tasks.webhook_deliveries SET state = :st, "
                    "last_status = :s, last_error = :e, update_time = now(), "
                    "next_attempt_time = now() + make_interval(secs => :delay) "
                    "WHERE id = CAST(:id AS uuid) AND attempts = :a AND state = 'pending'"
                ),
                {
                    "id": str(row["id"]),
                    "a": number,
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
            attempt=number,
            status_code=status,
            error=error,
            outcome=state,
        )


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
