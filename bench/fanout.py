"""Fan-out to many sockets in one channel, and the memory idle sockets cost (issue 15).

Fan-out: a server (`--workers 2` with Redis by default, as bench.send_throughput), N users in
one channel, each with a WebSocket held by one of P client processes (bench.sockets). A sender
posts at a steady rate over REST for T seconds, each text carrying `time.monotonic()` taken just
before its POST (CLOCK_MONOTONIC is one clock for every process on Linux); each receipt gives
latency = receipt - stamp. Figures: p50/p99 over every delivery, deliveries/s (deliveries over
the span from the first POST to the last receipt), and the load generator's CPU share. Every
acknowledged message must reach every socket exactly once, or the bench fails. Several runs
are rounds of posting over the same sockets, connected once.

Idle: N WebSockets to one server process (`--workers 1`); its resident memory once they are
all open and idle, against before: MiB per 1,000 connections. A fresh server for every run.

    python -m bench.fanout                                   # 1,000 and 5,000; 10,000 idle
    python -m bench.fanout --fanout 200 --seconds 3 --runs 1 --idle 1000
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import io
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import httpx
import psutil

from bench.figures import Run, median
from bench.harness import Deployment, admin, deployment, make_users
from bench.sockets import RoundReport, hold

# What `cariosan serve` keeps open besides client sockets (FILES_NOT_SOCKETS in server.py).
SERVER_FILES_NOT_SOCKETS = 100
MEMBERS_PER_REQUEST = 500
MIB = 1024 * 1024


class BenchFailed(Exception):
    """A run that must not count: a delivery lost, a socket closed, a client process failed."""


@dataclass(frozen=True)
class Clients:
    """P client processes and the pipe to each."""

    processes: list[BaseProcess]
    pipes: list[Connection]

    def ask(self, command: tuple[Any, ...], timeout: float) -> list[tuple[Any, ...]]:
        for pipe in self.pipes:
            pipe.send(command)
        return [self.reply(i, timeout) for i in range(len(self.pipes))]

    def reply(self, index: int, timeout: float) -> tuple[Any, ...]:
        pipe, process = self.pipes[index], self.processes[index]
        deadline = time.monotonic() + timeout
        while not pipe.poll(0.2):
            if not process.is_alive():
                raise BenchFailed(f"client process {index} exited ({process.exitcode})")
            if time.monotonic() > deadline:
                raise BenchFailed(f"client process {index} did not answer within {timeout:g} s")
        answer: tuple[Any, ...] = pipe.recv()
        if answer[0] == "error":
            raise BenchFailed(f"client process {index}: {answer[1]}")
        return answer


@contextmanager
def client_processes(
    where: Deployment, tokens: list[str], processes: int, deflate: bool = False
) -> Iterator[Clients]:
    """The sockets of `tokens` spread over `processes` processes, all connected; every process
    is ended on the way out, also after an error or Ctrl-C."""
    ws_base = where.url.replace("http://", "ws://") + "/v1/ws?token="
    # "spawn": a forked child would inherit this process's threads and half-used clients.
    context = multiprocessing.get_context("spawn")
    count = max(1, min(processes, len(tokens)))
    started: list[BaseProcess] = []
    pipes: list[Connection] = []
    try:
        for index in range(count):
            ours, theirs = context.Pipe()
            child: BaseProcess = context.Process(
                target=hold,
                args=(ws_base, tokens[index::count], theirs, deflate),
                name=f"bench-sockets-{index}",
                daemon=True,
            )
            child.start()
            theirs.close()
            started.append(child)
            pipes.append(ours)
        clients = Clients(started, pipes)
        began = time.monotonic()
        connected = [clients.reply(i, 600) for i in range(count)]
        total, retries = sum(c[1] for c in connected), sum(c[3] for c in connected)
        print(
            f"  connected {total} sockets in {count} client processes "
            f"in {time.monotonic() - began:.1f} s ({retries} reconnects after 1013 try later)"
        )
        yield clients
    finally:
        # Told to finish, a process closes its sockets; one that does not is ended.
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send(("finish",))
        for child in started:
            child.join(timeout=15)
            if child.is_alive():
                child.terminate()
                child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join()
        for pipe in pipes:
            pipe.close()


def close_reasons(answers: list[tuple[Any, ...]]) -> str:
    """The close codes and reasons in ("frames", ..., reasons) answers, counted."""
    total: dict[str, int] = {}
    for answer in answers:
        for reason, count in answer[-1].items():
            total[reason] = total.get(reason, 0) + count
    return ", ".join(f"{count} x {reason!r}" for reason, count in total.items())


def settle(clients: Clients, quiet_seconds: float = 1.0, limit: float = 600) -> int:
    """Waits until no socket has received anything for `quiet_seconds`, so that a round
    starts on a quiet server (pong and, in channels small enough for it, presence
    frames are still arriving after the last connect). Returns those frames; fails if a
    socket was closed."""
    deadline = time.monotonic() + limit
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        answers = clients.ask(("frames",), 60)
        frames, closed = sum(a[1] for a in answers), sum(a[2] for a in answers)
        if closed:
            raise BenchFailed(
                f"{closed} sockets were closed before a round: {close_reasons(answers)}"
            )
        if frames != seen:
            seen, quiet_since = frames, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_seconds:
            return int(frames)
        time.sleep(0.25)
    raise BenchFailed(f"frames still arriving after {limit:g} s")


async def make_channel(where: Deployment, owner_token: str, members: list[str]) -> str:
    headers = {"Authorization": f"Bearer {owner_token}"}
    async with httpx.AsyncClient(base_url=where.url, headers=headers, timeout=120) as http:
        made = await http.post("/v1/channels", json={"type": "group", "members": []})
        if made.status_code != 201:
            raise BenchFailed(f"creating the channel: {made.status_code} {made.text}")
        channel: str = made.json()["id"]
        for start in range(0, len(members), MEMBERS_PER_REQUEST):
            batch = members[start : start + MEMBERS_PER_REQUEST]
            added = await http.post(f"/v1/channels/{channel}/members", json={"user_ids": batch})
            if added.status_code != 200:
                raise BenchFailed(f"adding members: {added.status_code} {added.text}")
    return channel


@dataclass
class Posted:
    acknowledged: list[int]
    failed: int
    first_post: float
    last_post: float


async def post_steadily(url: str, token: str, channel: str, rate: float, seconds: float) -> Posted:
    """Open loop: message n is posted at start + n/rate whether or not earlier ones were
    answered, so a slow server shows as latency, not as a lower rate."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    acknowledged: list[int] = []
    failed = 0
    stamps: list[float] = []

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as http:

        async def post(seq: int) -> None:
            nonlocal failed
            stamp = time.monotonic()
            stamps.append(stamp)
            text = f"fanout {seq} {stamp:.6f}"
            try:
                reply = await http.post(f"/v1/channels/{channel}/messages", json={"text": text})
            except httpx.HTTPError:
                failed += 1
                return
            if reply.status_code == 201:
                acknowledged.append(seq)
            else:
                failed += 1

        count = max(1, round(rate * seconds))
        began = time.monotonic()
        posts = []
        for seq in range(count):
            await asyncio.sleep(max(0.0, began + seq / rate - time.monotonic()))
            posts.append(asyncio.create_task(post(seq)))
        await asyncio.gather(*posts)
    return Posted(sorted(acknowledged), failed, min(stamps), max(stamps))


def compression_env(deflate: bool) -> dict[str, str]:
    """With `--deflate` the server agrees to it (it declines by default) and the clients ask."""
    return {"CARIOS_WS_COMPRESSION": "true"} if deflate else {}


def percentile(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def fanout_round(
    where: Deployment,
    clients: Clients,
    sender_token: str,
    channel: str,
    sockets: int,
    rate: float,
    seconds: float,
    drain: float,
) -> Run:
    cpu_before, wall_before = time.process_time(), time.monotonic()
    clients.ask(("start",), 60)
    posted = asyncio.run(post_steadily(where.url, sender_token, channel, rate, seconds))
    answers = clients.ask(("expect", posted.acknowledged, drain), drain + 120)
    wall = time.monotonic() - wall_before
    reports: list[RoundReport] = [a[1] for a in answers]
    # The sender (this process) is part of the load generator too.
    load_cpu_seconds = sum(r.cpu_seconds for r in reports) + time.process_time() - cpu_before

    latencies = array.array("d")
    for report in reports:
        latencies.frombytes(report.latencies)
    missing = sum(r.missing for r in reports)
    incomplete = sum(r.incomplete_sockets for r in reports)
    duplicates = sum(r.duplicates for r in reports)
    closed = sum(r.closed for r in reports)
    unexpected = sum(r.unexpected for r in reports)
    acknowledged = len(posted.acknowledged)
    print(
        f"  posted {acknowledged} acknowledged ({posted.failed} failed) in "
        f"{posted.last_post - posted.first_post:.1f} s; {len(latencies)} deliveries to "
        f"{sockets} sockets (expected {acknowledged * sockets}); missing {missing} on "
        f"{incomplete} sockets, duplicates {duplicates}, unacknowledged {unexpected}, "
        f"closed {closed}"
    )
    if missing or duplicates or closed or posted.failed or not acknowledged:
        raise BenchFailed(
            f"not every delivery received: {acknowledged} acknowledged, {posted.failed} "
            f"posts failed, {missing} deliveries missing on {incomplete} of {sockets} sockets, "
            f"{duplicates} duplicates, {closed} sockets closed "
            f"{close_reasons([(r.close_reasons,) for r in reports])}".rstrip()
        )
    ordered = sorted(latencies)
    last_receipt = max(r.last_receipt for r in reports)
    span = max(1e-3, last_receipt - posted.first_post)
    return Run(
        rate=len(ordered) / span,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        load_cpu=load_cpu_seconds / (wall * (os.cpu_count() or 1)),
        extra={"max_ms": ordered[-1] * 1000, "mean_ms": statistics.fmean(ordered) * 1000},
    )


def measure_fanout(
    runs: int,
    sockets: int,
    rate: float = 10.0,
    seconds: float = 10.0,
    workers: int = 2,
    redis: bool = True,
    processes: int = 4,
    drain: float = 30.0,
    deflate: bool = False,
) -> list[Run]:
    """`runs` rounds of posting at `rate`/s for `seconds` into a channel whose `sockets`
    members are all connected (one server, one set of sockets for every round)."""
    with deployment(workers=workers, redis=redis, env=compression_env(deflate)) as where:
        print(
            f"fan-out to {sockets}: server {where.url} (workers {workers}, "
            f"{'redis' if where.redis else 'no redis'}), {processes} client processes"
            f"{' asking for deflate' if deflate else ''}, "
            f"{rate:g} messages/s for {seconds:g} s, {runs} runs"
        )
        began = time.monotonic()
        receivers = [f"r{i:05d}" for i in range(sockets)]
        tokens = asyncio.run(make_users(where, ["sender", *receivers]))
        channel = asyncio.run(make_channel(where, tokens["sender"], receivers))
        # Statistics, as autovacuum gives a deployment within a minute of such a load (see
        # bench.send_table): without them the sequencer's round scanned every event of the
        # setup (a hash join), 2.8 ms a round instead of 0.4 at 3,000 events.
        asyncio.run(admin(where.database_url, "ANALYZE"))
        print(f"  setup: {sockets + 1} users, one channel, in {time.monotonic() - began:.1f} s")
        with client_processes(where, [tokens[r] for r in receivers], processes, deflate) as clients:
            began = time.monotonic()
            frames = settle(clients)
            print(
                f"  settled: {frames} frames besides messages (pong, presence) "
                f"received, quiet after {time.monotonic() - began:.1f} s"
            )
            results = []
            for index in range(runs):
                results.append(
                    fanout_round(
                        where, clients, tokens["sender"], channel, sockets, rate, seconds, drain
                    )
                )
                print(f"  run {index + 1}: {format_run(results[-1])}")
                if index + 1 < runs:
                    settle(clients)
    return results


def server_rss(pid: int) -> int:
    """Resident bytes of the server: its process and, with `--workers`, its workers."""
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return int(total)


def check_server_files(pid: int, sockets: int, workers: int) -> None:
    soft, _ = psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE)
    needed = -(-sockets // workers) + SERVER_FILES_NOT_SOCKETS
    if soft != psutil.RLIM_INFINITY and soft < needed:
        raise BenchFailed(
            f"the server may open {soft} files, {needed} needed for {sockets} sockets: "
            "raise the hard limit (ulimit -Hn) before running"
        )


def idle_run(
    sockets: int, processes: int, idle_seconds: float, workers: int, redis: bool, deflate: bool
) -> Run:
    with deployment(workers=workers, redis=redis, env=compression_env(deflate)) as where:
        if where.server_pid is None:
            raise BenchFailed("the deployment does not say which process is the server")
        check_server_files(where.server_pid, sockets, workers)
        began = time.monotonic()
        names = [f"i{i:05d}" for i in range(sockets)]
        tokens = asyncio.run(make_users(where, names))
        print(f"  setup: {sockets} users in {time.monotonic() - began:.1f} s")
        # The baseline after setup, so it holds what serving requests warmed (pools, caches).
        time.sleep(1.0)
        before = server_rss(where.server_pid)
        with client_processes(where, list(tokens.values()), processes, deflate) as clients:
            settle(clients)
            cpu_before, wall_before = time.process_time(), time.monotonic()
            clients.ask(("start",), 60)
            time.sleep(idle_seconds)
            after = server_rss(where.server_pid)
            answers = clients.ask(("expect", [], 0), 60)
            wall = time.monotonic() - wall_before
            reports: list[RoundReport] = [a[1] for a in answers]
            closed = sum(r.closed for r in reports)
            if closed:
                why = close_reasons([(r.close_reasons,) for r in reports])
                raise BenchFailed(f"{closed} of {sockets} idle sockets were closed: {why}")
            cpu = sum(r.cpu_seconds for r in reports) + time.process_time() - cpu_before
    print(f"  server RSS {before / MIB:.1f} MiB before, {after / MIB:.1f} MiB with the sockets")
    return Run(
        load_cpu=cpu / (wall * (os.cpu_count() or 1)),
        extra={
            "rss_mib_per_1000": (after - before) / MIB / sockets * 1000,
            "rss_mib_total": after / MIB,
            "rss_mib_before": before / MIB,
        },
    )


def measure_idle(
    runs: int,
    sockets: int,
    processes: int = 4,
    idle_seconds: float = 5.0,
    workers: int = 1,
    redis: bool = False,
    deflate: bool = False,
) -> list[Run]:
    """`sockets` open, idle WebSockets (users in no channel), each run on a fresh server."""
    results = []
    for index in range(runs):
        print(
            f"idle {sockets} sockets, run {index + 1} of {runs}: workers {workers}, "
            f"{'redis' if redis else 'no redis'}, {processes} client processes"
            f"{' asking for deflate' if deflate else ''}, "
            f"idle {idle_seconds:g} s"
        )
        results.append(idle_run(sockets, processes, idle_seconds, workers, redis, deflate))
        print(f"  run {index + 1}: {format_run(results[-1])}")
    return results


def _figure(value: float | None, form: str) -> str:
    return "-" if value is None else format(value, form)


def memory_text(run: Run) -> str:
    if "rss_mib_per_1000" not in run.extra:
        return "-"
    return (
        f"{run.extra['rss_mib_per_1000']:.1f} MiB per 1,000 "
        f"({run.extra['rss_mib_total']:.0f} MiB total)"
    )


def format_run(run: Run) -> str:
    return (
        f"{_figure(run.rate, ',.0f')} deliveries/s, p50 {_figure(run.p50_ms, '.1f')} ms, "
        f"p99 {_figure(run.p99_ms, '.1f')} ms, load generator CPU "
        f"{_figure(None if run.load_cpu is None else run.load_cpu * 100, '.0f')} %, "
        f"memory {memory_text(run)}"
    )


def table(rows: list[tuple[str, Run]]) -> str:
    lines = [
        "| workload | deliveries/s | p50 ms | p99 ms | load generator CPU | memory |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, run in rows:
        cpu = None if run.load_cpu is None else run.load_cpu * 100
        lines.append(
            f"| {name} | {_figure(run.rate, ',.0f')} | {_figure(run.p50_ms, '.1f')} | "
            f"{_figure(run.p99_ms, '.1f')} | {_figure(cpu, '.0f')} % | {memory_text(run)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--fanout", type=int, nargs="*", default=[1000, 5000], help="sockets in the channel"
    )
    parser.add_argument("--rate", type=float, default=10.0, help="messages/s posted")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long a run posts")
    parser.add_argument("--drain", type=float, default=30.0, help="wait for late deliveries")
    parser.add_argument("--workers", type=int, default=2, help="fan-out: `serve --workers`")
    parser.add_argument(
        "--redis", action=argparse.BooleanOptionalAction, default=True, help="fan-out: Redis"
    )
    parser.add_argument("--idle", type=int, default=10000, help="idle sockets (0: skip)")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--idle-workers", type=int, default=1, help="idle: `serve --workers`")
    parser.add_argument(
        "--idle-redis", action=argparse.BooleanOptionalAction, default=False, help="idle: Redis"
    )
    parser.add_argument("--runs", type=int, default=3, help="each figure the median of these")
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="permessage-deflate: the server allows it (CARIOS_WS_COMPRESSION), the clients ask",
    )
    args = parser.parse_args(argv)
    # Progress lines as they happen, also into a file or a pipe (a run takes minutes).
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)

    deflate = ", deflate" if args.deflate else ""
    rows: list[tuple[str, Run]] = []
    try:
        for sockets in args.fanout:
            runs = measure_fanout(
                args.runs,
                sockets,
                args.rate,
                args.seconds,
                args.workers,
                args.redis,
                args.processes,
                args.drain,
                args.deflate,
            )
            setup = f"{args.workers} workers, {'redis' if args.redis else 'no redis'}{deflate}"
            rows.append((f"fan-out to {sockets:,} at {args.rate:g}/s ({setup})", median(runs)))
        if args.idle:
            runs = measure_idle(
                args.runs,
                args.idle,
                args.processes,
                args.idle_seconds,
                args.idle_workers,
                args.idle_redis,
                args.deflate,
            )
            setup = f"{args.idle_workers} worker{'s' if args.idle_workers > 1 else ''}{deflate}"
            rows.append((f"{args.idle:,} idle sockets ({setup})", median(runs)))
    except BenchFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"\nmedian of {args.runs} runs; load generator CPU: share of {os.cpu_count()} cores\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
