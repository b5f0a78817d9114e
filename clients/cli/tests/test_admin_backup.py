"""`kiln-admin backup` and `restore` round-trip the Kiln schemas on a real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from kiln.cli import admin
from kiln.common.testing.postgres_server import to_libpq_url


def _seed(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        for schema in ("auth", "tasks", "other"):
            connection.execute(f"CREATE SCHEMA {schema}")
            connection.execute(f"CREATE TABLE {schema}.things (id int PRIMARY KEY, name text)")
            connection.execute(f"INSERT INTO {schema}.things VALUES (1, '{schema}-one'), (2, 'b')")


def _rows(url: str, schema: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as connection:
        return list(connection.execute(f"SELECT id, name FROM {schema}.things ORDER BY id"))


def test_backup_and_restore_round_trip(database_url: str, tmp_path: Path) -> None:
    """A backup holds the auth and tasks schemas (nothing else); restoring it after the data
    changed brings the rows back exactly."""
    url = to_libpq_url(database_url)
    _seed(url)
    dump = admin.backup(url, tmp_path)
    assert dump.name.startswith("kiln-") and dump.suffix == ".dump"
    assert not list(tmp_path.glob("*.partial"))

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DELETE FROM auth.things WHERE id = 1")
        connection.execute("UPDATE tasks.things SET name = 'changed'")
        connection.execute("UPDATE other.things SET name = 'kept'")
    admin.restore(url, dump, clean=True)

    assert _rows(url, "auth") == [(1, "auth-one"), (2, "b")]
    assert _rows(url, "tasks") == [(1, "tasks-one"), (2, "b")]
    assert _rows(url, "other") == [(1, "kept"), (2, "kept")]  # not part of the backup


def test_cli_reports_errors_in_one_line(tmp_path: Path) -> None:
    """A bad database URL or a missing file gives one error line and exit code 1."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kiln.cli.admin",
            "--database-url",
            "postgresql://nobody@127.0.0.1:1/none",
            "restore",
            str(tmp_path / "missing.dump"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("kiln-admin: error: no such dump file")
    assert "Traceback" not in result.stderr


def test_backup_of_unreachable_database_fails_cleanly(tmp_path: Path) -> None:
    """pg_dump failing is reported without a traceback and leaves no dump behind."""
    with pytest.raises(admin.AdminError, match="pg_dump failed"):
        admin.backup("postgresql://nobody@127.0.0.1:1/none", tmp_path)
    assert not list(tmp_path.iterdir())
