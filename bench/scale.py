"""Read paths at data scale: p50/p99 of each with a million messages in one workspace.

Starts its own `cariosan serve` against a database it creates, fills it (bench/datagen.py:
channels and users through the API, messages and their events in bulk), then times each read
path with sequential requests on one keep-alive connection (so each figure is the server's time
plus one loopback round trip; the server's own time comes from its `Server-Timing` header):

- catch-up (`GET /v1/events?limit=100`) for a user in 2 of the 1,000 channels, from positions
  spread over the log; the same with nothing new; a page of 100 for a user in all channels;
- the latest history page of the hot channel, and a page 100,000 messages back;
- `/v1/me` and the channel list of a member of all 1,000 channels with 300,000 unread in one;
- search in a small workspace on the same server as the big one.

    python -m bench.scale --messages 1000000 --requests 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
from tests.support.process import run_cli

from bench import datagen
from bench.harness import Deployment, deployment, make_users, user_tokens, workspace_named

Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


def server_ms(response: httpx.Response) -> float:
    """The server's own time for a response, from its `Server-Timing: app;dur=...` header."""
    timing = response.headers.get("server-timing", "")
    return float(timing.partition("dur=")[2] or "nan")


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def timed(
    url: str, token: str, requests: int, request: Request
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(p50, p99) in ms at the server and at the client, of `requests` sequential calls (after
    a few unmeasured ones)."""
    headers = {"Authorization": f"Bearer {token}"}
    took: list[float] = []
    spent: list[float] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        for n in range(-5, requests):
            began = time.perf_counter()
            response = await request(http, n)
            elapsed = time.perf_counter() - began
            if response.status_code != 200:
                raise RuntimeError(
                    f"{response.request.url}: {response.status_code} {response.text}"
                )
            if n >= 0:
                took.append(elapsed * 1000)
                spent.append(server_ms(response))
    return percentiles(spent), percentiles(took)


async def small_workspace(where: Deployment) -> tuple[str, str]:
    """A second, small workspace on the same server: (its searching user's token, its id)."""
    made = run_cli(["workspace", "create", "small", "--json"], _env(where))
    if made.returncode != 0:
        raise RuntimeError(made.stderr.strip())
    created = json.loads(made.stdout)
    small = Deployment(
        where.url,
        where.database_url,
        created["api_secret"],
        uuid.UUID(created["id"]),
        where.redis,
    )
    authors = [f"w{i}" for i in range(datagen.AUTHORS)]
    people = await make_users(small, [*authors, "searcher"])
    shape = datagen.Shape(messages=1000, channels=2)
    await datagen.make_channels(small.url, small.api_secret, shape, ["searcher", *authors], [])
    await datagen.fill_messages(small.database_url, small.workspace_id, shape)
    return people["searcher"], created["id"]


def _env(where: Deployment) -> dict[str, str]:
    from bench.harness import JWT_SECRET

    return {"CARIOS_DATABASE_URL": where.database_url, "CARIOS_JWT_SECRET": JWT_SECRET}


async def fill(args: argparse.Namespace, where: Deployment) -> tuple[dict[str, str], str]:
    """The data set; the readers' and the small workspace's searcher's tokens."""
    shape = datagen.Shape(messages=args.messages, channels=args.channels)
    authors = [f"w{i}" for i in range(datagen.AUTHORS)]
    people = await make_users(where, [*authors, "reader_all", "reader_few"])
    began = time.monotonic()
    channels = await datagen.make_channels(
        where.url, where.api_secret, shape, ["reader_all", *authors], ["reader_few"]
    )
    await datagen.fill_messages(where.database_url, where.workspace_id, shape, progress=True)
    # reader_all has read everything but the hot channel.
    headers = {"Authorization": f"Bearer {people['reader_all']}"}
    async with httpx.AsyncClient(base_url=where.url, headers=headers, timeout=120) as http:
        for start in range(1, len(channels), 25):
            replies = await asyncio.gather(
                *(http.post(f"/v1/channels/{c}/read", json={}) for c in channels[start:][:25])
            )
            assert all(r.status_code == 200 for r in replies), replies[0].text
    searcher, _ = await small_workspace(where)
    await datagen.analyze(where.database_url)
    print(f"filled in {time.monotonic() - began:.0f} s", flush=True)
    return people, searcher


async def run(args: argparse.Namespace, where: Deployment) -> None:
    if args.reuse_database:
        people = user_tokens(where.workspace_id, ["reader_all", "reader_few"])
        small = await workspace_named(where.database_url, "small")
        searcher = user_tokens(small, ["searcher"])["searcher"]
    else:
        people, searcher = await fill(args, where)

    conn = await asyncpg.connect(where.database_url)
    try:
        latest = int(
            await conn.fetchval(
                "SELECT last_seq FROM event_positions WHERE workspace_id = $1", where.workspace_id
            )
        )
        # 100,000 back (half the hot channel in a smaller run).
        depth = min(100_000, round(args.messages * datagen.Shape(1, 1).hot_share) // 2)
        back = await conn.fetchval(
            "SELECT id FROM messages WHERE workspace_id = $1 AND channel_id = 'c0000' "
            "AND parent_id IS NULL ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1",
            where.workspace_id,
            depth,
        )
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM events) AS events, "
            "(SELECT count(*) FROM messages) AS messages"
        )
    finally:
        await conn.close()
    rng = random.Random(5)
    starts = [rng.randrange(0, max(1, latest - 1000)) for _ in range(args.requests + 5)]

    def at(n: int) -> int:
        return starts[n + 5]

    paths: list[tuple[str, str, Request]] = [
        (
            "catch-up, user in 2 of 1,000 channels (page of 100)",
            people["reader_few"],
            lambda h, n: h.get("/v1/events", params={"after_seq": at(n), "limit": 100}),
        ),
        (
            "catch-up with nothing new",
            people["reader_all"],
            lambda h, n: h.get("/v1/events", params={"after_seq": latest, "limit": 100}),
        ),
        (
            "catch-up, user in all channels (page of 100)",
            people["reader_all"],
            lambda h, n: h.get("/v1/events", params={"after_seq": at(n), "limit": 100}),
        ),
        (
            "history: latest page (50) of the hot channel",
            people["reader_all"],
            lambda h, n: h.get("/v1/channels/c0000/messages", params={"limit": 50}),
        ),
        (
            f"history: page (50) {depth:,} messages back",
            people["reader_all"],
            lambda h, n: h.get(
                "/v1/channels/c0000/messages", params={"limit": 50, "before": str(back)}
            ),
        ),
        ("/v1/me, member of 1,000 channels", people["reader_all"], lambda h, n: h.get("/v1/me")),
        (
            "channel list (50), member of 1,000 channels",
            people["reader_all"],
            lambda h, n: h.get("/v1/channels", params={"limit": 50}),
        ),
        (
            "search in a small workspace beside the big one",
            searcher,
            lambda h, n: h.get("/v1/search", params={"q": datagen.WORDS[n % 8], "limit": 20}),
        ),
    ]
    print(
        f"\ndata: {counts['messages']:,} messages, {counts['events']:,} events, "
        f"{args.channels:,} channels; {args.requests} sequential requests per path\n"
    )
    print(f"{'':<56} {'at the server':>17} {'at the client':>17}")
    print(f"{'read path':<56} {'p50 ms':>8} {'p99 ms':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, token, request in paths:
        (p50, p99), (c50, c99) = await timed(where.url, token, args.requests, request)
        print(f"{name:<56} {p50:>8.2f} {p99:>8.2f} {c50:>8.2f} {c99:>8.2f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200, help="per read path")
    parser.add_argument(
        "--keep-database", action="store_true", help="leave the filled database (query plans)"
    )
    parser.add_argument(
        "--reuse-database",
        metavar="NAME",
        help="time the read paths on a database kept by an earlier --keep-database run",
    )
    args = parser.parse_args(argv)
    with deployment(keep_database=args.keep_database, reuse_database=args.reuse_database) as where:
        asyncio.run(run(args, where))
    return 0


if __name__ == "__main__":
    sys.exit(main())
