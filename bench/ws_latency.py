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
import re
import statistics
import sys
import time
from typing import Any

import httpx
import websockets

from bench.harness import Deployment, deployment, make_users

_STAMP = re.compile(r'"text":"b (\d+) ([0-9.]+)"')


class Results:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.sent = 0
        self.failed_sends = 0
        self.send_started = 0.0
        self.send_ended = 0.0
        self.last_receipt = 0.0


async def _run(args: argparse.Namespace, where: Deployment) -> Results:
    receivers = [f"r{i:05d}" for i in range(args.connections)]
    senders = [f"s{i:03d}" for i in range(args.senders)]
    started = time.monotonic()
    url = where.url
    user_tokens = await make_users(where, receivers + senders)
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

    with deployment(workers=args.workers, redis=args.redis) as where:
        print(
            f"server: {where.url} (workers {args.workers}, "
            f"{'redis' if where.redis else 'no redis'}); N={args.connections} "
            f"M={args.senders} rate={args.rate}/s for {args.seconds:g} s"
        )
        results = asyncio.run(
            asyncio.wait_for(_run(args, where), timeout=args.seconds + args.drain_seconds + 300)
        )
    _report(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
