"""kiln.common.textlimits: every string of a request, however nested, is held to its
field's limit, and the paths name the field as the proto does."""

from __future__ import annotations

import pytest

from kiln.common import errors, textlimits
from kiln.tasks.v1 import tasks_pb2

LIMITS = textlimits.TextLimits(
    default=10,
    fields={
        "kiln.tasks.v1.CreateTaskRequest.prompt_template": 20,
        "kiln.tasks.v1.VariableValues.values": 3,
    },
)


def _paths(request: tasks_pb2.CreateTaskRequest) -> list[str]:
    return [v.field for v in LIMITS.violations(request)]


def test_within_limits_passes() -> None:
    """Texts at their limits are fine."""
    request = tasks_pb2.CreateTaskRequest(task_name="n" * 10, prompt_template="p" * 20)
    request.variables["color"].values.append("red")
    LIMITS.check(request)


def test_every_kind_of_text_field_is_checked() -> None:
    """Plain, nested, repeated and map-key/map-value texts over their limits are each
    reported with their path; a field listed in the table gets its own limit."""
    request = tasks_pb2.CreateTaskRequest(
        task_name="n" * 11,
        prompt_template="p" * 21,
        tags=["ok", "t" * 11],
        settings=tasks_pb2.TaskSettings(webhook=tasks_pb2.Webhook(url="u" * 11)),
        zip_groups=[tasks_pb2.ZipGroup(variables=["v" * 11])],
    )
    request.variables["color"].values.extend(["red", "blue"])
    request.variables["k" * 11].values.append("x")
    assert sorted(_paths(request)) == sorted(
        [
            "task_name",
            "prompt_template",
            "tags[1]",
            "settings.webhook.url",
            "zip_groups[0].variables[0]",
            'variables["color"].values[1]',
            f'variables["{"k" * 11}"]',
        ]
    )


def test_check_raises_invalid_argument() -> None:
    """`check` turns the violations into one INVALID_ARGUMENT."""
    with pytest.raises(errors.InvalidArgument) as caught:
        LIMITS.check(tasks_pb2.ListTasksRequest(search="s" * 11))
    assert [v.field for v in caught.value.violations] == ["search"]
