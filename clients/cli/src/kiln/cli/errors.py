"""One-line error messages for gRPC failures: the code, the message, the field problems."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

_DETAILS_KEY = "grpc-status-details-bin"


class CliError(Exception):
    """A problem to report to the user in one line, with an exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def describe(error: grpc.RpcError) -> str:
    """`CODE: message (field: problem; ...)` for a failed call."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = (error.details() if hasattr(error, "details") else "") or ""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and (
        "connect" in message.lower() or not message
    ):
        message = f"cannot reach the server ({message or 'no answer'})"
    violations = _field_violations(error)
    text = f"{code.name}: {message}"
    if violations and all(v not in message for v in violations):
        text += " (" + "; ".join(violations) + ")"
    return text


def _field_violations(error: grpc.RpcError) -> list[str]:
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(bad_request):
                return [f"{v.field}: {v.description}" for v in bad_request.field_violations]
    return []
