"""Per-task scheduling state: paused tasks, and when a task last had a job dispatched
(the start of its wait, for priority aging).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "tasks"


def upgrade() -> None:
    """Adds the columns; existing tasks are not paused and count their wait from creation."""
    paused = sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false())
    op.add_column("tasks", paused, schema=S)
    op.add_column(
        "tasks", sa.Column("dispatch_time", sa.DateTime(timezone=True), nullable=True), schema=S
    )


def downgrade() -> None:
    """Drops the columns."""
    op.drop_column("tasks", "dispatch_time", schema=S)
    op.drop_column("tasks", "paused", schema=S)
