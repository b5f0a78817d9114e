"""The kiln-backup and kiln-restore CronJobs' scripts (deploy/k8s/base/scripts, the bytes the
ConfigMap kiln-backup-scripts is generated from) against a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg

from kiln.cli import admin
from kiln.common.testing.postgres_server import to_libpq_url

SCRIPTS = Path(__file__).resolve().parent.parent / "deploy" / "k8s" / "base" / "scripts"


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Runs a script with /bin/sh, as the CronJob does, with the newest pg tools on PATH."""
    bindir = admin.find_tool("pg_dump").parent
    return subprocess.run(
        ["/bin/sh", str(SCRIPTS / script)],
        env={"PATH": f"{bindir}:{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _seed(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        for schema in ("auth", "tasks"):
            connection.execute(f"CREATE SCHEMA {schema}")
            connection.execute(f"CREATE TABLE {schema}.things (id int PRIMARY KEY, name text)")
            connection.execute(f"INSERT INTO {schema}.things VALUES (1, '{schema}-one'), (2, 'b')")


def _rows(url: str, schema: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as connection:
        return list(connection.execute(f"SELECT id, name FROM {schema}.things ORDER BY id"))


def test_backup_script_output_restores_with_the_restore_script(
    database_url: str, tmp_path: Path
) -> None:
    """backup.sh accepts the services' `postgresql+psycopg://` URL, writes a complete
    kiln-<stamp>.dump and records it as `latest`; after rows are deleted and changed,
    restore.sh (BACKUP_FILE unset, so `latest`) brings every row back."""
    url = to_libpq_url(database_url)
    _seed(url)
    sqlalchemy_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    env = {"DATABASE_URL": sqlalchemy_url, "BACKUP_DIR": str(tmp_path)}

    backup = _run("backup.sh", env)
    assert backup.returncode == 0, backup.stderr
    dumps = sorted(tmp_path.glob("kiln-*.dump"))
    assert len(dumps) == 1
    assert not list(tmp_path.glob("*.partial"))
    assert (tmp_path / "latest").read_text().strip() == dumps[0].name
    assert backup.stdout.strip().endswith(str(dumps[0]))

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DELETE FROM auth.things WHERE id = 1")
        connection.execute("UPDATE tasks.things SET name = 'changed'")
        connection.execute("CREATE TABLE tasks.extra (id int)")
    restore = _run("restore.sh", env)
    assert restore.returncode == 0, restore.stderr
    assert f"restore complete: {dumps[0]}" in restore.stdout

    assert _rows(url, "auth") == [(1, "auth-one"), (2, "b")]
    assert _rows(url, "tasks") == [(1, "tasks-one"), (2, "b")]


def test_failed_backup_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    """When pg_dump fails (no server), backup.sh exits non-zero and leaves no dump, no
    .partial file and no `latest` record; restore.sh then refuses with a clear message."""
    env = {
        "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "BACKUP_DIR": str(tmp_path),
    }
    backup = _run("backup.sh", env)
    assert backup.returncode != 0
    assert list(tmp_path.iterdir()) == []
    restore = _run("restore.sh", env)
    assert restore.returncode != 0
    assert "give BACKUP_FILE" in restore.stderr


def test_offsite_copy_is_off_without_a_bucket(tmp_path: Path) -> None:
    """offsite.sh without BACKUP_S3_URI (no kiln-backup-s3 Secret) succeeds and says the
    off-cluster copy is off, so the backup Job still completes."""
    result = _run("offsite.sh", {"BACKUP_DIR": str(tmp_path)})
    assert result.returncode == 0
    assert "no off-cluster copy" in result.stdout


def test_restore_of_a_damaged_dump_changes_nothing(database_url: str, tmp_path: Path) -> None:
    """restore.sh given a truncated dump fails, says nothing was changed, and leaves the
    database exactly as it was (the drop and the load are one transaction)."""
    url = to_libpq_url(database_url)
    _seed(url)
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(tmp_path)}
    assert _run("backup.sh", env).returncode == 0
    dump = next(tmp_path.glob("kiln-*.dump"))
    (tmp_path / "kiln-damaged.dump").write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("UPDATE tasks.things SET name = 'after the backup'")

    restore = _run("restore.sh", {**env, "BACKUP_FILE": "kiln-damaged.dump"})
    assert restore.returncode != 0
    assert "nothing was changed" in restore.stderr
    assert _rows(url, "tasks") == [(1, "after the backup"), (2, "after the backup")]
    assert _rows(url, "auth") == [(1, "auth-one"), (2, "b")]


FAKE_AWS = """#!/bin/sh
# Stands in for the AWS CLI: `aws s3 cp [--only-show-errors] SRC DST`, s3://B/K -> $FAKE_S3/B/K.
[ "$1 $2" = "s3 cp" ] || exit 64
shift 2
[ "$1" = "--only-show-errors" ] && shift
map() { case "$1" in s3://*) echo "$FAKE_S3/${1#s3://}";; *) echo "$1";; esac; }
src=$(map "$1"); dst=$(map "$2")
mkdir -p "$(dirname "$dst")" && cp "$src" "$dst"
"""


def test_offsite_copy_puts_the_latest_dump_and_gets_it_back(tmp_path: Path) -> None:
    """With BACKUP_S3_URI set, `offsite.sh put` copies the dump BACKUP_DIR/latest names to
    the bucket under its own name, and `offsite.sh get` fetches a named dump that is not on
    the volume (the AWS CLI is replaced by a stand-in that maps s3:// to a folder)."""
    bin_dir, volume, bucket = tmp_path / "bin", tmp_path / "volume", tmp_path / "s3"
    bin_dir.mkdir()
    volume.mkdir()
    (bin_dir / "aws").write_text(FAKE_AWS)
    (bin_dir / "aws").chmod(0o755)
    (volume / "kiln-20260101T030000Z.dump").write_bytes(b"dump bytes")
    (volume / "latest").write_text("kiln-20260101T030000Z.dump\n")
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_S3": str(bucket),
        "BACKUP_DIR": str(volume),
        "BACKUP_S3_URI": "s3://kiln-backups/prod/",
    }
    put = subprocess.run(
        ["/bin/sh", str(SCRIPTS / "offsite.sh"), "put"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert put.returncode == 0, put.stderr
    copied = bucket / "kiln-backups" / "prod" / "kiln-20260101T030000Z.dump"
    assert copied.read_bytes() == b"dump bytes"

    (volume / "kiln-20260101T030000Z.dump").unlink()
    get = subprocess.run(
        ["/bin/sh", str(SCRIPTS / "offsite.sh"), "get"],
        env={**env, "BACKUP_FILE": "kiln-20260101T030000Z.dump"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert get.returncode == 0, get.stderr
    assert (volume / "kiln-20260101T030000Z.dump").read_bytes() == b"dump bytes"
