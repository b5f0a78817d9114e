"""Reading the `google.rpc` details of a failed call, the way a program would."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from kiln.common import interceptors


def error_reason(error: grpc.aio.AioRpcError | grpc.RpcError) -> str:
    """The ErrorInfo reason of a failed call ("" when it carries none)."""
    trailers = error.trailing_metadata() or ()
    for key, value in trailers:
        if key == interceptors.STATUS_DETAILS_KEY:
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    return ""
