"""The README documents what the code does: every environment variable is in its table."""

from __future__ import annotations

from pathlib import Path

import config_table  # scripts/config_table.py

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_lists_every_variable() -> None:
    """Each variable any service reads appears in the README's configuration table."""
    text = README.read_text()
    missing = [v for v in config_table.rows() if f"`{v}`" not in text]
    assert not missing, f"add these to README.md (python scripts/config_table.py): {missing}"


def test_readme_shows_the_two_setup_commands() -> None:
    """The set-up section shows `make run` and `make test`."""
    text = README.read_text()
    assert "make run" in text
    assert "make test" in text
