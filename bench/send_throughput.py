"""Message send throughput over REST: how many acknowledged (2xx) messages per second.

Starts its own `cariosan serve` on loopback against a database it creates (as bench.ws_latency
does), then C concurrent clients post messages as fast as they are answered for a fixed time,
spread over many channels or all into one, and prints messages/s and request latency. Every
message is then counted in PostgreSQL: acknowledged must equal stored.

    python -m bench.send_throughput --concurrency 32 --channels 1000 --seconds 10 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import asyncpg
import httpx

from bench.harness import Deployment, deployment, make_users


async def _create_channels(url: str, token: str, count: int) -> list[str]:
    ids = [f"c{i:05d}" for i in range(count)]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        for start in range(0, count, 50):
            replies = await asyncio.gather(
                *(
                    http.post("/v1/channels", json={"id": c, "type": "group", "members": []})
                    for c in ids[start : start + 50]
                )
            )
            assert all(r.status_code == 201 for r in replies), replies[0].text
    return ids


async def _run(args: argparse.Namespace, where: Deployment) -> int:
    senders = [f"s{i:03d}" for i in range(args.concurrency)]
    url, secret = where.url, where.api_secret
    tokens = await make_users(where, senders)
    # Every sender is in every channel: the first one creates them all and adds the others.
    channels = await _create_channels(url, tokens[senders[0]], args.channels)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=60
    ) as backend:
        for channel in channels:
            added = await backend.post(
                f"/v1/channels/{channel}/members", json={"user_ids": senders[1:]}
            )
            assert added.status_code == 200, added.text

    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + args.seconds

    async def sender(n: int) -> None:
        nonlocal failures
        headers = {"Authorization": f"Bearer {tokens[senders[n]]}"}
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as http:
            i = 0
            while time.monotonic() < deadline:
                channel = channels[(n * 7919 + i) % len(channels)]
                began = time.perf_counter()
                response = await http.post(
                    f"/v1/channels/{channel}/messages", json={"text": f"bench {n} {i}"}
                )
                if response.status_code == 201:
                    latencies.append(time.perf_counter() - began)
                else:
                    failures += 1
                i += 1

    started = time.monotonic()
    await asyncio.gather(*(sender(n) for n in range(args.concurrency)))
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0

    print(
        f"acknowledged: {len(latencies)} messages in {elapsed:.1f} s = "
        f"{len(latencies) / elapsed:.0f} msg/s ({failures} not 201)"
    )
    print(f"latency: p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms")
    return len(latencies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=32, help="clients posting at once")
    parser.add_argument("--channels", type=int, default=1000, help="1 = everyone in one channel")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2, help="`cariosan serve --workers`")
    args = parser.parse_args(argv)

    with deployment(workers=args.workers) as where:
        print(
            f"server: {where.url} (workers {args.workers}); concurrency "
            f"{args.concurrency}, {args.channels} channel(s), {args.seconds:g} s"
        )
        acknowledged = asyncio.run(_run(args, where))

        async def stored() -> int:
            conn = await asyncpg.connect(where.database_url)
            try:
                return int(await conn.fetchval("SELECT count(*) FROM messages"))
            finally:
                await conn.close()

        count = asyncio.run(stored())
    print(f"stored: {count} messages (acknowledged {acknowledged})")
    return 0 if count == acknowledged else 1


if __name__ == "__main__":
    sys.exit(main())
