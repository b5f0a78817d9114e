"""Task spec files: the YAML format `kiln task create` reads, mapped to CreateTaskRequest.

```yaml
name: castle study                 # required
prompt: "a {style} castle at {time}, oil painting"   # required; {name} = a variable
negative_prompt: "blurry, {style} text"              # optional, same placeholders
variables:                         # name -> list of values; subtasks = product of lists
  style: [gothic, baroque, brutalist]
  time: [dawn, dusk]
zip: [[style, palette]]            # optional: variables that advance together
images_per_combination: 2          # optional, default 1
ratio: "16:9"                      # 1:1 16:9 9:16 4:3 3:4 3:2 2:3 21:9
seed: 42                           # optional: subtask i gets 42 + i; omit for random
polish: true                       # optional: polish each prompt before rendering
reuse: true                        # optional: copy stored images of the same inputs
share: false                       # optional: let other users' tasks reuse these images
queue: standard                    # standard | high_priority | lumina
format: webp                       # png | webp | jpeg
priority: 5                        # 0..9
tags: [demo, castles]
request_id: castles-2026-11-28     # optional: repeating the same create is then safe
webhook:                           # optional
  url: https://example.com/hooks/kiln
  secret: a-long-shared-secret
  events: [task_finished, subtask_finished]
```
Unknown keys are an error, so a typo does not silently change a task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kiln.cli.errors import CliError
from kiln.tasks.v1 import tasks_pb2

KEYS = {
    "name", "prompt", "negative_prompt", "variables", "zip", "images_per_combination",
    "ratio", "seed", "polish", "reuse", "share", "queue", "format", "priority", "tags",
    "request_id", "webhook",
}  # fmt: skip


def _words(prefix: str, names: list[str]) -> dict[str, str]:
    # A spec word is the enum value's name without its prefix, in lower case.
    return {n.removeprefix(prefix).lower(): n for n in names if not n.endswith("_UNSPECIFIED")}


# Spec words -> proto enum value names (protobuf accepts the names), read from the protos so
# a new queue, format or event needs no change here.
QUEUES = _words("QUEUE_", list(tasks_pb2.Queue.keys()))
FORMATS = _words("OUTPUT_FORMAT_", list(tasks_pb2.OutputFormat.keys()))
EVENTS = _words("WEBHOOK_EVENT_", list(tasks_pb2.WebhookEvent.keys()))


def load(path: Path) -> tasks_pb2.CreateTaskRequest:
    """Reads and converts a spec file; CliError names the bad key."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CliError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise CliError(f"{path}: the spec must be a mapping of keys to values")
    return to_request(data, str(path))


def to_request(data: dict[str, Any], source: str = "spec") -> tasks_pb2.CreateTaskRequest:
    """Converts a parsed spec; the server validates the values themselves."""
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise CliError(
            f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KEYS))}"
        )
    request = tasks_pb2.CreateTaskRequest(
        task_name=str(data.get("name", "")),
        prompt_template=str(data.get("prompt", "")),
        images_per_combination=int(data.get("images_per_combination", 1)),
        priority=int(data.get("priority", 0)),
        tags=[str(t) for t in data.get("tags", [])],
        request_id=str(data.get("request_id", "")),
    )
    for name, values in (data.get("variables") or {}).items():
        listed = values if isinstance(values, list) else [values]
        request.variables[str(name)].values.extend(str(v) for v in listed)
    for group in data.get("zip") or []:
        request.zip_groups.add(variables=[str(v) for v in group])
    settings = request.settings
    settings.ratio = str(data.get("ratio", ""))
    if data.get("seed") is not None:
        settings.seed = int(data["seed"])
    settings.use_polish = bool(data.get("polish", False))
    settings.reuse_results = bool(data.get("reuse", False))
    settings.share_results = bool(data.get("share", False))
    settings.negative_prompt = str(data.get("negative_prompt", ""))
    settings.queue = _choice(data, "queue", QUEUES, source)  # type: ignore[assignment]
    settings.output_format = _choice(data, "format", FORMATS, source)  # type: ignore[assignment]
    if webhook := data.get("webhook"):
        settings.webhook.url = str(webhook.get("url", ""))
        settings.webhook.secret = str(webhook.get("secret", ""))
        for event in webhook.get("events", []):
            if event not in EVENTS:
                raise CliError(
                    f"{source}: webhook.events: unknown event {event!r}; known: {', '.join(EVENTS)}"
                )
            settings.webhook.events.append(EVENTS[event])  # type: ignore[arg-type]
    return request


def _choice(data: dict[str, Any], key: str, choices: dict[str, str], source: str) -> str | int:
    value = data.get(key)
    if value is None:
        return 0  # UNSPECIFIED: the server's default
    if value not in choices:
        raise CliError(f"{source}: {key}: unknown value {value!r}; known: {', '.join(choices)}")
    return choices[value]
