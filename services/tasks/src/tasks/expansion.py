"""Expanding a task into subtask plans: pure computation, no I/O.

A task's variables form "axes": each free variable is one axis, and each zip group is one
axis whose variables advance together. The combinations are the cartesian product of the
axes, listed coverage-first (see `coverage_order`), and the whole list is repeated
`images_per_combination` times, round by round, so every combination gets its first image
before any gets its second.

Prompt templates use `{name}` placeholders; `{{` and `}}` stand for literal braces, and
any other brace is an error. This is the syntax of `str.format` restricted to bare names,
which lets a validated template compile to a positional format string and render at C speed.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
import random
import re
import struct
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

    def format_string(self, position: Mapping[str, int]) -> str:
        """A `str.format` string taking the values positionally, by `position[name]`."""
        if self.problems:
            raise ValueError(f"template is malformed: {'; '.join(self.problems)}")
        pieces = [_escape(self.literals[0])]
        for name, literal in zip(self.names, self.literals[1:], strict=True):
            if name not in position:
                raise ValueError(f"placeholder {{{name}}} names no variable")
            pieces.append(f"{{{position[name]}}}")
            pieces.append(_escape(literal))
        return "".join(pieces)


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


def _escape(literal: str) -> str:
    return literal.replace("{", "{{").replace("}", "}}")


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


@dataclasses.dataclass(frozen=True, slots=True)
class SubtaskPlan:
    """One subtask as the expansion decides it, before it gets an id.

    `index` is its position in the task, `combination_index` its combination's position in
    coverage-first order, and `repeat` which image of that combination it is (from 0).
    """

    index: int
    variable_values: dict[str, str]
    prompt: str
    negative_prompt: str
    seed: int
    width: int
    height: int
    ratio: str
    combination_index: int
    repeat: int


_Combination = tuple[dict[str, str], str, str]
"""One combination's variable values, prompt and negative prompt."""


def expand(spec: task_spec.TaskSpec, seed_source: random.Random | None = None) -> list[SubtaskPlan]:
    """The subtasks of a validated task, in index order.

    Seeds are base + index (wrapped to stay within 0..MAX_SEED) with a fixed base, or else
    drawn from `seed_source` (default: the OS generator), so a seeded `random.Random`
    reproduces them. Raises ValueError on a spec that `validation.validate` would refuse.
    """
    combinations = _combinations(spec)
    total = len(combinations) * spec.images
    seeds = _seeds(spec.seed, total, seed_source)
    ratio = spec.effective_ratio
    width, height = ratios.size_for(ratio)
    plans: list[SubtaskPlan] = []
    index = 0
    for repeat in range(spec.images):
        for combination_index, (values, prompt, negative_prompt) in enumerate(combinations):
            plans.append(
                SubtaskPlan(
                    index=index,
                    # A copy per plan, so changing one plan's values cannot change another's.
                    variable_values=dict(values),
                    prompt=prompt,
                    negative_prompt=negative_prompt,
                    seed=seeds[index],
                    width=width,
                    height=height,
                    ratio=ratio,
                    combination_index=combination_index,
                    repeat=repeat,
                )
            )
            index += 1
    return plans


def _combinations(spec: task_spec.TaskSpec) -> list[_Combination]:
    """Each combination's values and rendered prompts, once, in coverage-first order."""
    task_axes = axes(spec)
    axis_of = {name: a for a, axis in enumerate(task_axes) for name in axis}
    if undeclared := axis_of.keys() - spec.variables.keys():
        raise ValueError(f"zip groups name undeclared variables {sorted(undeclared)}")
    lengths = [len(spec.variables[axis[0]]) for axis in task_axes]
    for axis, length in zip(task_axes, lengths, strict=True):
        if any(len(spec.variables[name]) != length for name in axis):
            raise ValueError(f"zipped variables {list(axis)} have unequal lengths")
    names = tuple(spec.variables)
    position = {name: i for i, name in enumerate(names)}
    prompt_format = parse_template(spec.prompt_template).format_string(position)
    negative_format = parse_template(spec.negative_prompt).format_string(position)
    columns = [spec.variables[name] for name in names]
    # A combination holds one index per axis. Without zip groups the axes are the variables
    # in order; with them, each variable reads the index of its group's axis.
    spread = operator.itemgetter(*(axis_of[name] for name in names))
    zipped = len(task_axes) < len(names)
    found: list[_Combination] = []
    for combination in coverage_order(lengths):
        indexes = spread(combination) if zipped else combination
        flat = tuple(map(operator.getitem, columns, indexes))
        found.append(
            (
                dict(zip(names, flat, strict=True)),
                prompt_format.format(*flat),
                negative_format.format(*flat),
            )
        )
    return found


def _seeds(base: int | None, count: int, source: random.Random | None) -> list[int]:
    if base is not None:
        modulus = task_spec.MAX_SEED + 1
        return [(base + i) % modulus for i in range(count)]
    source = source or random.SystemRandom()
    if count == 0:
        return []
    # One draw of 32 bits per seed, cut into words: with the OS generator that is one
    # system call rather than one per subtask. Dropping the top bit of each word keeps
    # the seeds uniform over 0..MAX_RANDOM_SEED.
    raw = source.getrandbits(32 * count).to_bytes(4 * count, "little")
    return [word & task_spec.MAX_RANDOM_SEED for word in struct.unpack(f"<{count}I", raw)]
