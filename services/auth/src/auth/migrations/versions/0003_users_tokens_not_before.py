"""users.tokens_not_before: access tokens issued before it are refused by every service.

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

SCHEMA = "auth"


def upgrade() -> None:
    """Adds the column; NULL means no token is refused for its age."""
    op.add_column(
        "users", sa.Column("tokens_not_before", sa.DateTime(timezone=True)), schema=SCHEMA
    )


def downgrade() -> None:
    """Drops the column."""
    op.drop_column("users", "tokens_not_before", schema=SCHEMA)
