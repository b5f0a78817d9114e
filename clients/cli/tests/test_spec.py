"""Task spec files map onto CreateTaskRequest, and mistakes name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.cli import spec
from kiln.cli.errors import CliError
from kiln.tasks.v1 import tasks_pb2

EXAMPLE = """
name: castle study
prompt: "a {style} castle at {time}"
negative_prompt: "blurry"
variables:
  style: [gothic, baroque]
  time: dawn
zip: [[style, palette]]
images_per_combination: 2
ratio: "16:9"
seed: 42
polish: true
reuse: true
share: true
queue: high_priority
format: webp
priority: 5
tags: [demo]
request_id: castles-1
webhook: {url: "https://example.com/h", secret: "0123456789abcdef", events: [subtask_finished]}
"""


def test_example_spec_maps_every_field(tmp_path: Path) -> None:
    """Every documented key lands in its request field."""
    path = tmp_path / "task.yaml"
    path.write_text(EXAMPLE)
    request = spec.load(path)
    assert request.task_name == "castle study"
    assert request.prompt_template == "a {style} castle at {time}"
    assert list(request.variables["style"].values) == ["gothic", "baroque"]
    assert list(request.variables["time"].values) == ["dawn"]  # a scalar is one value
    assert list(request.zip_groups[0].variables) == ["style", "palette"]
    assert request.images_per_combination == 2
    assert request.priority == 5
    assert list(request.tags) == ["demo"]
    assert request.request_id == "castles-1"
    settings = request.settings
    assert (settings.ratio, settings.seed, settings.use_polish) == ("16:9", 42, True)
    assert (settings.reuse_results, settings.share_results) == (True, True)
    assert settings.negative_prompt == "blurry"
    assert settings.queue == tasks_pb2.QUEUE_HIGH_PRIORITY
    assert settings.output_format == tasks_pb2.OUTPUT_FORMAT_WEBP
    assert list(settings.webhook.events) == [tasks_pb2.WEBHOOK_EVENT_SUBTASK_FINISHED]


def test_seed_is_optional() -> None:
    """Without a seed the request carries none, so the server picks random seeds."""
    request = spec.to_request({"name": "n", "prompt": "p"})
    assert not request.settings.HasField("seed")
    assert request.settings.queue == tasks_pb2.QUEUE_UNSPECIFIED


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "n", "promt": "typo"}, "unknown key(s) promt"),
        ({"name": "n", "queue": "fast"}, "queue: unknown value 'fast'"),
        ({"name": "n", "format": "gif"}, "format: unknown value 'gif'"),
        ({"name": "n", "webhook": {"url": "u", "events": ["done"]}}, "webhook.events"),
    ],
)
def test_mistakes_name_the_key(data: dict[str, object], message: str) -> None:
    """A typo or an unknown value is refused with the key's name."""
    with pytest.raises(CliError, match=message.replace("(", r"\(").replace(")", r"\)")):
        spec.to_request(data)


def test_unreadable_file(tmp_path: Path) -> None:
    """A file that is not a YAML mapping gives a clear error."""
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(CliError, match="must be a mapping"):
        spec.load(path)
