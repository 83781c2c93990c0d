"""Send-to-receive latency over the WebSocket under load.

Starts its own `cariosan serve` on loopback against a database it creates (PostgreSQL found or
started as the tests do), holds N WebSocket connections of members of one channel, has M senders
post messages over REST at a steady rate, and prints the latency from just before the POST to
each receipt (p50/p99/max) and the throughput. Bounded in time; everything stops at the end.

    python -m bench.ws_latency --connections 1000 --senders 4 --rate 5 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import websockets
from tests.services.provision import provide_postgres, provide_redis
from tests.support.process import run_cli, serve

from cariosan.domain import tokens

JWT_SECRET = "bench-jwt-secret-" + secrets.token_hex(16)
_STAMP = re.compile(r'"text":"b (\d+) ([0-9.]+)"')


def _database_dsn(server_dsn: str, name: str) -> str:
    base, _, rest = server_dsn.rpartition("/")
    query = rest.partition("?")[2]
    return f"{base}/{name}" + (f"?{query}" if query else "")


async def _admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


class Results:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.sent = 0
        self.failed_sends = 0
        self.send_started = 0.0
        self.send_ended = 0.0
        self.last_receipt = 0.0


async def _setup_users(
    url: str, secret: str, workspace_id: uuid.UUID, names: list[str]
) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        for start in range(0, len(names), 50):
            batch = names[start : start + 50]
            replies = await asyncio.gather(
                *(http.put(f"/v1/users/{n}", json={"name": n}) for n in batch)
            )
            assert all(r.status_code == 200 for r in replies), replies[0].text
    return {n: tokens.mint(JWT_SECRET, workspace_id, n, 3600)[0] for n in names}


async def _run(args: argparse.Namespace, url: str, secret: str, workspace_id: uuid.UUID) -> Results:
    receivers = [f"r{i:05d}" for i in range(args.connections)]
    senders = [f"s{i:03d}" for i in range(args.senders)]
    started = time.monotonic()
    user_tokens = await _setup_users(url, secret, workspace_id, receivers + senders)
    owner = senders[0]
    headers = {"Authorization": f"Bearer {user_tokens[owner]}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        made = await http.post("/v1/channels", json={"type": "group", "members": senders})
        assert made.status_code == 201, made.text
        channel = made.json()["id"]
        for start in range(0, len(receivers), 500):
            added = await http.post(
                f"/v1/channels/{channel}/members",
                json={"user_ids": receivers[start : start + 500]},
            )
            assert added.status_code == 200, added.text
    print(f"setup: {len(receivers) + len(senders)} users in {time.monotonic() - started:.1f} s")

    results = Results()
    ws_base = url.replace("http://", "ws://") + "/v1/ws?token="
    started = time.monotonic()
    sockets: list[Any] = []
    for start in range(0, len(receivers), 100):
        batch = receivers[start : start + 100]
        sockets += await asyncio.gather(
            *(websockets.connect(ws_base + user_tokens[n], open_timeout=60) for n in batch)
        )
    print(f"connected: {len(sockets)} WebSockets in {time.monotonic() - started:.1f} s")
    for socket in sockets:
        await socket.send('{"type":"ping"}')  # live delivery starts at once

    async def receive(socket: Any) -> None:
        async for raw in socket:
            found = _STAMP.search(raw) if isinstance(raw, str) else None
            if found is not None:
                now = time.perf_counter()
                results.latencies.append(now - float(found.group(2)))
                results.last_receipt = now

    receiving = [asyncio.create_task(receive(s)) for s in sockets]
    await asyncio.sleep(1.5)

    async def send(name: str) -> None:
        headers = {"Authorization": f"Bearer {user_tokens[name]}"}
        interval = 1.0 / args.rate
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
            next_at = time.perf_counter()
            deadline = next_at + args.seconds
            n = 0
            while next_at < deadline:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                text = f"b {n} {time.perf_counter():.6f}"
                reply = await http.post(f"/v1/channels/{channel}/messages", json={"text": text})
                if reply.status_code == 201:
                    results.sent += 1
                else:
                    results.failed_sends += 1
                n += 1
                next_at += interval

    results.send_started = time.perf_counter()
    await asyncio.gather(*(send(s) for s in senders))
    results.send_ended = time.perf_counter()
    expected = results.sent * len(sockets)
    for _ in range(int(args.drain_seconds * 10)):
        if len(results.latencies) >= expected:
            break
        await asyncio.sleep(0.1)
    for task in receiving:
        task.cancel()
    await asyncio.gather(*receiving, return_exceptions=True)
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    return results


def _report(args: argparse.Namespace, results: Results) -> None:
    expected = results.sent * args.connections
    got = len(results.latencies)
    print(
        f"sent: {results.sent} messages from {args.senders} senders in "
        f"{results.send_ended - results.send_started:.1f} s "
        f"({results.sent / max(0.001, results.send_ended - results.send_started):.1f} msg/s), "
        f"{results.failed_sends} failed"
    )
    span = max(0.001, (results.last_receipt or results.send_ended) - results.send_started)
    print(f"received: {got} of {expected} deliveries ({got / span:.0f} deliveries/s)")
    if results.latencies:
        ordered = sorted(results.latencies)

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

        print(
            f"latency send->receive: p50 {pct(0.50):.1f} ms, p99 {pct(0.99):.1f} ms, "
            f"max {ordered[-1] * 1000:.1f} ms, mean {statistics.fmean(ordered) * 1000:.1f} ms"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=1000, help="WebSockets held (N)")
    parser.add_argument("--senders", type=int, default=4, help="users posting messages (M)")
    parser.add_argument("--rate", type=float, default=5.0, help="messages/s per sender")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long senders post")
    parser.add_argument("--drain-seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1, help="`cariosan serve --workers`")
    parser.add_argument("--redis", action="store_true", help="use Redis (found as tests do)")
    args = parser.parse_args(argv)

    postgres = provide_postgres()
    redis = provide_redis() if args.redis else None
    name = f"cariosan_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(postgres.dsn, f'CREATE DATABASE "{name}"'))
    try:
        env = {
            "CARIOS_DATABASE_URL": _database_dsn(postgres.dsn, name),
            "CARIOS_JWT_SECRET": JWT_SECRET,
            "CARIOS_LOG_LEVEL": "warning",
            "CARIOS_RATE_USER_MESSAGES_PER_SECOND": "100000",
            "CARIOS_RATE_USER_REQUESTS_PER_MINUTE": "100000000",
            "CARIOS_RATE_WORKSPACE_REQUESTS_PER_MINUTE": "100000000",
        }
        if redis is not None:
            env["CARIOS_REDIS_URL"] = redis.url
            env["CARIOS_REDIS_PREFIX"] = f"bench:{uuid.uuid4().hex[:8]}:"
        with tempfile.TemporaryDirectory(prefix="cariosan-bench-") as folder:
            server_args = ["--workers", str(args.workers)] if args.workers > 1 else []
            with serve(env, Path(folder), args=server_args) as server:
                made = run_cli(["workspace", "create", "bench", "--json"], env)
                if made.returncode != 0:
                    print(made.stderr, file=sys.stderr)
                    return 1
                workspace = json.loads(made.stdout)
                print(
                    f"server: {server.url} (workers {args.workers}, "
                    f"{'redis' if redis else 'no redis'}); N={args.connections} "
                    f"M={args.senders} rate={args.rate}/s for {args.seconds:g} s"
                )
                results = asyncio.run(
                    asyncio.wait_for(
                        _run(args, server.url, workspace["api_secret"], uuid.UUID(workspace["id"])),
                        timeout=args.seconds + args.drain_seconds + 300,
                    )
                )
        _report(args, results)
        return 0
    finally:
        asyncio.run(_admin(postgres.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if redis is not None:
            redis.close()
        postgres.close()


if __name__ == "__main__":
    sys.exit(main())
