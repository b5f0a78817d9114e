"""Expanding a task into subtask plans: pure computation, no I/O.

A task's variables form "axes": each free variable is one axis, and each zip group is one
axis whose variables advance together. The combinations are the cartesian product of the
axes, listed coverage-first (see `coverage_order`), and the whole list is repeated
`images_per_combination` times, round by round, so every combination gets its first image
before any gets its second.

Prompt templates use `{name}` placeholders; `{{` and `}}` stand for literal braces, and
any other brace is an error (the syntax of `str.format`, restricted to bare names). A
template is parsed once per task and compiled to a printf-style string, so filling it for
each combination runs in C rather than scanning the text again.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
import random
import re
import struct
import typing
from collections.abc import Iterator, Mapping, Sequence

from kiln.common import ratios
from tasks import spec as task_spec

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclasses.dataclass(frozen=True)
class Template:
    """A template split once into literal text and placeholder names.

    `literals` has one more item than `names`: the text reads literals[0], names[0],
    literals[1], ... Braces in `literals` are already unescaped. `problems` describes each
    stray or malformed brace; a template with problems must not be rendered.
    """

    literals: tuple[str, ...]
    names: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The distinct placeholder names, in order of first appearance."""
        return tuple(dict.fromkeys(self.names))

    def percent_format(self) -> str:
        """The template as a printf-style string taking its placeholders' values in order."""
        if self.problems:
            raise ValueError(f"template is malformed: {'; '.join(self.problems)}")
        return "%s".join(literal.replace("%", "%%") for literal in self.literals)


def parse_template(text: str) -> Template:
    """Split `text` into literals and placeholders, noting every malformed brace."""
    literals: list[str] = []
    names: list[str] = []
    problems: list[str] = []
    pending: list[str] = []  # literal text since the last placeholder
    end = 0
    for match in _TOKEN.finditer(text):
        pending.append(text[end : match.start()])
        end = match.end()
        token = match.group()
        inner = match.group(1)
        if token in ("{{", "}}"):
            pending.append(token[0])
        elif inner is not None and _NAME.fullmatch(inner):
            literals.append("".join(pending))
            pending = []
            names.append(inner)
        elif inner is not None:
            problems.append(
                f"{token!r} at position {match.start()} is not a placeholder: a name is "
                "letters, digits and underscores, not starting with a digit "
                "(write {{ and }} for literal braces)"
            )
            pending.append(token)
        else:
            problems.append(
                f"unmatched {token!r} at position {match.start()} "
                f"(write {token * 2} for a literal brace)"
            )
            pending.append(token)
    pending.append(text[end:])
    literals.append("".join(pending))
    return Template(tuple(literals), tuple(names), tuple(problems))


def axes(spec: task_spec.TaskSpec) -> tuple[tuple[str, ...], ...]:
    """The variable names of each axis, in the order the variables are declared.

    A zip group's axis sits where its first-declared variable does. Assumes the zip groups
    are valid: every name declared, no name in two groups.
    """
    group_of = {name: group for group in spec.zip_groups for name in group}
    found: dict[tuple[str, ...], None] = {}
    for name in spec.variables:
        found.setdefault(group_of.get(name, (name,)), None)
    return tuple(found)


def coverage_order(lengths: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Every combination of indexes into axes of these lengths, exactly once, coverage-first.

    The first max(lengths) combinations walk the diagonal, (j mod n1, j mod n2, ...), so
    together they use every index of every axis. The rest follow in `itertools.product`
    order, skipping the diagonal ones already given. No axes yields one empty combination.
    """
    if any(n < 1 for n in lengths):
        raise ValueError(f"every axis needs at least one value, got lengths {list(lengths)}")
    widest = max(lengths, default=1)
    diagonal = [tuple(j % n for n in lengths) for j in range(widest)]
    yield from diagonal
    seen = set(diagonal)
    for combination in itertools.product(*(range(n) for n in lengths)):
        if combination not in seen:
            yield combination


class SubtaskPlan(typing.NamedTuple):
    """One subtask as the expansion decides it, before it gets an id.

    `index` is its position in the task, `combination_index` its combination's position in
    coverage-first order, and `repeat` which image of that combination it is (from 0).

    An immutable NamedTuple rather than a frozen dataclass: a frozen dataclass sets each
    field through `object.__setattr__`, which made expanding 10,000 subtasks take half as
    long again (about 32 ms against 21 ms, see bench/bench_expansion.py).
    """

    # The contract names this field `index`; it hides tuple.index(), which plans never need.
    index: int  # type: ignore[assignment]
    variable_values: dict[str, str]
    prompt: str
    negative_prompt: str
    seed: int
    width: int
    height: int
    ratio: str
    combination_index: int
    repeat: int


@dataclasses.dataclass(frozen=True)
class _Combinations:
    """The combinations in coverage-first order, column by column: item i of each list
    belongs to combination i."""

    values: list[dict[str, str]]
    prompts: list[str]
    negative_prompts: list[str]


def expand(spec: task_spec.TaskSpec, seed_source: random.Random | None = None) -> list[SubtaskPlan]:
    """The subtasks of a validated task, in index order.

    Seeds are base + index (wrapped to stay within 0..MAX_SEED) with a fixed base, or else
    drawn from `seed_source` (default: the OS generator), so a seeded `random.Random`
    reproduces them. Raises ValueError on a spec that `validation.validate` would refuse.
    """
    combinations = _combinations(spec)
    count = len(combinations.values)
    seeds = _seeds(spec.seed, count * spec.images, seed_source)
    ratio = spec.effective_ratio
    width, height = ratios.size_for(ratio)
    plans: list[SubtaskPlan] = []
    for repeat in range(spec.images):
        first = repeat * count
        # Each plan owns its values: the first round takes the dicts just built, later
        # rounds take copies, so changing one plan's values cannot change another's.
        values = combinations.values if repeat == 0 else map(dict, combinations.values)
        # map() keeps this per-plan loop in C; the arguments follow SubtaskPlan's fields.
        plans.extend(
            map(
                SubtaskPlan,
                range(first, first + count),  # index
                values,  # variable_values
                combinations.prompts,  # prompt
                combinations.negative_prompts,  # negative_prompt
                seeds[first : first + count],  # seed
                itertools.repeat(width, count),  # width
                itertools.repeat(height, count),  # height
                itertools.repeat(ratio, count),  # ratio
                range(count),  # combination_index
                itertools.repeat(repeat, count),  # repeat
            )
        )
    return plans


def _combinations(spec: task_spec.TaskSpec) -> _Combinations:
    """Every combination's values and rendered prompts, once, in coverage-first order.

    The work goes column by column (one list per variable, then one `map` per output) so
    that the loops over combinations run inside the interpreter's C code: this is the hot
    path of a large task.
    """
    task_axes = axes(spec)
    axis_of = {name: a for a, axis in enumerate(task_axes) for name in axis}
    if undeclared := axis_of.keys() - spec.variables.keys():
        raise ValueError(f"zip groups name undeclared variables {sorted(undeclared)}")
    lengths = [len(spec.variables[axis[0]]) for axis in task_axes]
    for axis, length in zip(task_axes, lengths, strict=True):
        if any(len(spec.variables[name]) != length for name in axis):
            raise ValueError(f"zipped variables {list(axis)} have unequal lengths")
    order = list(coverage_order(lengths))
    # columns[name][i]: the variable's value in combination i, read at its axis's index.
    columns = {
        name: list(map(values.__getitem__, map(operator.itemgetter(axis_of[name]), order)))
        for name, values in spec.variables.items()
    }
    if columns:
        rows = zip(*columns.values(), strict=True)
        value_dicts = list(map(dict, map(zip, itertools.repeat(tuple(columns)), rows)))
    else:  # no variables: one combination, of no values
        value_dicts = [{}]
    return _Combinations(
        values=value_dicts,
        prompts=_render(spec.prompt_template, columns, len(order)),
        negative_prompts=_render(spec.negative_prompt, columns, len(order)),
    )


def _render(text: str, columns: Mapping[str, list[str]], count: int) -> list[str]:
    """`text` filled in for each of `count` combinations, given each variable's column."""
    template = parse_template(text)
    printf = template.percent_format()
    if not template.names:
        return [printf % ()] * count
    if unknown := set(template.names) - columns.keys():
        raise ValueError(f"placeholders {sorted(unknown)} name no variable")
    # printf-style formatting is the fastest way CPython offers to fill a template.
    filled = zip(*(columns[name] for name in template.names), strict=True)
    return list(map(printf.__mod__, filled))


def _seeds(base: int | None, count: int, source: random.Random | None) -> list[int]:
    """The seeds of subtasks 0..count-1."""
    if base is not None:
        modulus = task_spec.MAX_SEED + 1
        return [(base + i) % modulus for i in range(count)]
    if count == 0:
        return []
    if source is None:
        source = random.SystemRandom()
    # One draw of 32 bits per seed, cut into words: with the OS generator that is one
    # system call rather than one per subtask. Dropping the top bit of each word keeps
    # the seeds uniform over 0..MAX_RANDOM_SEED.
    raw = source.getrandbits(32 * count).to_bytes(4 * count, "little")
    return [word & task_spec.MAX_RANDOM_SEED for word in struct.unpack(f"<{count}I", raw)]
