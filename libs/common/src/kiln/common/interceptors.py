"""Server interceptors: request ids, access log, error mapping and token checks.

grpc.aio interceptors can only swap the handler of an RPC, so each one here wraps the
handler's behaviour with `_wrap`, which knows the four RPC shapes. A wrapped handler may
return or yield responses already encoded as bytes; they are sent unchanged. The order given to the
server is outermost first: `ObservabilityInterceptor` must come first so it sees (and maps)
every error the inner ones raise.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
import structlog

from kiln.common import errors, metrics, principal
from kiln.common.account_states import AccountStates
from kiln.common.tokens import TokenVerifier

REQUEST_ID_KEY = "x-request-id"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
_MAX_REQUEST_ID_LENGTH = 128
ALWAYS_PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

log = structlog.get_logger("kiln.rpc")


class _Undecodable:
    """Stands in for a request whose bytes did not parse, so the RPC can refuse it cleanly."""

    def __init__(self, message_type: str) -> None:
        self.message_type = message_type


def _safe_deserializer(
    deserializer: Callable[[bytes], Any] | None, method: str
) -> Callable[[bytes], Any] | None:
    # grpc answers UNKNOWN when a deserializer raises; catching it here lets us answer
    # INVALID_ARGUMENT instead.
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            return _Undecodable(method.rsplit("/", 1)[-1] + "Request")

    return deserialize


def _check_decoded(request: Any) -> Any:
    if isinstance(request, _Undecodable):
        raise errors.InvalidArgument.field(
            "request", f"the request body is not a valid {request.message_type} message"
        )
    return request


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _check_decoded(request)


def _wrap(
    handler: grpc.RpcMethodHandler,
    method: str,
    before: Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[None]] | None,
    guard: Callable[[Callable[[], Any], grpc.aio.ServicerContext[Any, Any], bool], Any],
) -> grpc.RpcMethodHandler:
    """Rebuilds `handler` so its behaviour runs inside `guard` after `before`.

    `guard(call, context, streaming)` returns an awaitable (unary responses) or an async
    iterator (streamed responses) around `call`, which runs `before` and the behaviour.
    """
    kind = next(k for k in _HANDLER_FACTORIES if getattr(handler, k) is not None)
    inner = getattr(handler, kind)
    streamed_requests = kind.startswith("stream")

    def invoke(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        checked = _checked_stream(request) if streamed_requests else _check_decoded(request)
        return inner(checked, context)

    async def unary_response(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        async def call() -> Any:
            if before is not None:
                await before(context)
            result = invoke(request, context)
            return await result if inspect.isawaitable(result) else result

        return await guard(call, context, False)

    async def streamed_response(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        async def call() -> AsyncIterator[Any]:
            if before is not None:
                await before(context)
            return _as_async_iter(invoke(request, context))

        async for response in guard(call, context, True):
            yield response

    behaviour = streamed_response if kind.endswith("stream") else unary_response
    return _HANDLER_FACTORIES[kind](
        behaviour,
        _safe_deserializer(handler.request_deserializer, method),
        _encoded_passthrough(handler.response_serializer),
    )


def _encoded_passthrough(
    serializer: Callable[[Any], bytes] | None,
) -> Callable[[Any], bytes] | None:
    # A handler may yield a response already encoded (bytes), as WatchTask does for a message
    # shared by many watchers: it is sent as is instead of being encoded once per stream.
    if serializer is None or getattr(serializer, "passes_bytes", False):
        return serializer

    def serialize(message: Any) -> bytes:
        return message if type(message) is bytes else serializer(message)

    serialize.passes_bytes = True  # type: ignore[attr-defined]
    return serialize


_HANDLER_FACTORIES = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


async def _as_async_iter(result: Any) -> AsyncIterator[Any]:
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    else:
        for item in result:
            yield item


async def _stream_of(call: Callable[[], Awaitable[AsyncIterator[Any]]]) -> AsyncIterator[Any]:
    async for item in await call():
        yield item


def _metadata_value(metadata: Iterable[tuple[str, str | bytes]] | None, key: str) -> str | None:
    for name, value in metadata or ():
        if name == key:
            return value if isinstance(value, str) else None
    return None


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Request id, one access-log line per RPC, and the one error mapper.

    A typed `KilnError` becomes its status with `google.rpc` details; a failing dependency
    becomes UNAVAILABLE; anything else becomes INTERNAL with an error id that is logged
    with the traceback and never sends exception text to the caller.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        given = _metadata_value(details.invocation_metadata, REQUEST_ID_KEY)
        request_id = (
            given
            if given and len(given) <= _MAX_REQUEST_ID_LENGTH and given.isprintable()
            else uuid.uuid4().hex
        )

        def guard(
            call: Callable[[], Any], context: grpc.aio.ServicerContext[Any, Any], streaming: bool
        ) -> Any:
            if streaming:
                return self._guard_stream(call, context, method, request_id)
            return self._guard_unary(call, context, method, request_id)

        return _wrap(handler, method, None, guard)

    async def _guard_unary(
        self,
        call: Callable[[], Awaitable[Any]],
        context: grpc.aio.ServicerContext[Any, Any],
        method: str,
        request_id: str,
    ) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        peer = context.peer()  # not later: a cancelled call's context must not be touched
        structlog.contextvars.bind_contextvars(request_id=request_id, method=method)
        try:
            await context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
            return await call()
        except BaseException as exc:
            code = await self._handle(exc, context, method, request_id)
            raise
        finally:
            _access_log(method, code, started, request_id, peer)

    async def _guard_stream(
        self,
        call: Callable[[], Awaitable[AsyncIterator[Any]]],
        context: grpc.aio.ServicerContext[Any, Any],
        method: str,
        request_id: str,
    ) -> AsyncIterator[Any]:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        # Read now: once the client cancels a stream, grpc may free the call under the
        # context, and context.peer() in the `finally` below crashed the process (SIGSEGV).
        peer = context.peer()
        structlog.contextvars.bind_contextvars(request_id=request_id, method=method)
        try:
            await context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
            async for response in await call():
                yield response
        except BaseException as exc:
            code = await self._handle(exc, context, method, request_id)
            raise
        finally:
            _access_log(method, code, started, request_id, peer)

    async def _handle(
        self,
        exc: BaseException,
        context: grpc.aio.ServicerContext[Any, Any],
        method: str,
        request_id: str,
    ) -> grpc.StatusCode:
        """Aborts the RPC for `exc` (which raises) and returns the code, for the access log."""
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            return grpc.StatusCode.CANCELLED
        if isinstance(exc, grpc.aio.AbortError):
            return context.code() or grpc.StatusCode.UNKNOWN  # the handler aborted itself
        error = errors.classify(exc)
        if error is None:
            error_id = uuid.uuid4().hex[:16]
            log.error("rpc_internal_error", error_id=error_id, exc_info=exc)
            error = errors.Internal(error_id)
        elif isinstance(error, errors.Unavailable):
            log.warning("rpc_dependency_unavailable", error=error.message, cause=type(exc).__name__)
        status = errors.to_status_proto(error, request_id=request_id)
        await context.abort(
            error.code,
            error.message,
            trailing_metadata=(
                (STATUS_DETAILS_KEY, status.SerializeToString()),
                (REQUEST_ID_KEY, request_id),
            ),
        )
        return error.code  # pragma: no cover - abort always raises


def _access_log(
    method: str,
    code: grpc.StatusCode,
    started: float,
    request_id: str,
    peer: str,
) -> None:
    caller = principal.current_or_none()
    elapsed = time.perf_counter() - started
    metrics.observe_rpc(method, code.name, elapsed)
    log.info(
        "rpc_finished",
        method=method,
        code=code.name,
        duration_ms=round(elapsed * 1000, 3),
        user=caller.user_id if caller else None,
        request_id=request_id,
        peer=peer,
    )
    structlog.contextvars.unbind_contextvars("request_id", "method")


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Verifies the bearer token of every method not in `public_methods`.

    Health and reflection are always public. Public methods still get the principal bound
    when they carry a valid token, so access logs name the user. With `accounts`, a valid
    token is also checked against its user's current state (deactivated, signed out
    everywhere, demoted), from memory.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        public_methods: Iterable[str] = (),
        accounts: AccountStates | None = None,
    ) -> None:
        self._verifier = verifier
        self._public = frozenset(public_methods)
        self._accounts = accounts

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(ALWAYS_PUBLIC_PREFIXES):
            return handler
        public = method in self._public
        header = _metadata_value(details.invocation_metadata, "authorization")
        verifier = self._verifier
        accounts = self._accounts

        async def authenticate(_context: grpc.aio.ServicerContext[Any, Any]) -> None:
            principal.set_current(None)
            if header is None:
                if public:
                    return
                raise errors.Unauthenticated(
                    "a valid access token is required", reason="TOKEN_MISSING"
                )
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise errors.Unauthenticated(
                    "the authorization header must be 'Bearer <token>'",
                    reason="MALFORMED_AUTHORIZATION_HEADER",
                )
            try:
                caller = await verifier.verify(token.strip())
                principal.set_current(caller if accounts is None else accounts.admit(caller))
            except (errors.Unauthenticated, errors.Unavailable):
                if not public:
                    raise

        def guard(call: Callable[[], Any], _context: Any, streaming: bool) -> Any:
            return _stream_of(call) if streaming else call()

        return _wrap(handler, method, authenticate, guard)


def standard_interceptors(
    verifier: TokenVerifier,
    public_methods: Iterable[str] = (),
    accounts: AccountStates | None = None,
) -> list[grpc.aio.ServerInterceptor]:
    """The interceptor chain every Kiln server uses, outermost first."""
    return [ObservabilityInterceptor(), AuthInterceptor(verifier, public_methods, accounts)]
