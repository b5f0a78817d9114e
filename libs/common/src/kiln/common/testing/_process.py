"""Process plumbing shared by the NATS and PostgreSQL test servers.

`LocalServer` is the lifecycle both test servers share; `ExternalServer` stands in for a
server the environment provides. Each server runs in its own session, so its process group
id is its pid: a kill or a pause then reaches the postmaster and every backend at once, and
nothing leaks into the pytest process group. Every live server is also recorded here, so an
`atexit` hook can close what a crashed fixture left behind.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, NoReturn, Self


class HarnessError(Exception):
    """Base of the errors raised by `kiln.common.testing`."""


class ServerStartError(HarnessError):
    """A server process did not become ready; the message ends with the tail of its log."""

    def __init__(self, name: str, reason: str, log_path: Path | None = None) -> None:
        self.name = name
        self.reason = reason
        self.log_path = log_path
        tail = log_tail(log_path) if log_path is not None else ""
        super().__init__(f"{name}: {reason}" + (f"\n--- {log_path} ---\n{tail}" if tail else ""))


class ServerStateError(HarnessError):
    """The operation does not fit the server's state (for example pausing a stopped server)."""


class ExternalServerError(HarnessError):
    """Fault injection was asked of a server this harness did not start (NATS_URL/DATABASE_URL)."""

    def __init__(self, name: str, operation: str) -> None:
        self.name = name
        self.operation = operation
        super().__init__(
            f"cannot {operation} the external {name}: it was given by the environment; "
            "use a private_* fixture or skip_if_external() for fault-injection tests"
        )


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file, or "" when it does not exist yet."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def proc_stats(pattern: str) -> list[tuple[Path, list[str]]]:
    """The fields after the command name of every /proc `stat` file matching `pattern`
    (state, parent pid, process group...), with the file; Linux only."""
    found = []
    for stat_file in Path("/proc").glob(pattern):
        try:
            stat = stat_file.read_text()
        except OSError:
            continue  # the process or thread ended while we looked
        # The command name may contain spaces and parentheses: split after the last ')'.
        found.append((stat_file, stat[stat.rfind(")") + 2 :].split()))
    return found


def _group_task_states(pgid: int) -> list[str]:
    """The scheduler state letter of every thread in process group `pgid` (Linux /proc)."""
    return [
        fields[0]
        for _, fields in proc_stats("[0-9]*/task/[0-9]*/stat")
        if len(fields) > 2 and int(fields[2]) == pgid
    ]


def group_alive(pgid: int) -> bool:
    """Whether any thread that is not a zombie is left in process group `pgid`.

    Zombies are ignored on purpose: a killed postmaster's orphans are re-parented to PID 1,
    which in some containers never reaps them, yet they hold no port or shared memory.
    """
    return any(state not in "ZX" for state in _group_task_states(pgid))


def _wait_for_group(pgid: int, frozen: bool, timeout: float = 5.0) -> None:
    """Wait until every live thread of the group is stopped (`frozen`) or none is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stopped = [state == "T" for state in _group_task_states(pgid) if state not in "ZX"]
        if all(stopped) if frozen else not any(stopped):
            return
        time.sleep(0.005)


class ManagedProcess:
    """One server process started in a new session, with stdout and stderr in a log file."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        user: int | None = None,
        group: int | None = None,
    ) -> None:
        self._log_path = log_path
        # Restarts append to the same log; remember where this run's output begins.
        self._log_offset = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                start_new_session=True,
                user=user,
                group=group,
                # Drop root's supplementary groups together with the uid switch.
                extra_groups=[] if user is not None else None,
            )
        self.paused = False

    @property
    def pid(self) -> int:
        """The leader's pid, which is also the process group id."""
        return self._popen.pid

    def output(self) -> str:
        """What this run (not earlier runs sharing the log file) has logged so far."""
        with self._log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")

    def exited(self) -> bool:
        """Whether the leader has exited (reaping it if so)."""
        return self._popen.poll() is not None

    def signal_group(self, sig: signal.Signals) -> None:
        """Send `sig` to every process of the group; a group already gone is not an error."""
        # The group id cannot be handed to a new process while the leader is unreaped or a
        # member lives; once both are gone it can, so we must not signal it blindly.
        if self._popen.returncode is not None and not group_alive(self.pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def pause(self) -> None:
        """Freeze the whole group with SIGSTOP, as if the host had hung."""
        self.signal_group(signal.SIGSTOP)
        # kill() returns before the signal lands: a thread busy on another CPU could still
        # answer a request sent right after pause() unless we wait for every thread to stop.
        _wait_for_group(self.pid, frozen=True)
        self.paused = True

    def resume(self) -> None:
        """Thaw the group with SIGCONT."""
        self.signal_group(signal.SIGCONT)
        _wait_for_group(self.pid, frozen=False)
        self.paused = False

    def stop(self, sig: signal.Signals, timeout: float) -> None:
        """Ask the leader to shut down with `sig`; kill the group if it takes over `timeout`."""
        if not self.exited():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            if self.paused:
                # A stopped process only acts on the signal once it runs again.
                self.resume()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout)
        self.kill()

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the whole group and wait until none of it is left running."""
        self.signal_group(signal.SIGKILL)
        self.paused = False
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout)
        deadline = time.monotonic() + timeout
        while group_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.02)


_live: dict[int, LocalServer] = {}


@atexit.register
def _close_leftovers() -> None:
    for server in list(_live.values()):
        # Keep going: one broken server must not leave the others running.
        with contextlib.suppress(Exception):
            server.close()


class LocalServer(abc.ABC):
    """Lifecycle shared by the test servers: start, stop, kill -9, pause, restart, close.

    A subclass says how to launch its process, how to probe readiness and which ports it
    needs. Restarts reuse the ports and the data directory, so clients reconnect to the
    same address and find their data again.
    """

    name: ClassVar[str]
    shutdown_signal: ClassVar[signal.Signals] = signal.SIGTERM
    is_external: ClassVar[bool] = False

    def __init__(
        self,
        *,
        directory: Path,
        host: str,
        startup_timeout: float,
        bind_retry: float,
        keep_directory: bool = False,
    ) -> None:
        self.directory = directory
        # A directory the caller owns (the local stack's data) outlives close().
        self.keep_directory = keep_directory
        self.host = host
        self.startup_timeout = startup_timeout
        self.bind_retry = bind_retry
        self.log_path = directory / f"{self.name}.log"
        self._process: ManagedProcess | None = None
        self._ever_started = False
        self._closed = False

    @abc.abstractmethod
    def _launch(self) -> ManagedProcess:
        """Start the server process (it must not be running)."""

    @abc.abstractmethod
    def _ready(self) -> bool:
        """One quick readiness probe."""

    @abc.abstractmethod
    def _pick_ports(self) -> None:
        """Choose fresh ports; only called before the first successful start."""

    def _recover(self, output: str) -> bool:
        """Repair what made a start fail, given that run's log; True to try again."""
        del output
        return False

    @property
    def pid(self) -> int | None:
        """The server's pid while its process exists."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may be paused)."""
        return self._process is not None and not self._process.exited()

    @property
    def paused(self) -> bool:
        """Whether pause() froze the server."""
        return self._process is not None and self._process.paused

    def start(self) -> Self:
        """Start the server and block until it serves requests."""
        if self._closed:
            raise ServerStateError(f"{self.name} is closed")
        if self.running:
            raise ServerStateError(f"{self.name} is already running")
        retry_until = time.monotonic() + self.bind_retry
        while True:
            process = self._launch()
            self._process = process
            _live[id(self)] = self
            if self._await_ready(process):
                self._ever_started = True
                return self
            output = process.output()
            process.kill()
            if time.monotonic() < retry_until and self._retryable(output):
                time.sleep(0.1)
                continue
            raise ServerStartError(self.name, "exited during startup", self.log_path)

    def _await_ready(self, process: ManagedProcess) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while not process.exited():
            if self._ready():
                return True
            if time.monotonic() >= deadline:
                process.kill()
                raise ServerStartError(
                    self.name, f"not ready after {self.startup_timeout}s", self.log_path
                )
            time.sleep(0.02)
        return False

    def _retryable(self, output: str) -> bool:
        if "address already in use" in output.lower():
            # After a kill -9 the old socket may linger; a restart must keep its port, while
            # a first start that lost a race for its port may simply take another one.
            if not self._ever_started:
                self._pick_ports()
            return True
        return self._recover(output)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly (SIGKILL after `timeout` seconds). No-op when not running."""
        if self._process is not None:
            self._process.stop(self.shutdown_signal, timeout)

    def kill(self) -> None:
        """kill -9 the server and all its children, as a crash would."""
        if self._process is not None:
            self._process.kill()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing is answered."""
        self._require_running("pause").pause()

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        self._require_running("resume").resume()

    def restart(self) -> Self:
        """Start again on the same ports with the same data, stopping cleanly first if needed."""
        self.stop()
        return self.start()

    def ensure_running(self) -> None:
        """Undo a pause, stop or kill left behind by an earlier test."""
        if self.paused:
            self.resume()
        if not self.running:
            self.start()

    def close(self) -> None:
        """Stop the server and delete its directory. Safe to call more than once."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            _live.pop(id(self), None)
            if not self.keep_directory:
                shutil.rmtree(self.directory, ignore_errors=True)

    def _require_running(self, operation: str) -> ManagedProcess:
        if self._process is None or self._process.exited():
            raise ServerStateError(f"cannot {operation} {self.name}: it is not running")
        return self._process

    def __enter__(self) -> Self:
        try:
            return self if self.running else self.start()
        except BaseException:
            self.close()  # __exit__ will not run: do not leave the temp folder behind
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ExternalServer:
    """A server the environment provides: tests may use it, but not stop, kill or pause it."""

    name: ClassVar[str]
    is_external: ClassVar[bool] = True

    def __init__(self, url: str) -> None:
        self.url = url

    def ensure_running(self) -> None:
        """Nothing to do: keeping an external server up is the environment's job."""

    def close(self) -> None:
        """Nothing to do: an external server outlives the test session."""

    def stop(self, timeout: float = 10.0) -> NoReturn:
        """Refused: the server is external."""
        raise ExternalServerError(self.name, "stop")

    def kill(self) -> NoReturn:
        """Refused: the server is external."""
        raise ExternalServerError(self.name, "kill")

    def pause(self) -> NoReturn:
        """Refused: the server is external."""
        raise ExternalServerError(self.name, "pause")

    def resume(self) -> NoReturn:
        """Refused: the server is external."""
        raise ExternalServerError(self.name, "resume")

    def restart(self) -> NoReturn:
        """Refused: the server is external."""
        raise ExternalServerError(self.name, "restart")

    def __repr__(self) -> str:
        # Credentials in the URL stay out of test reports.
        parts = urllib.parse.urlsplit(self.url)
        return f"{type(self).__name__}({parts.scheme}://{parts.hostname}:{parts.port}{parts.path})"
