"""Alembic environment of the tasks service: its own schema and version table."""

from kiln.common import migrations

migrations.run_migrations()
