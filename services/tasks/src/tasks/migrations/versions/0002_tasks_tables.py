"""Tasks, subtasks, the outbox and webhook deliveries, with the indexes the queries use.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "tasks"
NOW = sa.text("now()")


def upgrade() -> None:
    """Creates the tables and indexes."""
    op.create_table(
        "tasks",
        sa.Column("id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("owner_id", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text, nullable=True),
        sa.Column("task_name", sa.Text, nullable=False),
        sa.Column("tags", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("prompt_template", sa.Text, nullable=False),
        sa.Column("variables", pg.JSONB, nullable=False),
        sa.Column("zip_groups", pg.JSONB, nullable=False),
        sa.Column("images_per_combination", sa.Integer, nullable=False),
        sa.Column("ratio", sa.Text, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=True),
        sa.Column("use_polish", sa.Boolean, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("negative_prompt", sa.Text, nullable=False),
        sa.Column("output_format", sa.Text, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("webhook_url", sa.Text, nullable=True),
        sa.Column("webhook_secret", sa.Text, nullable=True),
        sa.Column("webhook_events", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("total_images", sa.Integer, nullable=False),
        sa.Column("succeeded_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cancelled_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("running_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("is_deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finish_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        schema=S,
    )
    # Idempotent create: one task per (owner, request id).
    op.create_index(
        "tasks_owner_request_uq",
        "tasks",
        ["owner_id", "request_id"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )
    # ListTasks: newest first, keyset on (create_time, id), per owner or for everyone.
    op.create_index("tasks_owner_created_ix", "tasks", ["owner_id", "create_time", "id"], schema=S)
    op.create_index("tasks_created_ix", "tasks", ["create_time", "id"], schema=S)
    op.create_index("tasks_tags_ix", "tasks", ["tags"], schema=S, postgresql_using="gin")
    op.create_index(
        "tasks_active_ix",
        "tasks",
        ["owner_id"],
        schema=S,
        postgresql_where=sa.text("state IN ('pending', 'running')"),
    )

    op.create_table(
        "subtasks",
        sa.Column("id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("task_id", pg.UUID(as_uuid=False), nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("owner_id", sa.Text, nullable=False),
        sa.Column("variable_values", pg.JSONB, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("negative_prompt", sa.Text, nullable=False),
        sa.Column("polished_prompt", sa.Text, nullable=False, server_default=""),
        sa.Column("ratio", sa.Text, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("use_polish", sa.Boolean, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("output_format", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
        sa.Column("superseded", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("retried_from", pg.UUID(as_uuid=False), nullable=True),
        sa.Column("error_type", sa.Text, nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("object_name", sa.Text, nullable=True),
        sa.Column("thumbnail_object_name", sa.Text, nullable=True),
        sa.Column("content_type", sa.Text, nullable=True),
        sa.Column("result_width", sa.Integer, nullable=True),
        sa.Column("result_height", sa.Integer, nullable=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=True),
        sa.Column("sha256", sa.Text, nullable=True),
        sa.Column("model", sa.Text, nullable=True),
        sa.Column("render_ms", sa.Integer, nullable=True),
        sa.Column("worker_id", sa.Text, nullable=False, server_default=""),
        sa.Column("step", sa.Integer, nullable=False, server_default="0"),
        sa.Column("total_steps", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_delivery", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_sequence", sa.Integer, nullable=False, server_default="0"),
        sa.Column("changed_version", sa.BigInteger, nullable=False, server_default="1"),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("queue_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finish_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        schema=S,
    )
    # ListSubtasks in index order; one current subtask per index (retries supersede).
    op.create_index(
        "subtasks_task_idx_uq",
        "subtasks",
        ["task_id", "idx"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("NOT superseded"),
    )
    # WatchTask: the subtasks changed after a version.
    op.create_index(
        "subtasks_task_version_ix", "subtasks", ["task_id", "changed_version"], schema=S
    )
    # Dispatch window, queue positions, maintenance and the reconciler: live subtasks only.
    op.create_index(
        "subtasks_live_ix",
        "subtasks",
        ["queue", "state", "last_seen"],
        schema=S,
        postgresql_where=sa.text("state IN ('pending', 'queued', 'running')"),
    )
    # ETA: recent render times per queue; throughput stats.
    op.create_index(
        "subtasks_finished_ix",
        "subtasks",
        ["finish_time"],
        schema=S,
        postgresql_where=sa.text("state = 'succeeded'"),
    )
    op.create_index(
        "subtasks_values_ix",
        "subtasks",
        ["variable_values"],
        schema=S,
        postgresql_using="gin",
        postgresql_ops={"variable_values": "jsonb_path_ops"},
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("subtask_id", pg.UUID(as_uuid=False), nullable=False),
        sa.Column("task_id", pg.UUID(as_uuid=False), nullable=False),
        sa.Column("owner_id", sa.Text, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("sent_time", sa.DateTime(timezone=True), nullable=True),
        schema=S,
    )
    # The dispatcher's scan: unsent rows of one queue by priority, then age.
    op.create_index(
        "outbox_unsent_ix",
        "outbox",
        ["queue", "priority", "id"],
        schema=S,
        postgresql_where=sa.text("sent_time IS NULL"),
    )
    op.create_index("outbox_task_ix", "outbox", ["task_id"], schema=S)
    op.create_index(
        "outbox_sent_ix",
        "outbox",
        ["sent_time"],
        schema=S,
        postgresql_where=sa.text("sent_time IS NOT NULL"),
    )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("task_id", pg.UUID(as_uuid=False), nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_time", sa.DateTime(timezone=True), server_default=NOW),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        schema=S,
    )
    op.create_index(
        "webhook_due_ix",
        "webhook_deliveries",
        ["next_attempt_time"],
        schema=S,
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index("webhook_task_ix", "webhook_deliveries", ["task_id"], schema=S)
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("delivery_id", pg.UUID(as_uuid=False), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        schema=S,
    )
    op.create_index("webhook_attempts_delivery_ix", "webhook_attempts", ["delivery_id"], schema=S)


def downgrade() -> None:
    """Drops the tables."""
    for table in ("webhook_attempts", "webhook_deliveries", "outbox", "subtasks", "tasks"):
        op.drop_table(table, schema=S)
