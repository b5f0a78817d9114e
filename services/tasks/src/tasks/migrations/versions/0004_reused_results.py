"""Reused results: the task options `reuse_results` and `share_results`, and on each subtask
the subtask whose stored image it was served with instead of a render.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "tasks"


def upgrade() -> None:
    """Adds the columns; existing tasks neither reuse nor share, no subtask was reused.

    `reused_from` is text, not uuid: it is what a worker reported, and a malformed value
    must not fail the fold of the batch that carries it.
    """
    for name in ("reuse_results", "share_results"):
        column = sa.Column(name, sa.Boolean, nullable=False, server_default=sa.false())
        op.add_column("tasks", column, schema=S)
    op.add_column("subtasks", sa.Column("reused_from", sa.Text, nullable=True), schema=S)


def downgrade() -> None:
    """Drops the columns."""
    op.drop_column("subtasks", "reused_from", schema=S)
    op.drop_column("tasks", "share_results", schema=S)
    op.drop_column("tasks", "reuse_results", schema=S)
