"""Users, refresh tokens, API keys and login throttle counters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "auth"
UUID = postgresql.UUID(as_uuid=True)
TZ = sa.DateTime(timezone=True)
ROLES = "role IN ('user', 'admin')"


def upgrade() -> None:
    """Creates the tables and the indexes their queries use."""
    op.create_table(
        "users",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("create_time", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("update_time", TZ, nullable=False, server_default=sa.func.now()),
        # The service normalises emails; the check makes sure nothing else slips past.
        sa.CheckConstraint("email = lower(btrim(email))", name="ck_users_email_normalised"),
        sa.CheckConstraint(ROLES, name="ck_users_role"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        schema=SCHEMA,
    )
    # ListUsers: newest first, keyset paging on (create_time, id).
    op.create_index(
        "ix_users_create_time_id", "users", [sa.text("create_time DESC"), sa.text("id DESC")],
        schema=SCHEMA,
    )  # fmt: skip

    op.create_table(
        "refresh_tokens",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("family_id", UUID, nullable=False),
        sa.Column(
            "user_id",
            UUID,
            sa.ForeignKey(f"{SCHEMA}.users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("token_hash", sa.LargeBinary, nullable=False),
        sa.Column("create_time", TZ, nullable=False),
        sa.Column("expire_time", TZ, nullable=False),
        sa.Column("spent_time", TZ),
        sa.Column("revoke_time", TZ),
        sa.UniqueConstraint("token_hash", name="uq_refresh_tokens_token_hash"),
        schema=SCHEMA,
    )
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"], schema=SCHEMA)
    op.create_index(
        "ix_refresh_tokens_user_id_live", "refresh_tokens", ["user_id"], schema=SCHEMA,
        postgresql_where=sa.text("revoke_time IS NULL"),
    )  # fmt: skip
    op.create_index(
        "ix_refresh_tokens_expire_time", "refresh_tokens", ["expire_time"], schema=SCHEMA
    )

    op.create_table(
        "api_keys",
        sa.Column("id", UUID, primary_key=True),
        sa.Column(
            "user_id",
            UUID,
            sa.ForeignKey(f"{SCHEMA}.users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.LargeBinary, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("created_by", UUID, sa.ForeignKey(f"{SCHEMA}.users.id", ondelete="SET NULL")),
        sa.Column("create_time", TZ, nullable=False),
        sa.Column("expire_time", TZ),
        sa.Column("revoke_time", TZ),
        sa.Column("last_used_time", TZ),
        sa.CheckConstraint(ROLES, name="ck_api_keys_role"),
        sa.UniqueConstraint("secret_hash", name="uq_api_keys_secret_hash"),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
        schema=SCHEMA,
    )
    # ListApiKeys: everyone's (admin) or one user's, newest first.
    op.create_index(
        "ix_api_keys_create_time_id", "api_keys", [sa.text("create_time DESC"), sa.text("id DESC")],
        schema=SCHEMA,
    )  # fmt: skip
    op.create_index(
        "ix_api_keys_user_id_create_time_id", "api_keys",
        ["user_id", sa.text("create_time DESC"), sa.text("id DESC")], schema=SCHEMA,
    )  # fmt: skip

    op.create_table(
        "login_throttle",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("window_start", TZ, nullable=False),
        sa.Column("locked_until", TZ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_login_throttle_window_start", "login_throttle", ["window_start"], schema=SCHEMA
    )


def downgrade() -> None:
    """Drops the tables (and with them every account)."""
    for table in ("login_throttle", "api_keys", "refresh_tokens", "users"):
        op.drop_table(table, schema=SCHEMA)
