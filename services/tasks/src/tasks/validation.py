"""Checking a task specification before anything is stored: pure, no I/O.

`validate` reports every problem of a request in one InvalidArgument, each naming its field
by the proto path (`variables["color"].values`, `settings.webhook.url`), so a caller fixes
everything in one round trip.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence

from kiln.common import errors, paging, ratios, textlimits, vocabulary
from kiln.imagegen.v1 import imagegen_pb2, jobs_pb2
from tasks import expansion, webhook_target
from tasks import spec as task_spec

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_MIN_SECRET_LEN = 16
_MAX_VALUE_VIOLATIONS = 5
"""Too-long values reported one by one per variable before the rest are summed up, so a
list of a thousand long values gives a readable error rather than a thousand lines."""

Violation = errors.FieldViolation

_DEFAULTS = task_spec.Limits()
_T = "kiln.tasks.v1."
TEXT_LIMITS = textlimits.TextLimits(
    # Ids: an id that is no UUID names nothing and is NOT_FOUND like any other (tenancy:
    # "malformed" and "someone else's" look alike), so only absurd lengths are refused.
    default=8192,
    fields={
        f"{_T}CreateTaskRequest.task_name": _DEFAULTS.max_name_len,
        f"{_T}CreateTaskRequest.prompt_template": _DEFAULTS.max_prompt_len,
        f"{_T}TaskSettings.negative_prompt": _DEFAULTS.max_prompt_len,
        f"{_T}CreateTaskRequest.VariablesEntry.key": task_spec.MAX_VARIABLE_NAME_LEN,
        f"{_T}VariableValues.values": _DEFAULTS.max_value_len,
        f"{_T}ZipGroup.variables": task_spec.MAX_VARIABLE_NAME_LEN,
        f"{_T}TaskSettings.ratio": 16,
        f"{_T}Webhook.url": _DEFAULTS.max_webhook_url_len,
        f"{_T}CreateTaskRequest.tags": _DEFAULTS.max_tag_len,
        f"{_T}CreateTaskRequest.request_id": _DEFAULTS.max_request_id_len,
        # A whole Task travels in requests too (UpdateTask sends one back).
        f"{_T}Task.task_name": _DEFAULTS.max_name_len,
        f"{_T}Task.prompt_template": _DEFAULTS.max_prompt_len,
        f"{_T}Task.VariablesEntry.key": task_spec.MAX_VARIABLE_NAME_LEN,
        f"{_T}Task.tags": _DEFAULTS.max_tag_len,
        f"{_T}ListTasksRequest.tag": _DEFAULTS.max_tag_len,
        f"{_T}ListTasksRequest.search": _DEFAULTS.max_name_len,
        f"{_T}ListTasksRequest.page_token": paging.MAX_TOKEN_LENGTH,
        f"{_T}ListSubtasksRequest.page_token": paging.MAX_TOKEN_LENGTH,
        f"{_T}VariableFilter.name": task_spec.MAX_VARIABLE_NAME_LEN,
        f"{_T}VariableFilter.value": _DEFAULTS.max_value_len,
    },
)
"""Every text field of every TaskService and SystemService request is at most this long
(checked before the handler runs); CreateTask's domain checks below give finer messages."""


def validate(spec: task_spec.TaskSpec, limits: task_spec.Limits) -> int:
    """The number of subtasks `spec` expands to; raises InvalidArgument listing every problem.

    The count is computed from the lengths of the axes, never by listing combinations, so
    an absurd request (twenty variables of a thousand values) is refused at once.
    """
    nul = list(_check_nul(spec))
    if nul:
        # PostgreSQL text cannot hold U+0000; the other checks would only repeat the noise.
        raise errors.InvalidArgument(nul)
    violations = [
        *_check_name(spec.task_name, limits),
        *_check_variables(spec, limits),
        *_check_prompts(spec, limits),
        *_check_scalars(spec, limits),
        *_check_tags(spec.tags, limits),
        *_check_webhook(spec.webhook, limits),
    ]
    group_violations = list(_check_zip_groups(spec))
    violations += group_violations
    total = 0
    # Axes are only well defined once the zip groups are, and the count needs a valid
    # multiplier; otherwise the other violations already tell the caller what to fix.
    if (
        not group_violations
        and 0 <= spec.images_per_combination <= limits.max_images_per_combination
        # Thousands of variables make a product too long to print (Python refuses ints of
        # over 4300 digits); the variable count's own violation says what to fix.
        and len(spec.variables) <= limits.max_variables
    ):
        combinations = math.prod(len(spec.variables[axis[0]]) for axis in expansion.axes(spec))
        total = combinations * spec.images
        if total > limits.max_subtasks:
            violations.append(
                Violation(
                    "variables" if spec.variables else "images_per_combination",
                    f"the task expands to {total} subtasks, over the limit of "
                    f"{limits.max_subtasks} ({combinations} combinations, {spec.images} "
                    "images each)",
                )
            )
    if violations:
        raise errors.InvalidArgument(violations)
    return total


NUL_PROBLEM = "must not contain the NUL character (U+0000)"


def _check_nul(spec: task_spec.TaskSpec) -> Iterator[Violation]:
    fields: list[tuple[str, str]] = [
        ("task_name", spec.task_name),
        ("prompt_template", spec.prompt_template),
        ("settings.negative_prompt", spec.negative_prompt),
        ("settings.ratio", spec.ratio),
        ("request_id", spec.request_id),
    ]
    fields += [(f"tags[{i}]", tag) for i, tag in enumerate(spec.tags)]
    for name, values in spec.variables.items():
        fields.append(("variables", name))
        fields += [(f'variables["{name}"].values[{i}]', v) for i, v in enumerate(values)]
    for i, group in enumerate(spec.zip_groups):
        fields += [(f"zip_groups[{i}].variables[{j}]", v) for j, v in enumerate(group)]
    if spec.webhook is not None:
        fields += [
            ("settings.webhook.url", spec.webhook.url),
            ("settings.webhook.secret", spec.webhook.secret),
        ]
    for field, text in fields:
        if "\x00" in text:
            yield Violation(field.replace("\x00", "\\x00"), NUL_PROBLEM)


def _too_long(length: int, limit: int) -> str:
    return f"is {length} characters, over the limit of {limit}"


def _variable_field(name: str) -> str:
    if len(name) > errors.MAX_ECHO_CHARS:  # the path must not echo a 20 KB name
        return f"variables[{json.dumps(name[: errors.MAX_ECHO_CHARS] + '...', ensure_ascii=False)}]"
    return f"variables[{json.dumps(name, ensure_ascii=False)}]"


def _check_name(name: str, limits: task_spec.Limits) -> Iterator[Violation]:
    if not name.strip():
        yield Violation("task_name", "must not be empty")
    elif len(name) > limits.max_name_len:
        yield Violation("task_name", _too_long(len(name), limits.max_name_len))


def _check_variables(spec: task_spec.TaskSpec, limits: task_spec.Limits) -> Iterator[Violation]:
    if len(spec.variables) > limits.max_variables:
        yield Violation(
            "variables",
            f"has {len(spec.variables)} variables, over the limit of {limits.max_variables}",
        )
    for name, values in spec.variables.items():
        field = _variable_field(name)
        if not name:
            yield Violation(field, "a variable name must not be empty")
        elif not _NAME.fullmatch(name):
            yield Violation(
                field,
                "is not a valid variable name: use letters, digits and underscores, "
                "not starting with a digit",
            )
        if not values:
            yield Violation(f"{field}.values", "must have at least one value")
        elif len(values) > limits.max_values_per_variable:
            yield Violation(
                f"{field}.values",
                f"has {len(values)} values, over the limit of {limits.max_values_per_variable}",
            )
        too_long = [i for i, value in enumerate(values) if len(value) > limits.max_value_len]
        for i in too_long[:_MAX_VALUE_VIOLATIONS]:
            yield Violation(f"{field}.values[{i}]", _too_long(len(values[i]), limits.max_value_len))
        if len(too_long) > _MAX_VALUE_VIOLATIONS:
            yield Violation(
                f"{field}.values",
                f"{len(too_long) - _MAX_VALUE_VIOLATIONS} more values are over the limit of "
                f"{limits.max_value_len} characters",
            )


def _check_zip_groups(spec: task_spec.TaskSpec) -> Iterator[Violation]:
    owner: dict[str, int] = {}  # variable name -> the first group it appears in
    for g, group in enumerate(spec.zip_groups):
        field = f"zip_groups[{g}]"
        if len(set(group)) < 2:
            yield Violation(field, f"needs at least two different variables, has {len(set(group))}")
        for v, name in enumerate(group):
            member = f"{field}.variables[{v}]"
            if name not in spec.variables:
                yield Violation(member, f"names no variable: {errors.echo(name)}")
            elif owner.get(name) == g:
                yield Violation(member, f"{errors.echo(name)} is listed twice in this group")
            elif name in owner:
                yield Violation(
                    member, f"{errors.echo(name)} is already in zip_groups[{owner[name]}]"
                )
            else:
                owner[name] = g
        lengths = {name: len(spec.variables[name]) for name in group if name in spec.variables}
        if len(set(lengths.values())) > 1:
            described = ", ".join(f"{name} has {n}" for name, n in lengths.items())
            yield Violation(field, f"zipped variables need equally many values: {described}")


def _check_prompts(spec: task_spec.TaskSpec, limits: task_spec.Limits) -> Iterator[Violation]:
    if not spec.prompt_template.strip():
        yield Violation("prompt_template", "must not be empty")
    longest = _Longest(spec.variables)
    rendered_bytes: list[int] = []
    for field, text in (
        ("prompt_template", spec.prompt_template),
        ("settings.negative_prompt", spec.negative_prompt),
    ):
        if len(text) > limits.max_prompt_len:
            yield Violation(field, _too_long(len(text), limits.max_prompt_len))
        template = expansion.parse_template(text)
        for problem in template.problems:
            yield Violation(field, problem)
        known = ", ".join(spec.variables) or "none"
        unknown = [name for name in template.placeholders if name not in spec.variables]
        for name in unknown:
            yield Violation(field, f"placeholder {{{name}}} names no variable (variables: {known})")
        if template.problems or unknown:
            continue
        chars, utf8 = longest.rendering(template)
        if chars > limits.max_rendered_prompt_len:
            yield Violation(
                field,
                f"renders to up to {chars} characters (with the longest value of each "
                f"variable), over the limit of {limits.max_rendered_prompt_len}",
            )
        rendered_bytes.append(utf8)
    if limits.max_job_bytes and len(rendered_bytes) == 2:
        size = job_size_bound(*rendered_bytes)
        if size > limits.max_job_bytes:
            yield Violation(
                "prompt_template",
                f"a job of this task would take up to {size} bytes (prompt and negative prompt "
                f"rendered), over the message bus's limit of {limits.max_job_bytes} bytes",
            )


class _Longest:
    """The longest value of each variable, in characters and in UTF-8 bytes, computed once
    per variable a template uses: the longest rendering of a template is its literal text
    plus the longest value of each placeholder, found without rendering any subtask."""

    def __init__(self, variables: Mapping[str, Sequence[str]]) -> None:
        self._variables = variables
        self._found: dict[str, tuple[int, int]] = {}

    def of(self, name: str) -> tuple[int, int]:
        found = self._found.get(name)
        if found is None:
            values = self._variables[name]
            found = (
                max(map(len, values), default=0),
                max((len(v) if v.isascii() else len(v.encode()) for v in values), default=0),
            )
            self._found[name] = found
        return found

    def rendering(self, template: expansion.Template) -> tuple[int, int]:
        """The longest rendering of `template`: (characters, UTF-8 bytes)."""
        chars = sum(map(len, template.literals))
        utf8 = sum(len(literal.encode()) for literal in template.literals)
        for name in template.names:
            value_chars, value_bytes = self.of(name)
            chars += value_chars
            utf8 += value_bytes
        return chars, utf8


JOB_HEADER_ALLOWANCE = 256
"""Bytes of a job's bus message kept for its headers (the dedupe id): the bus's max
payload counts headers and body together."""
_MAX_OWNER_ID_LEN = 128
"""Longer than any user id the auth service issues (UUIDs), so the bound holds for all."""


def _largest_empty_job() -> int:
    """The encoded size of the largest job with empty prompts: every other field at its
    longest or largest value."""
    big = 2**31 - 1
    job = jobs_pb2.Job(
        subtask_id=str(uuid.UUID(int=0)),
        task_id=str(uuid.UUID(int=0)),
        owner_id="x" * _MAX_OWNER_ID_LEN,
        queue=max(vocabulary.QUEUES, key=len),
        attempt=big,
        width=big,
        height=big,
        seed=task_spec.MAX_SEED,
        use_polish=True,
        reuse_results=True,
        share_results=True,
        format=imagegen_pb2.ImageFormat.Name(max(imagegen_pb2.ImageFormat.values())),
        generation=big,
        index=big,
        ratio=max(ratios.RATIO_SIZES, key=len),
    )
    job.create_time.seconds = 253402300799  # 9999-12-31, the largest a Timestamp holds
    job.create_time.nanos = 999_999_999
    return job.ByteSize()


_EMPTY_JOB_BYTES = _largest_empty_job()


def job_size_bound(prompt_bytes: int, negative_prompt_bytes: int) -> int:
    """The most bytes a job can encode to, given its prompts' UTF-8 lengths."""
    return _EMPTY_JOB_BYTES + _string_field(prompt_bytes) + _string_field(negative_prompt_bytes)


def _string_field(length: int) -> int:
    # A proto3 string field: one tag byte, the length as a varint, the bytes; absent if empty.
    return 0 if length == 0 else 1 + (length.bit_length() + 6) // 7 + length


def _check_scalars(spec: task_spec.TaskSpec, limits: task_spec.Limits) -> Iterator[Violation]:
    images = spec.images_per_combination
    if not 0 <= images <= limits.max_images_per_combination:
        yield Violation(
            "images_per_combination",
            f"must be between 1 and {limits.max_images_per_combination} (0 means 1), got {images}",
        )
    if spec.ratio and spec.ratio not in ratios.RATIO_SIZES:
        yield Violation("settings.ratio", _unknown("ratio", spec.ratio, tuple(ratios.RATIO_SIZES)))
    if spec.seed is not None and not 0 <= spec.seed <= task_spec.MAX_SEED:
        yield Violation(
            "settings.seed", f"must be between 0 and {task_spec.MAX_SEED}, got {spec.seed}"
        )
    if spec.queue not in vocabulary.QUEUES:
        yield Violation("settings.queue", _unknown("queue", spec.queue, vocabulary.QUEUES))
    if spec.output_format not in vocabulary.IMAGE_FORMATS:
        yield Violation(
            "settings.output_format",
            _unknown("output format", spec.output_format, vocabulary.IMAGE_FORMATS),
        )
    if not 0 <= spec.priority <= limits.max_priority:
        yield Violation(
            "priority", f"must be between 0 and {limits.max_priority}, got {spec.priority}"
        )
    if len(spec.request_id) > limits.max_request_id_len:
        yield Violation("request_id", _too_long(len(spec.request_id), limits.max_request_id_len))


def _unknown(what: str, value: str, allowed: Sequence[str]) -> str:
    return f"unknown {what} {errors.echo(value)}; use one of {', '.join(allowed)}"


def _check_tags(tags: Sequence[str], limits: task_spec.Limits) -> Iterator[Violation]:
    if len(tags) > limits.max_tags:
        yield Violation("tags", f"has {len(tags)} tags, over the limit of {limits.max_tags}")
    for i, tag in enumerate(tags):
        if not tag.strip():
            yield Violation(f"tags[{i}]", "must not be empty")
        elif len(tag) > limits.max_tag_len:
            yield Violation(f"tags[{i}]", _too_long(len(tag), limits.max_tag_len))


def _check_webhook(
    webhook: task_spec.WebhookSpec | None, limits: task_spec.Limits
) -> Iterator[Violation]:
    if webhook is None:
        return
    problem = webhook_url_problem(webhook.url, limits)
    if problem:
        yield Violation("settings.webhook.url", problem)
    # The secret is never echoed back: error messages end up in logs.
    if not webhook.secret:
        yield Violation("settings.webhook.secret", "is required")
    elif len(webhook.secret) < _MIN_SECRET_LEN:
        yield Violation("settings.webhook.secret", f"must be at least {_MIN_SECRET_LEN} characters")
    for i, event in enumerate(webhook.events):
        if event not in task_spec.WEBHOOK_EVENTS:
            yield Violation(
                f"settings.webhook.events[{i}]",
                _unknown("event", event, task_spec.WEBHOOK_EVENTS),
            )


def webhook_url_problem(url: str, limits: task_spec.Limits) -> str | None:
    """Why `url` cannot be a webhook target, or None when it can (see `webhook_target`)."""
    problem = _url_text_problem(url, limits.max_webhook_url_len)
    if problem is not None:
        return problem
    return webhook_target.url_problem(url, allow_private=limits.allow_private_webhooks)


def _url_text_problem(url: str, max_len: int) -> str | None:
    if not url:
        return "is required"
    if len(url) > max_len:
        return _too_long(len(url), max_len)
    # urlsplit quietly drops some of these characters; refuse them rather than guess.
    if _URL_FORBIDDEN.search(url):
        return "must not contain spaces or control characters"
    return None
