"""Prints the README's environment-variable table from the services' config classes.

`python scripts/config_table.py` writes Markdown; a test checks README.md lists every
variable, so the table cannot drift from the code.
"""

from __future__ import annotations

from auth.config import AuthConfig
from imagegen.config import ImagegenConfig
from kiln.common import config
from tasks.config import TasksConfig

CONFIGS = {"auth": AuthConfig, "tasks": TasksConfig, "imagegen": ImagegenConfig}


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


def main() -> None:
    print("| variable | services | default | meaning |")
    print("|---|---|---|---|")
    for variable, (default, meaning, services) in sorted(rows().items()):
        print(f"| `{variable}` | {', '.join(services)} | `{default}` | {meaning} |")


if __name__ == "__main__":
    main()
