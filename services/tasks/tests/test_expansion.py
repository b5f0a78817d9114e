"""Tests of tasks.expansion: order, zips, repeats, seeds, placeholders and sizes."""

from __future__ import annotations

import collections
import dataclasses
import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiln.common import ratios
from tasks import expansion
from tasks import spec as task_spec


def make_spec(**changes: Any) -> task_spec.TaskSpec:
    """A task of three colours by four sizes, with `changes` applied."""
    base = task_spec.TaskSpec(
        task_name="cats",
        prompt_template="a {size} {color} cat",
        variables={"color": ("red", "green", "blue"), "size": ("xs", "s", "m", "l")},
        seed=100,
    )
    return dataclasses.replace(base, **changes)


def value_combo(plan: expansion.SubtaskPlan) -> tuple[tuple[str, str], ...]:
    """A plan's variable values in a hashable, order-independent form."""
    return tuple(sorted(plan.variable_values.items()))


# --- templates --------------------------------------------------------------------------


def test_parse_template_splits_literals_and_placeholders() -> None:
    """A template splits into literals around placeholders, with doubled braces unescaped."""
    template = expansion.parse_template("{a} and {{b}} and {a}{c}")
    assert template.literals == ("", " and {b} and ", "", "")
    assert template.names == ("a", "a", "c")
    assert template.placeholders == ("a", "c")
    assert template.problems == ()


def test_parse_template_reports_each_bad_brace() -> None:
    """Every stray or malformed brace is a problem, and parsing carries on past it."""
    template = expansion.parse_template("} {x y} {ok} {")
    assert len(template.problems) == 3
    assert template.placeholders == ("ok",)


def test_malformed_template_is_not_rendered() -> None:
    """A template with problems refuses to compile rather than guess what was meant."""
    with pytest.raises(ValueError, match="malformed"):
        expansion.parse_template("a {b").percent_format()


# --- coverage-first order ---------------------------------------------------------------


def test_coverage_order_starts_on_the_diagonal() -> None:
    """For axes of 3 and 4 values, the first four combinations are (0,0),(1,1),(2,2),(0,3)."""
    order = list(expansion.coverage_order([3, 4]))
    assert order[:4] == [(0, 0), (1, 1), (2, 2), (0, 3)]
    assert len(order) == 12


def test_coverage_order_continues_in_product_order() -> None:
    """After the diagonal, the rest follow itertools.product order, so the order is stable."""
    order = list(expansion.coverage_order([2, 3]))
    assert order == [(0, 0), (1, 1), (0, 2), (0, 1), (1, 0), (1, 2)]


def test_coverage_order_without_axes() -> None:
    """No axes is one empty combination: the task's single plain prompt."""
    assert list(expansion.coverage_order([])) == [()]


def test_coverage_order_refuses_empty_axes() -> None:
    """An axis without values has no combinations; that is a caller bug, not an empty task."""
    with pytest.raises(ValueError, match="at least one value"):
        list(expansion.coverage_order([2, 0]))


@given(st.lists(st.integers(min_value=1, max_value=7), max_size=4))
def test_coverage_order_covers_first_and_lists_each_combination_once(lengths: list[int]) -> None:
    """For any axis sizes, the first max(len) combinations use every index of every axis,
    and every combination of the product appears exactly once."""
    order = list(expansion.coverage_order(lengths))
    assert len(order) == len(set(order)) == math.prod(lengths)
    head = order[: max(lengths, default=1)]
    for axis, length in enumerate(lengths):
        assert {combination[axis] for combination in head} == set(range(length))


axis_sizes = st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=4)


@given(sizes=axis_sizes, zip_first_two=st.booleans(), images=st.integers(min_value=1, max_value=3))
def test_expand_covers_every_value_first_and_repeats_by_rounds(
    sizes: list[int], zip_first_two: bool, images: int
) -> None:
    """For random variables (optionally zipping two of them), the first max(axis length)
    subtasks show every value of every variable, each round holds every combination exactly
    once, and the rounds come one after the other."""
    variables = {f"v{i}": tuple(f"v{i}-{j}" for j in range(n)) for i, n in enumerate(sizes)}
    zip_groups: tuple[tuple[str, ...], ...] = ()
    if zip_first_two and len(sizes) >= 2:
        variables["v1"] = tuple(f"v1-{j}" for j in range(sizes[0]))
        zip_groups = (("v0", "v1"),)
    spec = task_spec.TaskSpec(
        task_name="t",
        prompt_template=" ".join(f"{{{name}}}" for name in variables),
        variables=variables,
        zip_groups=zip_groups,
        images_per_combination=images,
        seed=0,
    )
    plans = expansion.expand(spec)

    axis_lengths = [len(variables[axis[0]]) for axis in expansion.axes(spec)]
    combinations = math.prod(axis_lengths)
    assert len(plans) == combinations * images
    assert [plan.index for plan in plans] == list(range(len(plans)))
    head = plans[: max(axis_lengths)]
    for name, values in variables.items():
        assert {plan.variable_values[name] for plan in head} == set(values)
    first_round = [value_combo(plan) for plan in plans[:combinations]]
    assert len(set(first_round)) == combinations
    for repeat in range(images):
        this_round = plans[repeat * combinations : (repeat + 1) * combinations]
        assert [value_combo(plan) for plan in this_round] == first_round
        assert {plan.repeat for plan in this_round} == {repeat}
        assert [plan.combination_index for plan in this_round] == list(range(combinations))


# --- zip groups -------------------------------------------------------------------------


def test_zipped_variables_advance_together() -> None:
    """Variables of a zip group always take values at the same position, never crossed."""
    spec = make_spec(
        prompt_template="{color} {shade} {size}",
        variables={
            "color": ("red", "green", "blue"),
            "size": ("s", "m"),
            "shade": ("dark red", "dark green", "dark blue"),
        },
        zip_groups=(("color", "shade"),),
    )
    plans = expansion.expand(spec)
    assert len(plans) == 6
    pairs = {(p.variable_values["color"], p.variable_values["shade"]) for p in plans}
    assert pairs == {("red", "dark red"), ("green", "dark green"), ("blue", "dark blue")}
    assert plans[0].prompt == "red dark red s"


def test_zip_group_is_one_axis_in_the_coverage_order() -> None:
    """A zip group is a single axis: with a group of 3 and a variable of 2, the first three
    subtasks already show all values."""
    spec = make_spec(
        prompt_template="{a}{b}{c}",
        variables={"a": ("1", "2", "3"), "b": ("x", "y"), "c": ("i", "ii", "iii")},
        zip_groups=(("c", "a"),),
    )
    prompts = [plan.prompt for plan in expansion.expand(spec)]
    assert prompts[:3] == ["1xi", "2yii", "3xiii"]


def test_expand_refuses_unequal_zip_group() -> None:
    """expand assumes a validated spec and refuses a zip group of unequal lengths."""
    spec = make_spec(zip_groups=(("color", "size"),))
    with pytest.raises(ValueError, match="unequal"):
        expansion.expand(spec)


# --- images_per_combination -------------------------------------------------------------


def test_images_per_combination_repeats_round_by_round() -> None:
    """Repeats are round-major: every combination once, then every combination again."""
    spec = make_spec(variables={"color": ("red", "blue"), "size": ("s",)}, images_per_combination=3)
    plans = expansion.expand(spec)
    assert [(p.combination_index, p.repeat) for p in plans] == [
        (0, 0),
        (1, 0),
        (0, 1),
        (1, 1),
        (0, 2),
        (1, 2),
    ]
    assert [p.variable_values["color"] for p in plans] == ["red", "blue"] * 3


def test_zero_images_per_combination_means_one() -> None:
    """images_per_combination 0 (the proto default) gives one image per combination."""
    assert len(expansion.expand(make_spec(images_per_combination=0))) == 12


def test_task_without_variables_repeats_the_plain_prompt() -> None:
    """Without variables, a task yields images_per_combination copies of its plain prompt."""
    spec = make_spec(prompt_template="a cat {{x}}", variables={}, images_per_combination=3)
    plans = expansion.expand(spec)
    assert [p.prompt for p in plans] == ["a cat {x}"] * 3
    assert [p.variable_values for p in plans] == [{}, {}, {}]
    assert [p.repeat for p in plans] == [0, 1, 2]


def test_each_plan_owns_its_values() -> None:
    """Changing one plan's values, even a repeat of the same combination, changes no other."""
    plans = expansion.expand(make_spec(images_per_combination=2))
    plans[0].variable_values["color"] = "purple"
    assert plans[12].combination_index == 0
    assert plans[12].variable_values["color"] == "red"


# --- seeds ------------------------------------------------------------------------------


def test_fixed_seed_gives_base_plus_index() -> None:
    """With a fixed base seed, subtask i gets base + i."""
    plans = expansion.expand(make_spec(seed=100, images_per_combination=2))
    assert [p.seed for p in plans] == [100 + i for i in range(24)]


def test_fixed_seed_wraps_past_the_int64_maximum() -> None:
    """base + i wraps to 0 after MAX_SEED, so every seed fits a non-negative int64."""
    plans = expansion.expand(make_spec(seed=task_spec.MAX_SEED - 1))
    assert [p.seed for p in plans[:4]] == [task_spec.MAX_SEED - 1, task_spec.MAX_SEED, 0, 1]


def test_random_seeds_are_recorded_and_in_range() -> None:
    """Without a base seed, each subtask gets its own random seed in 0..2**31-1."""
    plans = expansion.expand(make_spec(seed=None, images_per_combination=50))
    seeds = [p.seed for p in plans]
    assert all(0 <= seed <= task_spec.MAX_RANDOM_SEED for seed in seeds)
    assert len(set(seeds)) > len(seeds) * 0.99  # collisions in 2**31 are rare


def test_random_seeds_are_reproducible_with_a_seeded_source() -> None:
    """The same seeded random.Random gives the same seeds; another seed gives others."""
    spec = make_spec(seed=None)
    first = [p.seed for p in expansion.expand(spec, random.Random(7))]
    again = [p.seed for p in expansion.expand(spec, random.Random(7))]
    other = [p.seed for p in expansion.expand(spec, random.Random(8))]
    assert first == again
    assert first != other


def test_random_seeds_use_the_full_range() -> None:
    """Random seeds reach the top of 0..2**31-1, not a narrower range."""
    plans = expansion.expand(make_spec(seed=None, images_per_combination=100), random.Random(1))
    assert max(p.seed for p in plans) > 2**30


# --- placeholders, sizes ----------------------------------------------------------------


def test_placeholders_fill_prompt_and_negative_prompt() -> None:
    """`{name}` is replaced by the subtask's value in both the prompt and the negative prompt."""
    spec = make_spec(negative_prompt="no {color}, no {color} blur")
    plan = expansion.expand(spec)[0]
    assert plan.variable_values == {"color": "red", "size": "xs"}
    assert plan.prompt == "a xs red cat"
    assert plan.negative_prompt == "no red, no red blur"


def test_doubled_braces_are_literal() -> None:
    """`{{` and `}}` render as single braces and are never filled."""
    spec = make_spec(prompt_template="{{size}} {size}}} {{{color}}}")
    assert expansion.expand(spec)[0].prompt == "{size} xs} {red}"


def test_values_are_inserted_verbatim() -> None:
    """A value that looks like a placeholder is inserted as text, not filled again."""
    spec = make_spec(variables={"color": ("{size}", "{{x}}"), "size": ("s",)})
    assert [p.prompt for p in expansion.expand(spec)] == ["a s {size} cat", "a s {{x}} cat"]


def test_percent_signs_are_plain_text() -> None:
    """`%` in a template or a value is ordinary text, never a formatting directive."""
    spec = make_spec(
        prompt_template="50%s {color} %d %%", variables={"color": ("100%", "%s")}, seed=1
    )
    assert [p.prompt for p in expansion.expand(spec)] == ["50%s 100% %d %%", "50%s %s %d %%"]


def test_unused_variable_still_multiplies() -> None:
    """A variable missing from the prompt still makes combinations (and is recorded)."""
    spec = make_spec(prompt_template="a {color} cat")
    plans = expansion.expand(spec)
    assert len(plans) == 12
    assert collections.Counter(p.prompt for p in plans)["a red cat"] == 4


def test_expand_refuses_unknown_placeholder() -> None:
    """expand assumes a validated spec and refuses a placeholder naming no variable."""
    with pytest.raises(ValueError, match="name no variable"):
        expansion.expand(make_spec(prompt_template="a {colour} cat"))


@pytest.mark.parametrize(("ratio", "size"), list(ratios.RATIO_SIZES.items()))
def test_sizes_come_from_the_ratio_table(ratio: str, size: tuple[int, int]) -> None:
    """Each plan records its ratio and the shared table's width and height for it."""
    plan = expansion.expand(make_spec(ratio=ratio))[0]
    assert (plan.ratio, plan.width, plan.height) == (ratio, *size)


def test_empty_ratio_records_the_default() -> None:
    """An empty ratio renders at, and records, the default ratio."""
    plan = expansion.expand(make_spec(ratio=""))[0]
    assert (plan.ratio, plan.width, plan.height) == ("1:1", 1024, 1024)
