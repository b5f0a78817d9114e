"""Length limits on every text field of every request, from one table per service.

Each service lists the fields whose limit differs from its default (by full proto name,
e.g. `kiln.tasks.v1.TaskSettings.ratio`); `TextLimitInterceptor` checks every string of a
decoded request against it before the handler runs (nested messages, repeated fields and
map keys included), so no text reaches a query, a log line or a render unbounded. The
domain checks that follow still give their own, more specific messages.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import grpc
from google.protobuf import descriptor, message

from kiln.common import errors, interceptors

_STRING = descriptor.FieldDescriptor.TYPE_STRING
_MESSAGE = descriptor.FieldDescriptor.TYPE_MESSAGE
_MAX_REPORTED = 20
"""Violations reported per request; the rest would only repeat the problem."""


@dataclasses.dataclass(frozen=True)
class TextLimits:
    """The longest text (in characters) each request field may hold: `fields` by full
    proto field name, `default` for every other string field."""

    default: int
    fields: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def violations(self, request: message.Message) -> list[errors.FieldViolation]:
        """Every too-long text in `request` (up to a few dozen), naming its field path."""
        found: list[errors.FieldViolation] = []
        for path, limit, text in self._texts(request, ""):
            if len(text) > limit:
                found.append(
                    errors.FieldViolation(
                        path, f"is {len(text)} characters, over the limit of {limit}"
                    )
                )
                if len(found) >= _MAX_REPORTED:
                    break
        return found

    def check(self, request: message.Message) -> None:
        """Raises INVALID_ARGUMENT listing the too-long texts of `request`, if any."""
        found = self.violations(request)
        if found:
            raise errors.InvalidArgument(found)

    def _limit(self, field: descriptor.FieldDescriptor) -> int:
        return self.fields.get(field.full_name, self.default)

    def _texts(self, msg: message.Message, prefix: str) -> Iterator[tuple[str, int, str]]:
        for field, value in msg.ListFields():
            path = f"{prefix}{field.name}"
            if field.type == _STRING:
                limit = self._limit(field)
                if field.is_repeated:
                    for i, text in enumerate(value):
                        yield f"{path}[{i}]", limit, text
                else:
                    yield path, limit, value
            elif field.type == _MESSAGE and _entry_type(field) is not None:
                yield from self._map(field, value, path)
            elif field.type == _MESSAGE and field.is_repeated:
                for i, item in enumerate(value):
                    yield from self._texts(item, f"{path}[{i}].")
            elif field.type == _MESSAGE:
                yield from self._texts(value, f"{path}.")

    def _map(
        self, field: descriptor.FieldDescriptor, entries: Any, path: str
    ) -> Iterator[tuple[str, int, str]]:
        entry_type = _entry_type(field)
        assert entry_type is not None  # only map fields come here
        key_field = entry_type.fields_by_name["key"]
        value_field = entry_type.fields_by_name["value"]
        for key, value in entries.items():
            shown = key[: errors.MAX_ECHO_CHARS] if isinstance(key, str) else key
            entry = f"{path}[{json.dumps(shown, ensure_ascii=False)}]"
            if key_field.type == _STRING:
                yield entry, self._limit(key_field), key
            if value_field.type == _STRING:
                yield entry, self._limit(value_field), value
            elif value_field.type == _MESSAGE:
                yield from self._texts(value, f"{entry}.")


def _entry_type(field: descriptor.FieldDescriptor) -> descriptor.Descriptor | None:
    """The entry message of a map field, or None for any other field."""
    entry = field.message_type
    return entry if entry is not None and entry.GetOptions().map_entry else None


class TextLimitInterceptor(grpc.aio.ServerInterceptor):
    """Checks every unary request of the service's own RPCs against `limits` before its
    handler runs. Put it after the authentication interceptor, so an anonymous caller
    learns nothing from it."""

    def __init__(self, limits: TextLimits) -> None:
        self._limits = limits

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        # Health and reflection are grpc's own services, with their own answers.
        if (
            handler is None
            or handler.request_streaming
            or details.method.startswith(interceptors.ALWAYS_PUBLIC_PREFIXES)
        ):
            return handler
        check = self._limits.check
        if handler.response_streaming:
            stream = handler.unary_stream

            async def streamed(request: Any, context: Any) -> AsyncIterator[Any]:
                check(request)
                result = stream(request, context)
                if inspect.isawaitable(result):
                    result = await result
                if hasattr(result, "__aiter__"):
                    async for item in result:
                        yield item
                else:
                    for item in result or ():
                        yield item

            return grpc.unary_stream_rpc_method_handler(
                streamed, handler.request_deserializer, handler.response_serializer
            )
        unary = handler.unary_unary

        async def single(request: Any, context: Any) -> Any:
            check(request)
            result = unary(request, context)
            return await result if inspect.isawaitable(result) else result

        return grpc.unary_unary_rpc_method_handler(
            single, handler.request_deserializer, handler.response_serializer
        )
