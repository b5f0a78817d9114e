"""Alembic environment of the auth service: its own schema and version table."""

from kiln.common import migrations

migrations.run_migrations()
