"""Send throughput beside PostgreSQL's own: the send rows of issue 15's table.

In one deployment (`cariosan serve --workers 2` with Redis by default), each run measures:

- REST sends with wrk (one user per connection, every user a member of every channel) over
  1,000 channels and into one hot channel: acknowledged (2xx) messages/s and p50/p99;
- pgbench, with as many clients, for as long, on the same database: (a) the exact SQL of one
  send, captured from the server itself (bench.send_capture), and (b) the minimal message
  transaction (insert the row, move the channel's last message), over the channels and hot;
- the load generator's share of the machine's CPU, and server ÷ pgbench of the same run.

Every run of wrk or pgbench starts on a vacuumed database (`VACUUM (ANALYZE)`), as autovacuum
keeps a deployment within a minute. The reference machine's PostgreSQL runs with autovacuum off,
and there each run paid for the dead rows of the runs before it: after pgbench's minimal
transaction into the hot channel had left 23,000 dead versions of channel rows, wrk over 1,000
channels ran at 816 msg/s where it had run at 1,106, and at 1,266 once they were vacuumed.

Every acknowledged message must be stored (counted in PostgreSQL at the end), or it fails.

    python -m bench.send_table --runs 3 --seconds 10 --connections 32 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg
import httpx
from tests.services.provision import provide_redis

from bench.figures import Run, median
from bench.harness import JWT_SECRET, UNLIMITED, Deployment, admin, deployment, make_users
from bench.send_capture import capture_send
from bench.send_scripts import (
    FIRST_CHANNEL,
    FIRST_USER,
    HOT_CHANNEL,
    Roles,
    defines,
    minimal_script,
    parse_pgbench,
    parse_wrk,
    percentiles,
    read_pgbench_logs,
    send_script,
    unstored_acknowledged,
    wrk_script,
)

SPREAD, HOT = "spread", "hot"
SERVER, EXACT, MINIMAL = "server", "exact", "minimal"


def row_name(kind: str, where: str, channels: int) -> str:
    spread = f"{channels:,} channels"
    target = "one hot channel" if where == HOT else spread
    return {
        SERVER: f"REST send (wrk), {target}",
        EXACT: f"pgbench: SQL of one send, {target}",
        MINIMAL: f"pgbench: minimal message transaction, {target}",
    }[kind]


@dataclass(frozen=True)
class Setup:
    tokens: list[str]
    users: int
    channels: int
    scripts: dict[tuple[str, str], Path]  # (kind, where) -> pgbench script
    wrk_scripts: dict[str, Path]


def _cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _timed(command: list[str], env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run a load generator to its end; its output and its share of the machine's CPU (its own
    and its children's CPU time over wall time times cores: near 1/cores per busy thread, a
    figure near 1 means the generator, not the server, was the limit)."""
    before, began = _cpu_seconds(), time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall, cpu = time.monotonic() - began, _cpu_seconds() - before
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}):\n{done.stderr}{done.stdout}")
    return done.stdout + done.stderr, cpu / (wall * (os.cpu_count() or 1))


async def _prepare(where: Deployment, connections: int, channels: int) -> list[str]:
    """Users (digits only, see bench.send_scripts) and channels with every user in each."""
    names = [str(FIRST_USER + i) for i in range(connections)]
    tokens = await make_users(where, names)
    headers = {"Authorization": f"Bearer {tokens[names[0]]}"}
    ids = [str(FIRST_CHANNEL + i) for i in range(channels)] + [HOT_CHANNEL]
    async with httpx.AsyncClient(base_url=where.url, headers=headers, timeout=60) as http:
        for start in range(0, len(ids), 50):
            replies = await asyncio.gather(
                *(
                    http.post("/v1/channels", json={"id": c, "type": "group", "members": names})
                    for c in ids[start : start + 50]
                )
            )
            failed = [r for r in replies if r.status_code != 201]
            if failed:
                raise RuntimeError(f"creating a channel: {failed[0].status_code} {failed[0].text}")
    # Statistics, as autovacuum gives a deployment within a minute of such a load: without
    # them the planner took the sender's 1,000 memberships for a few rows (server and pgbench
    # alike, but pgbench, starting later, was likelier to get them).
    await admin(where.database_url, "ANALYZE")
    return [tokens[n] for n in names]


def _setup(
    where: Deployment, folder: Path, connections: int, channels: int, redis_url: str | None
) -> Setup:
    tokens = asyncio.run(_prepare(where, connections, channels))
    env = {"CARIOS_DATABASE_URL": where.database_url, "CARIOS_JWT_SECRET": JWT_SECRET}
    env |= {"CARIOS_LOG_LEVEL": "warning", **UNLIMITED}
    if redis_url:
        env |= {"CARIOS_REDIS_URL": redis_url, "CARIOS_REDIS_PREFIX": "bench-capture:"}
    channel, user = str(FIRST_CHANNEL), str(FIRST_USER)
    captured = asyncio.run(capture_send(env, tokens[0], channel, "captured send"))
    roles = Roles(
        where.workspace_id, channel, user, uuid.UUID(captured.message_id), "captured send"
    )
    scripts: dict[tuple[str, str], Path] = {}
    wrk_scripts: dict[str, Path] = {}
    for target in (SPREAD, HOT):
        hot = target == HOT
        exact = send_script(captured.request, roles, channels=channels, users=connections, hot=hot)
        minimal = minimal_script(channels=channels, users=connections, hot=hot)
        for kind, text in ((EXACT, exact), (MINIMAL, minimal)):
            path = folder / f"{kind}-{target}.sql"
            path.write_text(text)
            scripts[kind, target] = path
        wrk_path = folder / f"send-{target}.lua"
        wrk_path.write_text(wrk_script(tokens, channels=channels, hot=hot))
        wrk_scripts[target] = wrk_path
    background = folder / "background-during-capture.sql"
    background.write_text(
        "-- statements of the server's background jobs while the captured send ran\n"
        "-- (the sequencer round each send waits for is among them; not in the pgbench script)\n"
        + "".join(
            f"{s.query.strip().rstrip(';')};  -- args {s.args!r}\n" for s in captured.background
        )
    )
    return Setup(tokens, connections, channels, scripts, wrk_scripts)


def _pgbench_command(dsn: str, script: Path, clients: int, seconds: float, log: Path) -> list[str]:
    parts = urlsplit(dsn)
    threads = max(1, min(clients, os.cpu_count() or 1))
    started_ms = str(time.time_ns() // 1_000_000)
    return [
        "pgbench",
        "--no-vacuum",
        # asyncpg prepares every statement it sends: so does pgbench.
        "--protocol=prepared",
        f"--client={clients}",
        f"--jobs={threads}",
        f"--time={max(1, round(seconds))}",
        f"--file={script}",
        "--log",
        f"--log-prefix={log}",
        f"--host={parts.hostname or '127.0.0.1'}",
        f"--port={parts.port or 5432}",
        f"--username={unquote(parts.username or 'postgres')}",
        *defines({"n": "0", "t0": started_ms}),
        unquote(parts.path.lstrip("/")),
    ]


class Measurer:
    def __init__(self, where: Deployment, setup: Setup, *, connections: int, seconds: float):
        self.where, self.setup = where, setup
        self.connections, self.seconds = connections, seconds
        self.acknowledged = 0
        # (tag, per-thread answered/ok) of each wrk run, checked against the table at the end.
        self.wrk_runs: list[tuple[str, tuple[tuple[int, int, int], ...]]] = []
        self.folder = Path(tempfile.mkdtemp(prefix="cariosan-send-table-logs-"))
        env = dict(os.environ)
        password = urlsplit(where.database_url).password
        if password:
            env["PGPASSWORD"] = unquote(password)
        self.pg_env = env

    def vacuum(self) -> None:
        asyncio.run(admin(self.where.database_url, "VACUUM (ANALYZE)"))

    def wrk(self, target: str) -> Run:
        self.vacuum()
        tag = f"{target}{len(self.wrk_runs) + 1}"
        command = [
            "wrk",
            f"--threads={self.connections}",
            f"--connections={self.connections}",
            f"--duration={max(1, round(self.seconds))}s",
            "--timeout=10s",
            f"--script={self.setup.wrk_scripts[target]}",
            self.where.url,
            "--",
            tag,
        ]
        output, share = _timed(command)
        got = parse_wrk(output)
        if got.other or got.socket_errors:
            print(
                f"  wrk {target}: {got.other} not 2xx {got.statuses}, "
                f"{got.socket_errors} socket errors/timeouts",
                file=sys.stderr,
            )
        self.acknowledged += got.ok
        self.wrk_runs.append((tag, got.threads))
        return Run(got.rate, got.p50_ms, got.p99_ms, share, {"not_2xx": float(got.other)})

    def pgbench(self, kind: str, target: str) -> Run:
        self.vacuum()
        # The server's pools keep their connections: pgbench's clients come on top of them.
        free = asyncio.run(_free_connections(self.where.database_url)) + 1
        if free < self.connections:
            raise RuntimeError(
                f"PostgreSQL has {free} free connections for pgbench's {self.connections} "
                "clients (the server's pools hold theirs): fewer --connections, or a higher "
                "max_connections"
            )
        log = self.folder / f"{kind}-{target}-{uuid.uuid4().hex[:6]}"
        script = self.setup.scripts[kind, target]
        command = _pgbench_command(
            self.where.database_url, script, self.connections, self.seconds, log
        )
        command[-1:-1] = defines({"ws": str(self.where.workspace_id)})
        output, share = _timed(command, self.pg_env)
        got = parse_pgbench(output)
        latencies = read_pgbench_logs(self.folder, log.name)
        for written in self.folder.glob(f"{log.name}.*"):
            written.unlink()
        if got.failed:
            print(f"  pgbench {kind} {target}: {got.failed} failed", file=sys.stderr)
        p50, p99 = percentiles(latencies)
        return Run(got.tps, p50, p99, share, {"failed": float(got.failed)})

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


async def _free_connections(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT current_setting('max_connections')::int"
                " - current_setting('superuser_reserved_connections')::int"
                " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
            )
        )
    finally:
        await conn.close()


async def _stored_texts(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT text FROM messages WHERE text LIKE 'wrk %'")
    finally:
        await conn.close()
    return [str(r["text"]) for r in rows]


def measure(
    runs: int = 3,
    seconds: float = 10.0,
    workers: int = 2,
    *,
    connections: int = 32,
    channels: int = 1000,
    redis: bool = True,
    script_folder: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[Run]]:
    """Row name -> one Run per run. The pgbench rows carry `extra["ratio"]`: the server's
    msg/s ÷ that row's tps, both of the same run and target. Raises if a message that was
    acknowledged is not stored. The pgbench scripts go to `script_folder` (a temporary one,
    removed, when None)."""
    for tool in ("wrk", "pgbench"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: apt-get install -y wrk postgresql-client-15")
    say = progress or (lambda _: None)
    table: dict[str, list[Run]] = {}
    owned = script_folder is None
    folder = Path(tempfile.mkdtemp(prefix="cariosan-send-table-")) if owned else script_folder
    assert folder is not None
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with deployment(workers=workers, redis=redis) as where:
            say(f"server {where.url} (workers {workers}, redis {redis}); setting up")
            # The capture server gets Redis too, as the deployment: same code paths.
            service = provide_redis() if redis else None
            try:
                url = service.url if service is not None else None
                setup = _setup(where, folder, connections, channels, url)
            finally:
                if service is not None:
                    service.close()
            say(f"scripts in {folder}")
            measurer = Measurer(where, setup, connections=connections, seconds=seconds)
            try:
                for number in range(1, runs + 1):
                    for target in (SPREAD, HOT):
                        say(f"run {number}/{runs}, {target}: wrk")
                        server = measurer.wrk(target)
                        table.setdefault(row_name(SERVER, target, channels), []).append(server)
                        for kind in (EXACT, MINIMAL):
                            say(f"run {number}/{runs}, {target}: pgbench {kind}")
                            base = measurer.pgbench(kind, target)
                            ratio = (server.rate or 0) / base.rate if base.rate else float("nan")
                            with_ratio = replace(base, extra={**base.extra, "ratio": ratio})
                            table.setdefault(row_name(kind, target, channels), []).append(
                                with_ratio
                            )
            finally:
                measurer.close()
            texts = asyncio.run(_stored_texts(where.database_url))
            say(f"stored: {len(texts)} messages sent by wrk, {measurer.acknowledged} acknowledged")
            problems = [
                problem
                for tag, threads in measurer.wrk_runs
                for problem in unstored_acknowledged(threads, texts, tag)
            ]
            if problems:
                raise RuntimeError("acknowledged but not stored:\n" + "\n".join(problems))
    finally:
        if owned:
            shutil.rmtree(folder, ignore_errors=True)
    return table


def _figure(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(table: dict[str, list[Run]]) -> str:
    lines = [
        "| workload | msg/s or tps | p50 ms | p99 ms | load generator CPU | server ÷ this |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, runs in table.items():
        m = median(runs)
        share = "-" if m.load_cpu is None else f"{m.load_cpu:.0%}"
        ratio = m.extra.get("ratio")
        lines.append(
            f"| {name} | {_figure(m.rate)} | {_figure(m.p50_ms, 1)} | {_figure(m.p99_ms, 1)} "
            f"| {share} | {'' if ratio is None else f'{ratio:.2f}'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="each figure the median of these")
    parser.add_argument("--seconds", type=float, default=10.0, help="per workload and run")
    parser.add_argument("--workers", type=int, default=2, help="`cariosan serve --workers`")
    parser.add_argument(
        "--connections", type=int, default=32, help="wrk connections = pgbench clients"
    )
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--no-redis", action="store_true", help="serve without Redis")
    parser.add_argument(
        "--scripts", type=Path, help="keep the generated pgbench and wrk scripts in this folder"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="progress, script paths")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        if args.verbose:
            print(line, file=sys.stderr, flush=True)

    folder = args.scripts
    if folder is None and args.verbose:
        # Verbose: kept, so that a reader can see the SQL the table compares with.
        folder = Path(tempfile.mkdtemp(prefix="cariosan-send-table-"))
    table = measure(
        args.runs,
        args.seconds,
        args.workers,
        connections=args.connections,
        channels=args.channels,
        redis=not args.no_redis,
        script_folder=folder,
        progress=say,
    )
    print(
        f"Send throughput: {args.connections} connections/clients, {args.seconds:g} s each, "
        f"median of {args.runs} run(s), server --workers {args.workers}"
        f"{'' if args.no_redis else ' with Redis'}; CPU share of {os.cpu_count()} cores"
    )
    print(markdown(table))
    if folder is not None:
        print(f"pgbench and wrk scripts: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
