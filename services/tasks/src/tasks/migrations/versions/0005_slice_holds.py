"""Paused slices: a subtask held by PauseTask with variable filters, and its outbox rows
marked the same so the dispatcher's scan skips them without joining the subtasks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "tasks"


def upgrade() -> None:
    """Adds the columns; nothing existing is held."""
    for table in ("subtasks", "outbox"):
        held = sa.Column("held", sa.Boolean, nullable=False, server_default=sa.false())
        op.add_column(table, held, schema=S)


def downgrade() -> None:
    """Drops the columns."""
    for table in ("outbox", "subtasks"):
        op.drop_column(table, "held", schema=S)
