"""Hypothesis strategies for any protobuf message, built from its descriptor.

hypothesis-pb needs protobuf < 4, so this is our own, small on purpose: scalars of every
type (full ranges, NaN and infinities included), enums with unknown numbers too, repeated
fields, maps, nested messages down to a bounded depth, oneofs (at most one member set) and
proto3 `optional` presence. Strings come from `strings`, so a test can mix in real ids and
tricky text; the other leaves come from Hypothesis directly.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf import descriptor, message, message_factory
from hypothesis import strategies as st

FD = descriptor.FieldDescriptor

_INT32 = st.integers(-(2**31), 2**31 - 1)
_INT64 = st.integers(-(2**63), 2**63 - 1)
_UINT32 = st.integers(0, 2**32 - 1)
_UINT64 = st.integers(0, 2**64 - 1)

_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FD.TYPE_DOUBLE: st.floats(allow_nan=True, allow_infinity=True),
    FD.TYPE_FLOAT: st.floats(width=32, allow_nan=True, allow_infinity=True),
    FD.TYPE_INT32: _INT32,
    FD.TYPE_SINT32: _INT32,
    FD.TYPE_SFIXED32: _INT32,
    FD.TYPE_INT64: _INT64,
    FD.TYPE_SINT64: _INT64,
    FD.TYPE_SFIXED64: _INT64,
    FD.TYPE_UINT32: _UINT32,
    FD.TYPE_FIXED32: _UINT32,
    FD.TYPE_UINT64: _UINT64,
    FD.TYPE_FIXED64: _UINT64,
    FD.TYPE_BOOL: st.booleans(),
    FD.TYPE_BYTES: st.binary(max_size=64),
}

TRICKY_TEXT = [
    "",
    " ",
    "%",
    "_",
    "\\",
    "'; DROP TABLE tasks.tasks; --",
    "{",
    "{name}",
    "}{",
    "\x00",
    "\u202e",
    "😀",
    "a" * 5000,
    "00000000-0000-0000-0000-000000000000",
    "*",
]
HUGE_TEXT = [
    "r" * 20_000,  # echoed whole, a value this long overflowed the client's 8 KiB trailers
    "é" * 7_000,  # multi-byte: 14 KB of UTF-8, tripled by percent-encoding in grpc-message
    "{v}" * 1333,  # a template that renders to megabytes
]
"""Huge values: every text field must be held to its length limit, and nothing a caller
sends may come back whole in an error."""


def default_strings() -> st.SearchStrategy[str]:
    """Random text mixed with values that often break parsers and queries, and huge ones."""
    return st.one_of(st.text(max_size=40), st.sampled_from(TRICKY_TEXT), st.sampled_from(HUGE_TEXT))


_JSON_LEAVES: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["", "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00", "0" * 36, "x" * 900]),
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)
"""Any JSON value, scalars of every type and range included."""


def _decode(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    return decoded


def _encode(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _deep(depth: int) -> bytes:
    return b'{"p":' + b"[" * depth + b"]" * depth + b',"f":"x"}'


def page_tokens(real: str) -> st.SearchStrategy[str]:
    """Page tokens built from `real`, a token the server issued (base64 of JSON: a position
    `p` and a filter fingerprint `f`): its position's values swapped for any JSON value
    (`"i": true`, 2**80, a list...), keys dropped or added, a position that is not an
    object, deeply nested JSON, and tokens far too long. The fingerprint is kept, so the
    server reads the position rather than refusing the token at once."""
    data = _decode(real)
    position: dict[str, Any] = data["p"]

    @st.composite
    def mutated(draw: st.DrawFn) -> str:
        changed = dict(position)
        for key in draw(st.lists(st.sampled_from(sorted(position)), unique=True)):
            if draw(st.booleans()):
                changed[key] = draw(JSON_VALUES)
            else:
                del changed[key]
        if draw(st.booleans()):
            changed[draw(st.text(max_size=3))] = draw(JSON_VALUES)
        return _encode({"p": changed, "f": data["f"]})

    return st.one_of(
        mutated(),
        JSON_VALUES.map(lambda p: _encode({"p": p, "f": data["f"]})),
        st.sampled_from([_encode(_deep(20_000)), _encode(_deep(200)), "A" * 5000, real + "A" * 4]),
    )


def _message_type(field: descriptor.FieldDescriptor) -> descriptor.Descriptor:
    assert field.message_type is not None, field.full_name
    return field.message_type


def _enum_type(field: descriptor.FieldDescriptor) -> descriptor.EnumDescriptor:
    assert field.enum_type is not None, field.full_name
    return field.enum_type


def _is_map(field: descriptor.FieldDescriptor) -> bool:
    return field.type == FD.TYPE_MESSAGE and bool(_message_type(field).GetOptions().map_entry)


def _is_repeated(field: descriptor.FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _enum(field: descriptor.FieldDescriptor) -> st.SearchStrategy[int]:
    enum_type = _enum_type(field)
    known = [value.number for value in enum_type.values]
    # Open (proto3) enums accept any int32, and servers must cope with numbers they do not
    # know; closed enums would reject them at parse time on our side.
    if enum_type.is_closed:
        return st.sampled_from(known)
    return st.one_of(st.sampled_from(known), _INT32)


class MessageStrategies:
    """Builds strategies for messages, sharing limits and the string source."""

    def __init__(
        self,
        *,
        strings: st.SearchStrategy[str] | None = None,
        max_depth: int = 3,
        max_size: int = 4,
    ) -> None:
        self.strings = strings if strings is not None else default_strings()
        self.max_depth = max_depth
        self.max_size = max_size

    def for_descriptor(
        self, desc: descriptor.Descriptor, depth: int = 0
    ) -> st.SearchStrategy[message.Message]:
        """Messages of type `desc`; nested messages stop at `max_depth`."""
        cls = message_factory.GetMessageClass(desc)
        real_oneofs = [o for o in desc.oneofs if not _is_synthetic(o)]
        in_oneof = {f.name for o in real_oneofs for f in o.fields}
        free = [
            f
            for f in desc.fields
            if f.name not in in_oneof
            and (f.type != FD.TYPE_MESSAGE or _is_map(f) or depth < self.max_depth)
        ]

        @st.composite
        def build(draw: st.DrawFn) -> message.Message:
            msg = cls()
            for field in free:
                if draw(st.booleans()):
                    self._set(msg, field, draw, depth)
            for oneof in real_oneofs:
                chosen = draw(st.sampled_from([None, *oneof.fields]))
                if chosen is not None and (
                    chosen.type != FD.TYPE_MESSAGE or depth < self.max_depth
                ):
                    self._set(msg, chosen, draw, depth)
            return msg

        return build()

    def _value(self, field: descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        if field.type == FD.TYPE_STRING:
            return self.strings
        if field.type == FD.TYPE_ENUM:
            return _enum(field)
        if field.type in (FD.TYPE_MESSAGE, FD.TYPE_GROUP):
            return self.for_descriptor(_message_type(field), depth + 1)
        return _SCALARS[field.type]

    def _set(
        self, msg: message.Message, field: descriptor.FieldDescriptor, draw: st.DrawFn, depth: int
    ) -> None:
        target = getattr(msg, field.name)
        if _is_map(field):
            key_field = _message_type(field).fields_by_name["key"]
            value_field = _message_type(field).fields_by_name["value"]
            entries = draw(
                st.dictionaries(
                    self._value(key_field, depth),
                    self._value(value_field, depth),
                    max_size=self.max_size,
                )
            )
            for key, value in entries.items():
                if value_field.type == FD.TYPE_MESSAGE:
                    target[key].CopyFrom(value)
                else:
                    target[key] = value
        elif _is_repeated(field):
            values = draw(st.lists(self._value(field, depth), max_size=self.max_size))
            if field.type == FD.TYPE_MESSAGE:
                for value in values:
                    target.add().CopyFrom(value)
            else:
                target.extend(values)
        elif field.type == FD.TYPE_MESSAGE:
            target.CopyFrom(draw(self._value(field, depth)))
        else:
            setattr(msg, field.name, draw(self._value(field, depth)))


def _is_synthetic(oneof: descriptor.OneofDescriptor) -> bool:
    """A proto3 `optional` field's hidden one-member oneof."""
    return (
        len(oneof.fields) == 1 and bool(oneof.fields[0].has_presence) and oneof.name.startswith("_")
    )


def messages(
    desc: descriptor.Descriptor,
    *,
    strings: st.SearchStrategy[str] | None = None,
    max_depth: int = 3,
    max_size: int = 4,
) -> st.SearchStrategy[message.Message]:
    """Any message of type `desc` (see `MessageStrategies`)."""
    return MessageStrategies(
        strings=strings, max_depth=max_depth, max_size=max_size
    ).for_descriptor(desc)


def metadata() -> st.SearchStrategy[list[tuple[str, str | bytes]]]:
    """Random request metadata that a client can send: lower-case keys outside the reserved
    `grpc-` space, printable ASCII values, binary values for `-bin` keys, and random
    authorization headers."""
    key_chars = "abcdefghijklmnopqrstuvwxyz0123456789-_."
    keys = st.text(key_chars, min_size=1, max_size=20).filter(
        lambda k: not k.startswith("grpc-") and not k.endswith("-bin") and k[0] not in "-."
    )
    values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)
    plain = st.tuples(keys, values)
    binary = st.tuples(keys.map(lambda k: f"{k}-bin"), st.binary(max_size=60))
    auth = st.tuples(
        st.just("authorization"),
        st.one_of(values, values.map(lambda v: f"Bearer {v}")),
    )
    request_id = st.tuples(st.just("x-request-id"), values)
    entry: st.SearchStrategy[tuple[str, str | bytes]] = st.one_of(plain, binary, auth, request_id)
    return st.lists(entry, max_size=6)
