"""EmbeddedPostgres against the real bundled binaries: persistence, crashes, stale lock files."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import asyncpg
import pytest

from cariosan.ops.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError, bin_path


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A fresh dir under /tmp; servers left running in it are stopped afterwards.

    Not tmp_path: as root the server runs as nobody, and pytest chmods /tmp/pytest-of-root back
    to 0700 whenever another root pytest session starts, cutting nobody off mid-test.
    """
    path = Path(tempfile.mkdtemp(prefix="cariosan-test-epg-"))
    yield path
    for pid_file in path.rglob("postmaster.pid"):
        with contextlib.suppress(EmbeddedPostgresError):
            EmbeddedPostgres(pid_file.parent).stop()
    shutil.rmtree(path, ignore_errors=True)


async def _fetchval(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


def _alive(pid: int) -> bool:
    """Running: an exited orphan stays a zombie until PID 1 reaps it, which may be slow."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _wait_dead(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still alive"
        time.sleep(0.05)


async def test_data_survives_restart(workdir: Path) -> None:
    data = workdir / "data"
    first = EmbeddedPostgres(data)  # durable: the production-like settings
    with first:
        assert first.dsn == f"postgresql://postgres@127.0.0.1:{first.port}/postgres"
        conn = await asyncpg.connect(first.dsn)
        try:
            await conn.execute("create table notes (id int primary key, body text)")
            await conn.execute("insert into notes values (1, 'héllo')")
            assert await conn.fetchval("show server_encoding") == "UTF8"
        finally:
            await conn.close()
    assert not (data / "postmaster.pid").exists()
    assert (workdir / "postgres.log").stat().st_size > 0

    with EmbeddedPostgres(data) as second:
        assert await _fetchval(second.dsn, "select body from notes where id = 1") == "héllo"


async def test_fixed_port_and_non_durable_settings(workdir: Path) -> None:
    probe = EmbeddedPostgres(workdir / "probe")
    with pytest.raises(EmbeddedPostgresError, match="start"):
        _ = probe.port  # a free-picked port is only known after start()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with EmbeddedPostgres(workdir / "data", port=port, durable=False) as pg:
        assert pg.port == port
        assert await _fetchval(pg.dsn, "select current_setting('fsync')") == "off"
        assert await _fetchval(pg.dsn, "select current_setting('full_page_writes')") == "off"
        listen = await _fetchval(pg.dsn, "select current_setting('listen_addresses')")
        assert listen == "127.0.0.1"


def test_stop_is_idempotent(workdir: Path) -> None:
    pg = EmbeddedPostgres(workdir / "data", durable=False)
    pg.stop()  # never started, no data dir yet
    pg.start()
    pg.start()  # already running: no-op
    pid = _postmaster_pid(workdir / "data")
    pg.stop()
    pg.stop()
    assert not _alive(pid)


_STARTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cariosan.ops.embedded_pg import EmbeddedPostgres
    pg = EmbeddedPostgres(Path(sys.argv[1]), durable=False)
    pg.start()
    print(pg.port, flush=True)
    time.sleep(600)
    """
)


async def test_start_after_starting_process_was_killed(workdir: Path) -> None:
    data = workdir / "data"
    starter = subprocess.Popen(
        [sys.executable, "-c", _STARTER, str(data)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert starter.stdout is not None
        old_port = int(starter.stdout.readline())
        old_pid = _postmaster_pid(data)
        dsn = f"postgresql://postgres@127.0.0.1:{old_port}/postgres"
        await _fetchval(dsn, "create table kept as select 42 as answer")

        # While the process that started it lives, the server is not ours to take over.
        intruder = EmbeddedPostgres(data, durable=False)
        with pytest.raises(EmbeddedPostgresError, match="still running"):
            intruder.start(timeout=20)
        with pytest.raises(EmbeddedPostgresError, match="belongs to running process"):
            intruder.stop()
        assert _alive(old_pid)
    finally:
        starter.kill()  # SIGKILL: no cleanup runs; the postmaster lives on, orphaned
        starter.wait()
        if starter.stdout is not None:
            starter.stdout.close()
    assert _alive(old_pid)

    pg = EmbeddedPostgres(data, durable=False)
    pg.start(timeout=30)
    try:
        _wait_dead(old_pid)
        assert _postmaster_pid(data) != old_pid
        assert await _fetchval(pg.dsn, "select answer from kept") == 42
    finally:
        pg.stop()
    pg.stop()


async def test_start_after_postmaster_was_killed(workdir: Path) -> None:
    data = workdir / "data"
    # Durable: with synchronous_commit=off the last commits die with the server.
    pg = EmbeddedPostgres(data)
    pg.start()
    await _fetchval(pg.dsn, "create table t as select 1 as x")
    old_pid = _postmaster_pid(data)
    os.kill(old_pid, signal.SIGKILL)  # leaves postmaster.pid naming a dead process
    _wait_dead(old_pid)
    assert (data / "postmaster.pid").exists()

    pg.start(timeout=30)  # crash recovery replays the WAL
    try:
        assert await _fetchval(pg.dsn, "select x from t") == 1
    finally:
        pg.stop()


def test_stale_pid_file_naming_an_unrelated_live_process(workdir: Path) -> None:
    data = workdir / "data"
    with EmbeddedPostgres(data, durable=False):
        pid_file_text = (data / "postmaster.pid").read_text()
    # After a reboot the old pid may belong to anything; postgres alone would refuse to start.
    unrelated = subprocess.Popen(["sleep", "60"])
    try:
        lines = pid_file_text.split("\n")
        lines[0] = str(unrelated.pid)
        (data / "postmaster.pid").write_text("\n".join(lines))
        with EmbeddedPostgres(data, durable=False) as pg:
            assert _postmaster_pid(data) != unrelated.pid
            assert pg.port > 0
        assert unrelated.poll() is None  # not signalled
    finally:
        unrelated.kill()
        unrelated.wait()


def test_stop_when_the_data_dir_path_became_unreachable(workdir: Path) -> None:
    """As root: the server runs as nobody, and someone takes o+x off a parent (as pytest does
    to /tmp/pytest-of-root); pg_ctl can't reach postmaster.pid, stop() signals instead."""
    pg = EmbeddedPostgres(workdir / "data", durable=False)
    pg.start()
    pid = _postmaster_pid(workdir / "data")
    workdir.chmod(0o700)
    pg.stop()
    assert not _alive(pid)
    pg.start()  # and o+x comes back
    pg.stop()


def test_long_path_puts_socket_under_tmp(workdir: Path) -> None:
    data = workdir / ("x" * 100) / "data"
    with EmbeddedPostgres(data, durable=False) as pg:
        sockets = list(Path("/tmp").glob(f"cariosan-pg-*/.s.PGSQL.{pg.port}"))
        assert len(sockets) == 1
        socket_dir = sockets[0].parent
    assert not socket_dir.exists()


def _start_query_stop(base: Path, result: Connection) -> None:
    """In a child process: one start, query and stop, reporting the outcome through `result`."""
    try:
        with EmbeddedPostgres(base / "data", durable=False) as pg:
            answer = asyncio.run(_fetchval(pg.dsn, "select current_user"))
            result.send(("ok", f"{pg.dsn} {answer}"))
    except BaseException as exc:
        result.send(("error", repr(exc)))


def test_runs_as_an_ordinary_user(workdir: Path) -> None:
    """Not root: the binaries run as the caller, nothing is chowned or chmodded."""
    base = workdir
    uid = os.geteuid()
    if uid == 0:
        nobody = pwd.getpwnam("nobody")
        uid = nobody.pw_uid
        # An ordinary user's own dir, reachable like a home directory.
        workdir.chmod(0o711)
        base = workdir / "home"
        base.mkdir(mode=0o700)
        os.chown(base, nobody.pw_uid, nobody.pw_gid)

        def target(result: Connection) -> None:
            # Forked, not exec'd: the venv's interpreter may sit under a root-only /root.
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            # An ordinary user's own HOME, not root's: libpq-style clients (asyncpg) look for
            # ~/.postgresql/postgresql.key and ~/.pgpass there, and stat() under a 0700 /root
            # raises PermissionError for anyone but root.
            os.environ["HOME"] = str(base)
            _start_query_stop(base, result)
    else:

        def target(result: Connection) -> None:
            _start_query_stop(base, result)

    receiver, sender = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=target, args=(sender,))
    try:
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 0
        status, detail = receiver.recv()
        assert status == "ok", detail
        assert detail.startswith("postgresql://postgres@127.0.0.1:")
        assert detail.endswith(" postgres")
        assert (base / "data" / "PG_VERSION").stat().st_uid == uid
        assert not (base / "data" / "postmaster.pid").exists()
    finally:
        if child.is_alive():
            child.kill()


def test_bin_path() -> None:
    for name in ("pg_dump", "pg_restore", "psql", "initdb"):
        path = bin_path(name)
        assert path.name == name
        assert os.access(path, os.X_OK)
    version = subprocess.run(
        [str(bin_path("pg_restore")), "--version"], capture_output=True, text=True, check=True
    )
    assert "PostgreSQL" in version.stdout
    with pytest.raises(EmbeddedPostgresError, match="pg_restor"):
        bin_path("pg_restor")
