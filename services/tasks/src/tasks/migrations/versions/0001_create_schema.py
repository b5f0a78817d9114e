"""Create the tasks schema (the environment creates it; this anchors the history).

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing beyond the schema itself, which env.py creates."""


def downgrade() -> None:
    """Nothing to undo; the schema is kept."""
