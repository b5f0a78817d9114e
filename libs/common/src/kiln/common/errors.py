"""Typed domain errors and their one mapping to gRPC status codes.

Services raise these; the server interceptor turns them into a status with `google.rpc`
details (BadRequest field violations, ErrorInfo, RetryInfo). Nothing else in the code base
chooses a status code, so a caller's mistake can never leak out as UNKNOWN or INTERNAL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "kiln"
_MAX_ECHOED_ID = 128

# Errors travel in the trailers (grpc-message, percent-encoded, and grpc-status-details-bin,
# base64), and a client refuses trailers over 8 KiB as RESOURCE_EXHAUSTED. So every text a
# caller can make long is cut here, in UTF-8 bytes: the message to 512 bytes (at most 1.5 KiB
# encoded) and the packed details to 3 KiB (4 KiB in base64).
MAX_ECHO_CHARS = 64
"""Characters of a caller's value quoted in an error before it is cut."""
MAX_ERROR_MESSAGE_BYTES = 512
MAX_FIELD_BYTES = 160
MAX_DESCRIPTION_BYTES = 320
MAX_DETAILS_BYTES = 3072


def echo(value: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`value` quoted for an error message, cut to `limit` characters (noting its length),
    so a caller's 20 KB input is never sent back whole."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def clip(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` bytes of UTF-8 (on a character boundary)."""
    if len(text) * 4 <= max_bytes:  # cheap: no character takes more than four bytes
        return text
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    return raw[: max_bytes - 3].decode(errors="ignore") + "..."


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    """One problem with one request field; `field` is a dotted path such as `settings.ratio`.

    Both texts are cut to a bounded size: a field path can hold a caller's map key."""

    field: str
    description: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "field", clip(self.field, MAX_FIELD_BYTES))
        object.__setattr__(self, "description", clip(self.description, MAX_DESCRIPTION_BYTES))


class KilnError(Exception):
    """Base of every error a caller may see. Subclasses fix the status code; `reason` is the
    ErrorInfo reason (AIP-193): one UPPER_SNAKE name per logical error, so a program can tell
    "still running" from "nothing to retry" without reading the message. The class default
    is only a fallback; raise sites pass a specific one (docs/DESIGN.md lists them)."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        message = clip(message, MAX_ERROR_MESSAGE_BYTES)
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata = {k: clip(v, MAX_FIELD_BYTES) for k, v in (metadata or {}).items()}

    def details(
        self,
    ) -> list[
        error_details_pb2.ErrorInfo | error_details_pb2.BadRequest | error_details_pb2.RetryInfo
    ]:
        """The `google.rpc` detail messages this error carries."""
        return [
            error_details_pb2.ErrorInfo(
                reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata
            )
        ]


class InvalidArgument(KilnError):
    """The request is malformed; every violation is reported at once."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_FIELD"
    """Fields break the contract; BadRequest names each field and what is wrong."""

    def __init__(
        self,
        violations: Iterable[FieldViolation],
        message: str | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        self.violations = list(violations)
        if message is None:
            message = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(message or "invalid request", reason=reason)

    @classmethod
    def field(cls, field: str, description: str, *, reason: str | None = None) -> InvalidArgument:
        """An error about a single field."""
        return cls([FieldViolation(field, description)], reason=reason)

    def details(
        self,
    ) -> list[
        error_details_pb2.ErrorInfo | error_details_pb2.BadRequest | error_details_pb2.RetryInfo
    ]:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in self.violations
            ]
        )
        return [bad_request, *super().details()]


class Unauthenticated(KilnError):
    """No valid credential: missing, expired, forged or revoked."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "INVALID_TOKEN"
    """The access token is malformed, forged, expired or not for us (the verifier's only
    failure); the other causes pass their own reason."""


class PermissionDenied(KilnError):
    """The caller is known but its role does not allow the call."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class NotFound(KilnError):
    """The resource does not exist, or belongs to someone the caller may not see. The
    reason names the resource: TASK_NOT_FOUND, API_KEY_NOT_FOUND..."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"

    def __init__(self, resource: str, resource_id: str) -> None:
        # The id is the caller's input: echoed whole, a huge one made the trailers exceed
        # the client's 8 KiB metadata limit, which turned NOT_FOUND into RESOURCE_EXHAUSTED.
        resource_id = clip(resource_id, _MAX_ECHOED_ID)
        super().__init__(
            f"{resource} {resource_id!r} not found",
            reason=f"{resource.upper().replace(' ', '_')}_NOT_FOUND",
            metadata={"resource": resource, "id": resource_id},
        )


class AlreadyExists(KilnError):
    """A unique thing (an email, say) is taken."""

    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class FailedPrecondition(KilnError):
    """The request is well-formed but the resource is not in a state that allows it."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class ResourceExhausted(KilnError):
    """A limit or throttle was hit; `retry_after` seconds says when to try again, if known."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        retry_after: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after

    def details(
        self,
    ) -> list[
        error_details_pb2.ErrorInfo | error_details_pb2.BadRequest | error_details_pb2.RetryInfo
    ]:
        found = super().details()
        if self.retry_after is not None:
            delay = duration_pb2.Duration()
            delay.FromMilliseconds(max(0, round(self.retry_after * 1000)))
            found.append(error_details_pb2.RetryInfo(retry_delay=delay))
        return found


class Unavailable(KilnError):
    """A dependency (PostgreSQL, NATS) cannot be reached; the caller may retry."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class Unimplemented(KilnError):
    """The RPC exists in the contract but this build does not serve it yet."""

    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "UNIMPLEMENTED"


class Internal(KilnError):
    """An unexpected failure; the caller gets only an id to quote, the log has the rest."""

    code = grpc.StatusCode.INTERNAL
    reason = "INTERNAL"

    def __init__(self, error_id: str) -> None:
        super().__init__(f"internal error (error id {error_id})", metadata={"error_id": error_id})


DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
BUS_UNAVAILABLE = "BUS_UNAVAILABLE"


def _dependency_failures() -> tuple[tuple[tuple[type[BaseException], ...], str, str], ...]:
    import nats.errors  # noqa: PLC0415 - kept local so importing errors stays cheap
    import psycopg  # noqa: PLC0415
    import sqlalchemy.exc  # noqa: PLC0415

    return (
        (
            (
                sqlalchemy.exc.OperationalError,
                sqlalchemy.exc.InterfaceError,
                sqlalchemy.exc.TimeoutError,
                psycopg.OperationalError,
            ),
            "the database is unavailable; try again shortly",
            DATABASE_UNAVAILABLE,
        ),
        (
            (
                nats.errors.ConnectionClosedError,
                nats.errors.NoServersError,
                nats.errors.TimeoutError,
                nats.errors.ConnectionReconnectingError,
                nats.errors.StaleConnectionError,
                nats.errors.OutboundBufferLimitError,
            ),
            "the message bus is unavailable; try again shortly",
            BUS_UNAVAILABLE,
        ),
        (
            (ConnectionError,),
            "a dependency is unavailable; try again shortly",
            "DEPENDENCY_UNAVAILABLE",
        ),
    )


def classify(exc: BaseException) -> KilnError | None:
    """The caller-facing error for `exc`, or None when it is a bug (mapped to INTERNAL)."""
    if isinstance(exc, KilnError):
        return exc
    if isinstance(exc, NotImplementedError):
        return Unimplemented("this method is not implemented yet")
    for kinds, message, reason in _dependency_failures():
        if isinstance(exc, kinds):
            return Unavailable(message, reason=reason)
    return None


def to_status_proto(error: KilnError, *, request_id: str | None = None) -> status_pb2.Status:
    """The `google.rpc.Status` for `error`, with its details packed."""
    status = status_pb2.Status(code=status_code_number(error.code), message=error.message)
    for detail in error.details():
        if request_id and isinstance(detail, error_details_pb2.ErrorInfo):
            detail.metadata["request_id"] = request_id
        status.details.add().Pack(detail)
    if status.ByteSize() > MAX_DETAILS_BYTES:
        _shrink_violations(status)
    return status


def _shrink_violations(status: status_pb2.Status) -> None:
    """Drops field violations from the end until the status fits MAX_DETAILS_BYTES, and
    says how many were left out."""
    for packed in status.details:
        bad_request = error_details_pb2.BadRequest()
        if not packed.Unpack(bad_request):
            continue
        everything = list(bad_request.field_violations)
        keep = len(everything)
        while keep > 0 and status.ByteSize() > MAX_DETAILS_BYTES:
            keep = keep // 2 if keep > 8 else keep - 1
            trimmed = error_details_pb2.BadRequest(field_violations=everything[:keep])
            trimmed.field_violations.add(
                field="request", description=f"{len(everything) - keep} more violations not shown"
            )
            packed.Pack(trimmed)
        return


def status_code_number(code: grpc.StatusCode) -> int:
    """The numeric `google.rpc.Code` of a grpc status code."""
    number: int = code.value[0]
    return number
