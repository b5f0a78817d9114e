"""The `auth` schema's tables, for queries (migrations declare them on their own)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

SCHEMA = "auth"
metadata = sa.MetaData(schema=SCHEMA)

_tz = sa.DateTime(timezone=True)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("create_time", _tz, nullable=False),
    sa.Column("update_time", _tz, nullable=False),
    sa.Column("tokens_not_before", _tz),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("family_id", postgresql.UUID(as_uuid=True), nullable=False),
    sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
    sa.Column("token_hash", sa.LargeBinary, nullable=False),
    sa.Column("create_time", _tz, nullable=False),
    sa.Column("expire_time", _tz, nullable=False),
    sa.Column("spent_time", _tz),
    sa.Column("revoke_time", _tz),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("secret_hash", sa.LargeBinary, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("created_by", postgresql.UUID(as_uuid=True)),
    sa.Column("create_time", _tz, nullable=False),
    sa.Column("expire_time", _tz),
    sa.Column("revoke_time", _tz),
    sa.Column("last_used_time", _tz),
)

login_throttle = sa.Table(
    "login_throttle",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("window_start", _tz, nullable=False),
    sa.Column("locked_until", _tz),
)
