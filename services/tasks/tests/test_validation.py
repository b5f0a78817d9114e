"""Tests of tasks.validation: every rule names its field, and all come in one error."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kiln.common import errors, ratios, vocabulary
from tasks import spec as task_spec
from tasks import validation

LIMITS = task_spec.Limits()
SECRET = "0123456789abcdef-secret"


def make_spec(**changes: Any) -> task_spec.TaskSpec:
    """A valid two-colour task, with `changes` applied."""
    base = task_spec.TaskSpec(
        task_name="cats",
        prompt_template="a {color} cat",
        variables={"color": ("red", "blue")},
    )
    return dataclasses.replace(base, **changes)


def make_webhook(
    url: str = "https://hooks.example.com/kiln", **changes: Any
) -> task_spec.WebhookSpec:
    """A valid webhook, with `changes` applied."""
    return dataclasses.replace(task_spec.WebhookSpec(url=url, secret=SECRET), **changes)


def violations(spec: task_spec.TaskSpec, limits: task_spec.Limits = LIMITS) -> dict[str, str]:
    """The violations `validate` raises for `spec`, as field -> description (joined)."""
    with pytest.raises(errors.InvalidArgument) as caught:
        validation.validate(spec, limits)
    found: dict[str, str] = {}
    for violation in caught.value.violations:
        found[violation.field] = "; ".join(
            filter(None, [found.get(violation.field), violation.description])
        )
    return found


# --- counting ---------------------------------------------------------------------------


def test_valid_spec_returns_the_subtask_count() -> None:
    """A valid task yields the product of its variable lengths times the images per combination."""
    spec = make_spec(
        prompt_template="a {size} {color} cat",
        variables={"color": ("red", "blue"), "size": ("s", "m", "l")},
        images_per_combination=4,
    )
    assert validation.validate(spec, LIMITS) == 24


def test_zero_images_per_combination_means_one() -> None:
    """images_per_combination 0 is the proto default and counts as 1."""
    assert validation.validate(make_spec(images_per_combination=0), LIMITS) == 2


def test_task_without_variables_counts_its_images() -> None:
    """Without variables there is one combination, so the count is images_per_combination."""
    spec = make_spec(prompt_template="a cat", variables={}, images_per_combination=7)
    assert validation.validate(spec, LIMITS) == 7


def test_zip_group_counts_once() -> None:
    """Zipped variables form one axis, so they multiply the count once, not per variable."""
    spec = make_spec(
        prompt_template="a {color} {shape} in {size}",
        variables={"color": ("r", "g", "b"), "shape": ("o", "x", "+"), "size": ("s", "m")},
        zip_groups=(("color", "shape"),),
    )
    assert validation.validate(spec, LIMITS) == 6


def test_count_at_the_limit_is_accepted() -> None:
    """Exactly max_subtasks subtasks is allowed; the limit is inclusive."""
    spec = make_spec(
        variables={"color": tuple(f"c{i}" for i in range(100))}, images_per_combination=100
    )
    assert validation.validate(spec, LIMITS) == 10_000


def test_over_the_limit_states_the_count_and_the_limit() -> None:
    """Past max_subtasks, the violation on `variables` says how many subtasks and the limit."""
    spec = make_spec(
        variables={"color": tuple(f"c{i}" for i in range(120))}, images_per_combination=100
    )
    found = violations(spec)
    assert list(found) == ["variables"]
    assert found["variables"].startswith(
        "the task expands to 12000 subtasks, over the limit of 10000"
    )


def test_over_the_limit_without_variables_blames_images_per_combination() -> None:
    """With no variables, only images_per_combination can push the count past the limit."""
    spec = make_spec(prompt_template="a cat", variables={}, images_per_combination=6)
    found = violations(spec, dataclasses.replace(LIMITS, max_subtasks=5))
    assert "the task expands to 6 subtasks, over the limit of 5" in found["images_per_combination"]


def test_huge_product_is_counted_without_listing_combinations() -> None:
    """Twenty variables of a thousand values (10**60 combinations) are counted exactly, at once."""
    values = tuple(str(i) for i in range(1000))
    spec = make_spec(prompt_template="x", variables={f"v{i}": values for i in range(20)})
    found = violations(spec)
    assert f"the task expands to {10**60} subtasks, over the limit of 10000" in found["variables"]


# --- one error for everything -----------------------------------------------------------


def test_all_violations_come_in_one_error() -> None:
    """Several problems are reported together, each naming its own field."""
    spec = make_spec(
        task_name="",
        prompt_template="a {colour} cat",
        ratio="5:4",
        priority=12,
        tags=("",),
        webhook=make_webhook("ftp://example.com/", secret="short"),
    )
    assert set(violations(spec)) == {
        "task_name",
        "prompt_template",
        "settings.ratio",
        "priority",
        "tags[0]",
        "settings.webhook.url",
        "settings.webhook.secret",
    }


def test_error_message_lists_every_violation() -> None:
    """The status message names each field, so a plain-text client sees every problem too."""
    with pytest.raises(errors.InvalidArgument) as caught:
        validation.validate(make_spec(task_name="", priority=-1), LIMITS)
    assert "task_name:" in caught.value.message
    assert "priority:" in caught.value.message


# --- name, prompt, placeholders ---------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_task_name_is_refused(name: str) -> None:
    """A task name that is empty or only spaces is refused."""
    assert violations(make_spec(task_name=name))["task_name"] == "must not be empty"


def test_task_name_length_limit() -> None:
    """A name of max_name_len characters passes; one more is refused with both numbers."""
    assert validation.validate(make_spec(task_name="n" * 200), LIMITS) == 2
    assert (
        violations(make_spec(task_name="n" * 201))["task_name"]
        == "is 201 characters, over the limit of 200"
    )


@pytest.mark.parametrize("prompt", ["", " \n"])
def test_empty_prompt_is_refused(prompt: str) -> None:
    """An empty or blank prompt template is refused."""
    spec = make_spec(prompt_template=prompt, variables={})
    assert violations(spec)["prompt_template"] == "must not be empty"


def test_prompt_and_negative_prompt_length_limit() -> None:
    """Both templates are limited to max_prompt_len characters."""
    spec = make_spec(prompt_template="{color}" + "a" * 4000, negative_prompt="b" * 4001)
    found = violations(spec)
    assert found["prompt_template"] == "is 4007 characters, over the limit of 4000"
    assert found["settings.negative_prompt"] == "is 4001 characters, over the limit of 4000"


def test_unknown_placeholder_in_prompt_is_named() -> None:
    """A placeholder naming no variable is reported on prompt_template, naming the placeholder."""
    found = violations(make_spec(prompt_template="a {colour} cat"))
    assert "{colour}" in found["prompt_template"]
    assert "color" in found["prompt_template"]  # the known variables are listed as a hint


def test_unknown_placeholder_in_negative_prompt_is_named() -> None:
    """The negative prompt's placeholders must name variables too; reported on its own field."""
    found = violations(make_spec(negative_prompt="no {size}"))
    assert list(found) == ["settings.negative_prompt"]
    assert "{size}" in found["settings.negative_prompt"]


def test_placeholder_without_any_variables() -> None:
    """A placeholder in a task with no variables is refused, saying there are none."""
    found = violations(make_spec(prompt_template="a {color} cat", variables={}))
    assert "{color} names no variable (variables: none)" in found["prompt_template"]


def test_escaped_braces_are_literal_and_valid() -> None:
    """`{{` and `}}` are literal braces: `{{size}}` is no placeholder and needs no variable."""
    spec = make_spec(prompt_template="a {color} cat {{size}} }}{{", negative_prompt="{{x}}")
    assert validation.validate(spec, LIMITS) == 2


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a {color cat", "unmatched '{' at position 2"),
        ("a cat}", "unmatched '}' at position 5"),
        ("a { color } cat", "'{ color }' at position 2 is not a placeholder"),
        ("a {1color} cat", "'{1color}' at position 2 is not a placeholder"),
        ("a {} cat", "'{}' at position 2 is not a placeholder"),
        ("a {color.name} cat", "'{color.name}' at position 2 is not a placeholder"),
    ],
)
def test_malformed_braces_are_refused(prompt: str, expected: str) -> None:
    """A brace that is neither a `{name}` placeholder nor doubled is refused, with its position."""
    assert expected in violations(make_spec(prompt_template=prompt))["prompt_template"]


# --- variables --------------------------------------------------------------------------


def test_variable_without_values_is_refused() -> None:
    """Every variable needs at least one value; reported on its `.values`."""
    found = violations(make_spec(prompt_template="{color}", variables={"color": ()}))
    assert found == {'variables["color"].values': "must have at least one value"}


def test_empty_variable_name_is_refused() -> None:
    """A variable named by the empty string is refused."""
    found = violations(make_spec(variables={"color": ("red",), "": ("x",)}))
    assert found == {'variables[""]': "a variable name must not be empty"}


@pytest.mark.parametrize("name", ["1color", "col-or", "col or", "colör", "{color}"])
def test_invalid_variable_name_is_refused(name: str) -> None:
    """A variable name must look like an identifier: [A-Za-z_][A-Za-z0-9_]*."""
    found = violations(make_spec(variables={"color": ("red",), name: ("x",)}))
    field = f'variables["{name}"]'
    assert list(found) == [field]
    assert "not a valid variable name" in found[field]


@pytest.mark.parametrize("name", ["_", "Color_2", "_private"])
def test_identifier_like_variable_names_are_accepted(name: str) -> None:
    """Underscores, capitals and digits after the first character are fine."""
    spec = make_spec(prompt_template=f"a {{{name}}}", variables={name: ("x",)})
    assert validation.validate(spec, LIMITS) == 1


def test_too_many_variables() -> None:
    """More than max_variables variables is refused on `variables`, with both numbers."""
    spec = make_spec(variables={"color": ("r",), "a": ("1",), "b": ("2",)})
    found = violations(spec, dataclasses.replace(LIMITS, max_variables=2))
    assert found == {"variables": "has 3 variables, over the limit of 2"}


def test_too_many_values() -> None:
    """More than max_values_per_variable values is refused on that variable's values."""
    found = violations(
        make_spec(variables={"color": ("r", "g", "b")}),
        dataclasses.replace(LIMITS, max_values_per_variable=2),
    )
    assert found == {'variables["color"].values': "has 3 values, over the limit of 2"}


def test_value_too_long_names_its_index() -> None:
    """A value longer than max_value_len is reported at its own index."""
    found = violations(make_spec(variables={"color": ("red", "x" * 501)}))
    assert found == {'variables["color"].values[1]': "is 501 characters, over the limit of 500"}


def test_many_long_values_are_summed_up() -> None:
    """Past five long values in one variable, the rest are counted in one summary violation."""
    spec = make_spec(variables={"color": tuple("x" * 501 for _ in range(8))})
    found = violations(spec)
    assert [f for f in found if f.startswith('variables["color"].values[')] == [
        f'variables["color"].values[{i}]' for i in range(5)
    ]
    assert (
        found['variables["color"].values'] == "3 more values are over the limit of 500 characters"
    )


def test_empty_values_and_unused_variables_are_allowed() -> None:
    """An empty string is a valid value, and a variable need not appear in the prompt."""
    spec = make_spec(variables={"color": ("", "red"), "take": ("1", "2", "3")})
    assert validation.validate(spec, LIMITS) == 6


# --- zip groups -------------------------------------------------------------------------


def zipped_spec(
    *groups: tuple[str, ...], shape: tuple[str, ...] = ("o", "x")
) -> task_spec.TaskSpec:
    """A task with color (2), shape and size (3) variables and the given zip groups."""
    return make_spec(
        prompt_template="{color} {shape} {size}",
        variables={"color": ("r", "g"), "shape": shape, "size": ("s", "m", "l")},
        zip_groups=groups,
    )


def test_zip_group_with_unknown_variable() -> None:
    """A zip group naming no variable is refused on that member, naming it."""
    found = violations(zipped_spec(("color", "colour")))
    assert found == {"zip_groups[0].variables[1]": "names no variable: 'colour'"}


def test_variable_in_two_zip_groups() -> None:
    """A variable may be in one zip group only; the second mention is refused."""
    found = violations(zipped_spec(("color", "shape"), ("size", "color")))
    assert found["zip_groups[1].variables[1]"] == "'color' is already in zip_groups[0]"


def test_zip_group_needs_two_variables() -> None:
    """A zip group of one variable zips nothing and is refused."""
    found = violations(zipped_spec(("color",)))
    assert found == {"zip_groups[0]": "needs at least two different variables, has 1"}


def test_variable_twice_in_one_zip_group() -> None:
    """Listing a variable twice in the same group is refused on the repeat."""
    found = violations(zipped_spec(("color", "shape", "color")))
    assert found == {"zip_groups[0].variables[2]": "'color' is listed twice in this group"}


def test_zip_group_of_unequal_lengths_states_them() -> None:
    """Zipped variables need equally many values; the violation gives each length."""
    found = violations(zipped_spec(("color", "size")))
    assert found == {
        "zip_groups[0]": "zipped variables need equally many values: color has 2, size has 3"
    }


# --- settings and other scalars ---------------------------------------------------------


@pytest.mark.parametrize("images", [-1, 101])
def test_images_per_combination_out_of_range(images: int) -> None:
    """images_per_combination must be within 0..max (0 means 1)."""
    found = violations(make_spec(images_per_combination=images))
    assert found == {
        "images_per_combination": f"must be between 1 and 100 (0 means 1), got {images}"
    }


def test_unknown_ratio_lists_the_allowed_ones() -> None:
    """An unknown ratio is refused, and the message lists every allowed ratio."""
    found = violations(make_spec(ratio="5:4"))
    assert "'5:4'" in found["settings.ratio"]
    for ratio in ratios.RATIO_SIZES:
        assert ratio in found["settings.ratio"]


@pytest.mark.parametrize("ratio", ["", *ratios.RATIO_SIZES])
def test_known_and_empty_ratios_are_accepted(ratio: str) -> None:
    """Every ratio of the shared table is accepted, and empty means the default."""
    assert validation.validate(make_spec(ratio=ratio), LIMITS) == 2


@pytest.mark.parametrize("queue", ["", "fast", "Standard"])
def test_unknown_queue(queue: str) -> None:
    """Only high_priority, standard and lumina are queues (the handler maps UNSPECIFIED)."""
    found = violations(make_spec(queue=queue))
    assert found["settings.queue"].endswith("use one of high_priority, standard, lumina")


@pytest.mark.parametrize("queue", vocabulary.QUEUES)
def test_known_queues_are_accepted(queue: str) -> None:
    """Each known queue is accepted."""
    assert validation.validate(make_spec(queue=queue), LIMITS) == 2


@pytest.mark.parametrize("output_format", ["", "gif", "PNG"])
def test_unknown_output_format(output_format: str) -> None:
    """Only png, webp and jpeg are output formats."""
    found = violations(make_spec(output_format=output_format))
    assert found["settings.output_format"].endswith("use one of png, webp, jpeg")


@pytest.mark.parametrize("seed", [-1, task_spec.MAX_SEED + 1])
def test_seed_out_of_range(seed: int) -> None:
    """A fixed seed must be a non-negative int64."""
    assert "settings.seed" in violations(make_spec(seed=seed))


@pytest.mark.parametrize("seed", [0, task_spec.MAX_SEED])
def test_seed_bounds_are_accepted(seed: int) -> None:
    """0 and MAX_SEED are valid fixed seeds."""
    assert validation.validate(make_spec(seed=seed), LIMITS) == 2


@pytest.mark.parametrize("priority", [-1, 10])
def test_priority_out_of_range(priority: int) -> None:
    """Priority must be within 0..max_priority."""
    found = violations(make_spec(priority=priority))
    assert found == {"priority": f"must be between 0 and 9, got {priority}"}


def test_request_id_too_long() -> None:
    """A request id longer than max_request_id_len is refused."""
    found = violations(make_spec(request_id="r" * 129))
    assert found == {"request_id": "is 129 characters, over the limit of 128"}


# --- tags -------------------------------------------------------------------------------


def test_too_many_tags() -> None:
    """More than max_tags tags is refused on `tags`."""
    found = violations(make_spec(tags=tuple(f"t{i}" for i in range(21))))
    assert found == {"tags": "has 21 tags, over the limit of 20"}


@pytest.mark.parametrize("tag", ["", "  "])
def test_empty_tag(tag: str) -> None:
    """An empty or blank tag is refused at its index."""
    assert violations(make_spec(tags=("ok", tag))) == {"tags[1]": "must not be empty"}


def test_tag_too_long() -> None:
    """A tag longer than max_tag_len is refused at its index."""
    found = violations(make_spec(tags=("t" * 65,)))
    assert found == {"tags[0]": "is 65 characters, over the limit of 64"}


# --- webhook ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", "is required"),
        ("ftp://example.com/hook", "must be an absolute http or https URL"),
        ("example.com/hook", "must be an absolute http or https URL"),
        ("//example.com/hook", "must be an absolute http or https URL"),
        ("http:///hook", "must have a host"),
        ("https://:443/hook", "must have a host"),
        ("http://exa mple.com/", "must not contain spaces or control characters"),
        ("http://example.com/\nx", "must not contain spaces or control characters"),
        ("http://example.com:99999/", "has an invalid port"),
        ("http://example.com:port/", "has an invalid port"),
        ("http://[2001:db8::1/", "is not a valid URL"),
        ("https://example.com/" + "a" * 2048, "is 2068 characters, over the limit of 2048"),
    ],
)
def test_malformed_webhook_url(url: str, expected: str) -> None:
    """A webhook URL must be an absolute http(s) URL with a host and a valid port."""
    found = violations(make_spec(webhook=make_webhook(url)))
    assert found == {"settings.webhook.url": expected}


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/kiln",
        "HTTP://Hooks.Example.com:8080/kiln?x=1",
        "https://93.184.216.34/hook",
        "https://[2606:4700:4700::1111]/hook",
        "https://user:pass@hooks.example.com/",
    ],
)
def test_public_webhook_urls_are_accepted(url: str) -> None:
    """Public names and addresses over http or https are accepted."""
    assert validation.validate(make_spec(webhook=make_webhook(url)), LIMITS) == 2


PRIVATE_HOSTS = [
    ("localhost", "localhost"),
    ("LOCALHOST.", "localhost"),
    ("api.localhost", "localhost"),
    ("127.0.0.1", "loopback"),
    ("127.1", "loopback"),  # legacy short form the C resolver still reads
    ("2130706433", "loopback"),  # 127.0.0.1 as one decimal number
    ("0x7f.0.0.1", "loopback"),
    ("[::1]", "loopback"),
    ("[::ffff:127.0.0.1]", "loopback"),  # IPv4-mapped IPv6
    ("0.0.0.0", "unspecified"),  # noqa: S104 -- a webhook target here, not a bind address
    ("[::]", "unspecified"),
    ("169.254.169.254", "link-local"),  # cloud metadata endpoints live here
    ("[fe80::1]", "link-local"),
    ("10.0.0.5", "private"),
    ("172.16.3.4", "private"),
    ("192.168.1.1", "private"),
    ("[fd00::1]", "private"),
    ("100.64.0.1", "public"),  # carrier-grade NAT space: not private, not global either
    ("224.0.0.1", "public"),  # multicast
]


@pytest.mark.parametrize(("host", "kind"), PRIVATE_HOSTS)
def test_private_webhook_hosts_are_refused(host: str, kind: str) -> None:
    """Loopback, private, link-local, unspecified and other non-public IP literals and
    localhost are refused, whatever way the address is spelled."""
    found = violations(make_spec(webhook=make_webhook(f"http://{host}:8080/hook")))
    assert kind in found["settings.webhook.url"]


@pytest.mark.parametrize(("host", "kind"), PRIVATE_HOSTS)
def test_private_webhook_hosts_are_allowed_when_configured(host: str, kind: str) -> None:
    """With allow_private_webhooks (local and test deployments), private targets pass."""
    limits = dataclasses.replace(LIMITS, allow_private_webhooks=True)
    spec = make_spec(webhook=make_webhook(f"http://{host}:8080/hook"))
    assert validation.validate(spec, limits) == 2


def test_dns_names_are_not_resolved() -> None:
    """A DNS name is judged by its text only; resolution is the sender's check at delivery."""
    spec = make_spec(webhook=make_webhook("https://internal.corp.example/hook"))
    assert validation.validate(spec, LIMITS) == 2


def test_webhook_secret_is_required() -> None:
    """A webhook needs a secret to sign its deliveries."""
    found = violations(make_spec(webhook=make_webhook(secret="")))
    assert found == {"settings.webhook.secret": "is required"}


def test_short_webhook_secret_is_refused_without_echoing_it() -> None:
    """A secret under 16 characters is refused, and the message never contains the secret."""
    with pytest.raises(errors.InvalidArgument) as caught:
        validation.validate(make_spec(webhook=make_webhook(secret="hunter2-xyz")), LIMITS)
    assert [v.field for v in caught.value.violations] == ["settings.webhook.secret"]
    assert "at least 16 characters" in caught.value.message
    assert "hunter2" not in caught.value.message


def test_unknown_webhook_event() -> None:
    """Only task_finished and subtask_finished are events; an unknown one is named at its index."""
    webhook = make_webhook(events=("task_finished", "task_started"))
    found = violations(make_spec(webhook=webhook))
    assert found == {
        "settings.webhook.events[1]": "unknown event 'task_started'; "
        "use one of task_finished, subtask_finished"
    }


def test_empty_event_filter_means_task_finished() -> None:
    """An empty event filter is valid and selects task_finished, as the proto says."""
    webhook = make_webhook()
    assert validation.validate(make_spec(webhook=webhook), LIMITS) == 2
    assert webhook.selected_events == ("task_finished",)


# --- rendered sizes, and caller text echoed -----------------------------------------------


def _exploding_spec(value: str) -> task_spec.TaskSpec:
    """A 3,999-character template of 1,333 placeholders of one 500-character value: it
    renders to 666,500 characters (in the prompt and again in the negative prompt)."""
    template = "{v}" * 1333
    return make_spec(
        prompt_template=template,
        negative_prompt=template,
        variables={"v": ("short", value)},
    )


def test_rendered_prompt_over_the_limit_is_refused() -> None:
    """The prompt limit applies to the rendered prompt (longest value per placeholder), on
    both the prompt and the negative prompt, naming each field and the limit."""
    found = violations(_exploding_spec("x" * 500))
    for field in ("prompt_template", "settings.negative_prompt"):
        assert "renders to up to 666500 characters" in found[field]
        assert f"over the limit of {LIMITS.max_rendered_prompt_len}" in found[field]


def test_rendered_prompt_at_the_limit_is_accepted() -> None:
    """A template whose longest rendering is exactly the limit passes."""
    limits = dataclasses.replace(LIMITS, max_rendered_prompt_len=len("a blue cat"))
    assert validation.validate(make_spec(prompt_template="a {color} cat"), limits) == 2


def test_a_job_larger_than_the_bus_takes_is_refused() -> None:
    """With the bus's limit known, a task whose largest job (in UTF-8 bytes: 'é' is two)
    would not fit is refused on prompt_template, naming the bus's limit."""
    limits = dataclasses.replace(LIMITS, max_rendered_prompt_len=10**6, max_job_bytes=1_048_320)
    found = violations(_exploding_spec("é" * 500), limits)
    assert "over the message bus's limit of 1048320 bytes" in found["prompt_template"]
    assert validation.job_size_bound(666_500 * 2, 666_500 * 2) > 1_048_320


def test_job_size_bound_is_never_below_a_real_job() -> None:
    """The bound covers an encoded job with long ids, big numbers and the given prompts."""
    from kiln.imagegen.v1 import jobs_pb2  # noqa: PLC0415

    job = jobs_pb2.Job(
        subtask_id="0" * 36, task_id="0" * 36, owner_id="o" * 128, queue="high_priority",
        attempt=2**31 - 1, prompt="é" * 700, negative_prompt="n" * 70, width=4096,
        height=4096, seed=2**63 - 1, use_polish=True, format="IMAGE_FORMAT_JPEG",
        generation=2**31 - 1,
        index=2**31 - 1, ratio="21:9",
    )  # fmt: skip
    job.create_time.GetCurrentTime()
    assert validation.job_size_bound(1400, 70) >= job.ByteSize()


def test_thousands_of_variables_are_refused_not_crashed() -> None:
    """4,301 variables (a product too long to print) get the variable-count violation,
    not an internal error."""
    names = [f"v{i}" for i in range(4301)]
    spec = make_spec(prompt_template="x", variables={n: tuple("0123456789") for n in names})
    found = violations(spec)
    assert "has 4301 variables, over the limit of 20" in found["variables"]


def test_huge_ratio_and_variable_name_are_echoed_cut() -> None:
    """A 20 KB ratio and a 20 KB variable name appear in the error only cut short."""
    name = "n" * 20_000
    spec = make_spec(ratio="r" * 20_000, variables={"color": ("red",), name: ("x",)})
    with pytest.raises(errors.InvalidArgument) as caught:
        validation.validate(spec, LIMITS)
    for violation in caught.value.violations:
        assert len(violation.field) < 200 and len(violation.description) < 400, violation
    assert len(caught.value.message) <= errors.MAX_ERROR_MESSAGE_BYTES
