"""The wire form of worker events: one SubtaskEvent per message, or a batch of them.

A worker reporting many jobs puts the events of one task into one SubtaskEventBatch message
(marked by the `Kiln-Event-Batch` header); a lone event still travels as a plain
SubtaskEvent, the form every consumer has always read. Everyone who reads events (the tasks
service's fold, tests, benchmarks) decodes them here, so both forms are read alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kiln.common import bus
from kiln.imagegen.v1 import jobs_pb2


class Undecodable(ValueError):
    """The message is neither a SubtaskEvent nor a SubtaskEventBatch."""


def encode(events: Sequence[jobs_pb2.SubtaskEvent]) -> tuple[bytes, dict[str, str]]:
    """The payload and headers (without a message id) that carry `events`."""
    if not events:
        raise ValueError("no events to encode")
    if len(events) == 1:
        return events[0].SerializeToString(), {}
    batch = jobs_pb2.SubtaskEventBatch(events=events)
    return batch.SerializeToString(), {bus.EVENT_BATCH_HEADER: str(len(events))}


def is_batch(headers: Mapping[str, str] | None) -> bool:
    """Whether a message with `headers` carries a SubtaskEventBatch."""
    return headers is not None and bus.EVENT_BATCH_HEADER in headers


def decode(data: bytes, headers: Mapping[str, str] | None) -> list[jobs_pb2.SubtaskEvent]:
    """The events of one message, in order; Undecodable when its bytes are not what the
    headers say."""
    try:
        if is_batch(headers):
            batch = jobs_pb2.SubtaskEventBatch()
            batch.ParseFromString(data)
            return list(batch.events)
        event = jobs_pb2.SubtaskEvent()
        event.ParseFromString(data)
    except Exception as error:  # protobuf's DecodeError, or bytes of another kind
        raise Undecodable("not a SubtaskEvent or SubtaskEventBatch") from error
    return [event]
