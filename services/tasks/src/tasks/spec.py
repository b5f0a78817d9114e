"""What a caller asks for when creating a task, and the limits it must stay within.

These are plain values with no behaviour beyond defaults: the CreateTask handler builds a
`TaskSpec` from the proto request (mapping enum values to the names below), `validation`
checks it against `Limits`, and `expansion` turns it into subtask plans.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from kiln.common import ratios, vocabulary

WEBHOOK_EVENTS: tuple[str, ...] = ("task_finished", "subtask_finished")
DEFAULT_WEBHOOK_EVENTS: tuple[str, ...] = ("task_finished",)
"""What a webhook receives when its event filter is empty (the proto contract says so)."""

MAX_SEED = 2**63 - 1
"""Seeds are non-negative int64 values, so they fit a proto int64 and a PostgreSQL bigint."""

MAX_VARIABLE_NAME_LEN = 128
"""Characters of a variable name (a placeholder in a template)."""

MAX_RANDOM_SEED = 2**31 - 1
"""Random seeds stay within 31 bits, which every renderer we know of accepts."""


@dataclasses.dataclass(frozen=True)
class WebhookSpec:
    """Where to send signed notifications about a task, and which ones."""

    url: str
    secret: str
    events: tuple[str, ...] = ()

    @property
    def selected_events(self) -> tuple[str, ...]:
        """The events to deliver, with an empty filter meaning the default ones."""
        return self.events or DEFAULT_WEBHOOK_EVENTS


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A task as requested, before validation.

    `variables` is ordered: its order fixes the axis order of the expansion, so the caller
    must build it in a deterministic order (a proto map has none on the wire).
    `ratio` may be empty, meaning the platform default, as in the proto contract.
    `images_per_combination` of 0 means 1, as in the proto contract.
    """

    task_name: str
    prompt_template: str
    variables: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    zip_groups: tuple[tuple[str, ...], ...] = ()
    images_per_combination: int = 1
    ratio: str = ratios.DEFAULT_RATIO
    seed: int | None = None
    use_polish: bool = False
    queue: str = vocabulary.DEFAULT_QUEUE
    negative_prompt: str = ""
    output_format: str = vocabulary.DEFAULT_IMAGE_FORMAT
    priority: int = 0
    tags: tuple[str, ...] = ()
    webhook: WebhookSpec | None = None
    reuse_results: bool = False
    """Serve subtasks with copies of already stored images of the same render inputs."""
    share_results: bool = False
    """Let other owners' reusing tasks copy this task's images."""
    request_id: str = ""
    """The idempotency key, checked here so its violation comes with all the others."""

    @property
    def images(self) -> int:
        """Images per combination, with the proto's 0 read as 1."""
        return self.images_per_combination or 1

    @property
    def effective_ratio(self) -> str:
        """The ratio to render at, with empty read as the default."""
        return self.ratio or ratios.DEFAULT_RATIO


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds on a task; the service reads them from its config.

    `allow_private_webhooks` lets webhooks target loopback and private addresses, which a
    local or test deployment needs and a shared one must refuse.
    """

    max_subtasks: int = 10_000
    max_images_per_combination: int = 100
    max_priority: int = 9
    max_name_len: int = 200
    max_prompt_len: int = 4000
    max_rendered_prompt_len: int = 16_000
    """Characters a prompt or negative prompt may reach once its placeholders are filled
    in: a short template of many placeholders can otherwise render to megabytes."""
    max_tags: int = 20
    max_tag_len: int = 64
    max_variables: int = 20
    max_values_per_variable: int = 1000
    max_value_len: int = 500
    max_request_id_len: int = 128
    max_webhook_url_len: int = 2048
    allow_private_webhooks: bool = False
    max_job_bytes: int = 0
    """Bytes one job message may take on the bus (its max payload, less room for headers);
    0 skips the check. The service sets it from its NATS connection."""
