"""Variable filters: the `variable_filters` of a request, checked, as the slice of a task
they select (the subtasks whose variables have all the given values). Pure, no I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from kiln.common import errors
from tasks import model, validation

FIELD = "variable_filters"


@dataclasses.dataclass(frozen=True)
class Slice:
    """The filters as {variable: value}, ANDed; empty means the whole task. `positions`
    keeps where each variable was first named in the request, for error paths."""

    values: dict[str, str] = dataclasses.field(default_factory=dict)
    positions: dict[str, int] = dataclasses.field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.values)

    def describe(self) -> str:
        """The slice as people write it: `style=anime AND ratio=16:9`."""
        return " AND ".join(f"{k}={v}" for k, v in self.values.items())

    def check(self, task: model.Task) -> None:
        """INVALID_ARGUMENT unless every filter names a variable of `task` and one of its
        values: a typo would otherwise select nothing and a control would silently do
        nothing."""
        violations: list[errors.FieldViolation] = []
        for name, value in self.values.items():
            at = f"{FIELD}[{self.positions[name]}]"
            if name not in task.variables:
                known = ", ".join(sorted(task.variables)) or "none"
                violations.append(
                    errors.FieldViolation(
                        f"{at}.name",
                        f"{errors.echo(name)} is not a variable of the task (it has: {known})",
                    )
                )
            elif value not in task.variables[name]:
                violations.append(
                    errors.FieldViolation(
                        f"{at}.value",
                        f"{errors.echo(value)} is not a value of variable {errors.echo(name)}",
                    )
                )
        if violations:
            raise errors.InvalidArgument(violations)


def parse(items: Iterable[Any]) -> Slice:
    """The slice of repeated VariableFilter messages; INVALID_ARGUMENT naming
    `variable_filters[i].name` / `.value` for an empty name, a NUL character, or a variable
    filtered twice with different values."""
    values: dict[str, str] = {}
    positions: dict[str, int] = {}
    violations: list[errors.FieldViolation] = []
    for i, item in enumerate(items):
        violations += [
            errors.FieldViolation(f"{FIELD}[{i}].{part}", validation.NUL_PROBLEM)
            for part, text in (("name", item.name), ("value", item.value))
            if "\x00" in text  # PostgreSQL text cannot hold it: not a value to look for
        ]
        if not item.name:
            violations.append(errors.FieldViolation(f"{FIELD}[{i}].name", "must not be empty"))
        elif item.name in values and values[item.name] != item.value:
            violations.append(
                errors.FieldViolation(
                    f"{FIELD}[{i}]", f"{errors.echo(item.name)} is filtered twice"
                )
            )
        values.setdefault(item.name, item.value)
        positions.setdefault(item.name, i)
    if violations:
        raise errors.InvalidArgument(violations)
    return Slice(values, positions)
