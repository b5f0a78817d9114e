"""The README's environment-variable table, made from the services' config classes.

`python scripts/config_table.py` prints it as Markdown; `--write README.md` replaces the
table between the README's markers. A test checks README.md lists every variable, so the
table cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from auth.config import AuthConfig
from imagegen.config import ImagegenConfig
from kiln.common import config
from tasks.config import TasksConfig

CONFIGS = {"auth": AuthConfig, "tasks": TasksConfig, "imagegen": ImagegenConfig}
START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def rows() -> dict[str, tuple[str, str, list[str]]]:
    """variable -> (default, meaning, services that read it)."""
    defaults: dict[str, dict[str, str]] = {}
    meanings: dict[str, str] = {}
    for service, cls in CONFIGS.items():
        for variable, default, meaning in config.describe(cls):
            defaults.setdefault(variable, {})[service] = default
            meanings[variable] = meaning
    table: dict[str, tuple[str, str, list[str]]] = {}
    for variable, by_service in defaults.items():
        values = set(by_service.values())
        shown = (
            values.pop()
            if len(values) == 1
            else ", ".join(f"{d} ({s})" for s, d in by_service.items())
        )
        table[variable] = (shown, meanings[variable], list(by_service))
    return table


def markdown() -> str:
    """The table as Markdown."""
    lines = ["| variable | services | default | meaning |", "|---|---|---|---|"]
    for variable, (default, meaning, services) in sorted(rows().items()):
        lines.append(f"| `{variable}` | {', '.join(services)} | `{default}` | {meaning} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Prints the table, or with `--write FILE` replaces it between the markers in FILE."""
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        path = Path(sys.argv[2])
        head, rest = path.read_text().split(START, 1)
        _old, tail = rest.split(END, 1)
        path.write_text(f"{head}{START}\n{markdown()}{END}{tail}")
    else:
        print(markdown(), end="")


if __name__ == "__main__":
    main()
