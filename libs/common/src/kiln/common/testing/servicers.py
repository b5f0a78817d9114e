"""Our grpc.aio servicers under `grpc_testing`'s in-process server.

grpc_testing (grpcio-testing) drives servicers the synchronous way: it calls each handler
in a thread of its own and takes its return value (or iterates it, for a stream). An
`async def` handler would hand it an un-awaited coroutine, so it has no support for
grpc.aio servicers. `SyncServicer` presents one as a synchronous servicer: each call runs
the real handler on the test's event loop (where the servicer's engine and NATS
connection live) and blocks the grpc_testing thread until it is done. A typed `KilnError`
becomes the status, message and `google.rpc.Status` trailer the server's interceptor would
send, through the same `errors` mapping. The caller is bound as the auth interceptor
binds it. Interceptors themselves are not run: the real server tests cover them. A
handler may yield already encoded messages (the server's serializer passes bytes through);
given the service's descriptor, the adapter decodes them into the method's response type,
as a client would.

Tests call `rpc.termination()` and friends through `asyncio.to_thread`, never on the loop
itself (the handler needs the loop while the thread waits).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

from kiln.common import errors, principal
from kiln.common.interceptors import STATUS_DETAILS_KEY

REQUEST_ID = "grpc-testing"
_CALL_SECONDS = 30.0


class SyncServicer:
    """A synchronous face of the grpc.aio servicer `servicer`, for grpc_testing."""

    def __init__(
        self,
        servicer: object,
        loop: asyncio.AbstractEventLoop,
        caller: principal.Principal | None,
        service: ServiceDescriptor | None = None,
    ) -> None:
        self._servicer = servicer
        self._loop = loop
        self._caller = caller
        self._service = service

    def __getattr__(self, name: str) -> Callable[[Any, Any], Any]:
        handler = getattr(self._servicer, name)
        if inspect.isasyncgenfunction(handler):
            decode = self._decoder(name)
            return lambda request, context: (
                decode(response) for response in self._stream(handler, request, _Context(context))
            )
        return lambda request, context: self._unary(handler, request, _Context(context))

    def _decoder(self, method: str) -> Callable[[Any], Any]:
        """Turns an encoded response of `method` into its message; messages pass as they are."""
        if self._service is None:
            return lambda response: response
        output = self._service.methods_by_name[method].output_type
        response_type = message_factory.GetMessageClass(output)

        def decode(response: Any) -> Any:
            if isinstance(response, bytes):
                return response_type.FromString(response)
            return response

        return decode

    def _run(self, awaitable: Any) -> Any:
        # The new task copies this thread's context: the caller bound here is the one the
        # handler sees (grpc_testing's threads start with an empty context).
        principal.set_current(self._caller)
        return asyncio.run_coroutine_threadsafe(_awaited(awaitable), self._loop).result(
            _CALL_SECONDS
        )

    def _unary(self, handler: Any, request: Any, context: Any) -> Any:
        try:
            return self._run(handler(request, context))
        except Exception as exc:
            _set_status(exc, context)
            return None

    def _stream(self, handler: Any, request: Any, context: Any) -> Iterator[Any]:
        responses = handler(request, context)
        while True:
            try:
                yield self._run(anext(responses))
            except StopAsyncIteration:
                return
            except Exception as exc:
                _set_status(exc, context)
                return


class _Context:
    """grpc_testing's servicer context, plus the peer a loopback client would have (its
    own `peer()` is not implemented; auth reads it to throttle by address)."""

    PEER = "ipv4:127.0.0.1:50000"

    def __init__(self, context: Any) -> None:
        self._context = context

    def peer(self) -> str:
        return self.PEER

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _set_status(exc: Exception, context: Any) -> None:
    """Ends the call as the server's error mapper would, or re-raises a bug (grpc_testing
    then reports UNKNOWN with the exception)."""
    error = errors.classify(exc)
    if error is None:
        raise exc
    status = errors.to_status_proto(error, request_id=REQUEST_ID)
    # Not context.abort(): grpc_testing's abort drops the trailing metadata.
    context.set_trailing_metadata(((STATUS_DETAILS_KEY, status.SerializeToString()),))
    context.set_code(error.code)
    context.set_details(error.message)
