"""Proto <-> domain conversion as plain functions (no I/O): what a request becomes, and
what a stored task or subtask shows a caller."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kiln.common import vocabulary
from kiln.tasks.v1 import tasks_pb2
from tasks import convert, lifecycle, model

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _task(**changes: Any) -> model.Task:
    fields: dict[str, Any] = {
        "id": "7d3c2a9e-1111-4222-8333-444455556666", "owner_id": "alice", "request_id": "r",
        "task_name": "cats", "tags": ["pets"], "prompt_template": "a {color} cat",
        "variables": {"color": ["red", "blue"]}, "zip_groups": [], "images_per_combination": 1,
        "ratio": "16:9", "seed": None, "use_polish": False, "queue": "lumina",
        "negative_prompt": "", "output_format": "webp", "priority": 3,
        "webhook_url": "https://example.test/hook", "webhook_events": ["task_finished"],
        "state": model.RUNNING, "total_images": 4, "succeeded_count": 1, "failed_count": 1,
        "cancelled_count": 0, "running_count": 1, "is_deleted": False, "create_time": NOW,
        "start_time": NOW, "finish_time": None, "update_time": NOW, "version": 9,
        "eta_seconds": 12.3456,
    }  # fmt: skip
    fields.update(changes)
    return model.Task(**fields)


def _subtask(**changes: Any) -> model.Subtask:
    fields: dict[str, Any] = {
        "id": "00000000-0000-4000-8000-000000000001", "task_id": "t", "idx": 2,
        "owner_id": "alice", "variable_values": {"color": "red"}, "prompt": "a red cat",
        "negative_prompt": "", "polished_prompt": "", "ratio": "1:1", "width": 64,
        "height": 64, "seed": 5, "use_polish": False, "queue": "standard",
        "output_format": "png", "state": model.SUCCEEDED, "attempt": 2, "generation": 0,
        "superseded": False, "retried_from": None, "error_type": None, "error_message": None,
        "object_name": "tasks/t/s.png", "thumbnail_object_name": "tasks/t/s.thumb.webp",
        "content_type": "image/png", "result_width": 64, "result_height": 64,
        "size_bytes": 10, "sha256": "ab", "model": "fake", "render_ms": 1500,
        "worker_id": "w1", "step": 0, "total_steps": 0, "changed_version": 3,
        "create_time": NOW, "queue_time": NOW, "start_time": NOW, "finish_time": NOW,
    }  # fmt: skip
    fields.update(changes)
    return model.Subtask(**fields)


def test_task_spec_reads_the_request_in_a_fixed_order() -> None:
    """Variables come out sorted by name whatever the map order; unset enums mean the
    defaults; an unknown enum number becomes a name validation refuses, with the number."""
    request = tasks_pb2.CreateTaskRequest(
        task_name="t",
        prompt_template="{b} {a}",
        variables={
            "b": tasks_pb2.VariableValues(values=["1", "2"]),
            "a": tasks_pb2.VariableValues(values=["x"]),
        },
        tags=["one"],
    )
    spec = convert.task_spec(request)
    assert list(spec.variables) == ["a", "b"] and spec.variables["b"] == ("1", "2")
    assert spec.seed is None and spec.webhook is None and spec.tags == ("one",)
    request.settings.queue = 99  # type: ignore[assignment]
    request.settings.seed = 0
    odd = convert.task_spec(request)
    assert "99" in odd.queue and odd.queue not in vocabulary.QUEUE_ENUMS
    assert odd.seed == 0  # an explicit 0 is a seed, not "unset"


def test_task_proto_shows_counts_and_never_the_webhook_secret() -> None:
    """Progress is the ended fraction, the ETA is rounded to milliseconds while the task
    runs and absent once it is terminal; the webhook URL and events are shown, a secret
    has no field to go to."""
    message = convert.task_proto(_task())
    assert message.progress == 0.5 and not message.all_subtasks_completed
    assert message.state == tasks_pb2.TASK_STATE_RUNNING
    assert message.eta.ToMilliseconds() == 12346
    assert message.settings.webhook.url == "https://example.test/hook"
    assert list(message.settings.webhook.events) == [tasks_pb2.WEBHOOK_EVENT_TASK_FINISHED]
    assert not message.HasField("finish_time") and message.create_time.ToDatetime(dt.UTC) == NOW
    done = convert.task_proto(_task(state=model.PARTIALLY_FAILED, succeeded_count=3,
                                    running_count=0))  # fmt: skip
    assert not done.HasField("eta") and done.all_subtasks_completed and done.progress == 1.0
    assert convert.task_proto(_task(total_images=0)).progress == 0.0


def test_subtask_proto_has_a_result_only_when_succeeded() -> None:
    """A succeeded subtask carries its image result and render time; a failed one its
    error and no result (even if a stale object name is stored)."""
    ok = convert.subtask_proto(_subtask())
    assert ok.result.object_name == "tasks/t/s.png" and ok.render_duration.ToMilliseconds() == 1500
    assert not ok.HasField("error") and ok.index == 2 and ok.attempt == 2
    failed = convert.subtask_proto(
        _subtask(state=model.FAILED, error_type="BAD", error_message="it broke")
    )
    assert not failed.HasField("result")
    assert (failed.error.type, failed.error.message) == ("BAD", "it broke")
    assert failed.state == tasks_pb2.SUBTASK_STATE_FAILED


def test_every_state_converts_both_ways() -> None:
    """Every stored task and subtask state has its proto value and back."""
    for state in model.TASK_STATES:
        assert convert.TASK_STATE_NAMES[convert.task_proto(_task(state=state)).state] == state
    for state in lifecycle.STATES:
        value = convert.subtask_proto(_subtask(state=state)).state
        assert convert.SUBTASK_STATE_NAMES[value] == state


def test_duration_is_never_negative() -> None:
    """A duration is whole milliseconds, and an estimate below zero shows as zero."""
    assert convert.duration(None) is None
    negative = convert.duration(-3.0)
    assert negative is not None and negative.ToMilliseconds() == 0
    small = convert.duration(0.0004)
    assert small is not None and small.ToMilliseconds() == 0
