"""Rate-limit counts shared through real Redis (ephemeral/redis_store.py): local below half of a
limit and added to Redis in batches, exact from there on."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from cariosan.ephemeral.redis_store import RedisStore
from cariosan.ephemeral.store import Window


@pytest.fixture
async def stores(redis_url: str, redis_prefix: str) -> AsyncIterator[list[RedisStore]]:
    """Two stores on one Redis: the counters of two server processes."""
    made = [RedisStore(redis_url, redis_prefix) for _ in range(2)]
    yield made
    for store in made:
        await store.close()


def _window(limit: int) -> Window:
    # A minute: a test never straddles two periods unless it starts in the last seconds of one.
    return Window("u:test", limit, 60)


def _now() -> float:
    now = time.time()
    # Start in a fresh-enough period, so all hits of the test fall into the same one.
    return now if now % 60 < 50 else now + (60 - now % 60)


async def _shared(redis_url: str, redis_prefix: str, now: float) -> int:
    client = aioredis.Redis.from_url(redis_url)
    try:
        key = f"{redis_prefix}rl:u:test:{int(now) // 60 * 60}"
        value = await client.get(key)
        if value is not None:
            # Gone a second after its period ends (give or take Redis's clock, which reads
            # time once per event-loop turn): counters never pile up in Redis.
            ends = int(now) // 60 * 60 + 60
            before = time.time()
            assert 0 < await client.pttl(key) <= (ends + 1.1 - before) * 1000
        return int(value or 0)
    finally:
        await client.aclose()


async def test_counts_below_half_a_limit_reach_redis_in_one_flush(
    stores: list[RedisStore], redis_url: str, redis_prefix: str
) -> None:
    one, two = stores
    now = _now()
    counts = [(await one.hit([_window(100)], now))[0].count for _ in range(10)]
    assert counts == list(range(1, 11))
    await one.flush()
    assert await _shared(redis_url, redis_prefix, now) == 10
    # The other process learns the shared total at its own next exchange with Redis.
    assert (await two.hit([_window(100)], now))[0].count == 1
    await two.flush()
    state = (await two.hit([_window(100)], now))[0]
    assert state.count == 12 and state.remaining == 88 and state.allowed
    # The flush also runs by itself, a moment after a local hit.
    deadline = time.monotonic() + 5
    while await _shared(redis_url, redis_prefix, now) != 12:
        assert time.monotonic() < deadline, "the local hit never reached Redis"
        await asyncio.sleep(0.05)


async def test_one_process_is_held_exactly_to_a_limit(
    stores: list[RedisStore], redis_url: str, redis_prefix: str
) -> None:
    store = stores[0]
    now = _now()
    states = [(await store.hit([_window(10)], now))[0] for _ in range(15)]
    assert [s.allowed for s in states] == [True] * 10 + [False] * 5
    assert [s.count for s in states] == list(range(1, 16))
    await store.flush()
    assert await _shared(redis_url, redis_prefix, now) == 15


async def test_processes_pass_a_limit_by_at_most_half_of_it_and_then_all_refuse(
    stores: list[RedisStore],
) -> None:
    now = _now()
    allowed = 0
    for _ in range(20):
        for store in stores:
            allowed += (await store.hit([_window(10)], now))[0].allowed
    assert 10 <= allowed <= 15
    for store in stores:
        await store.flush()
    for store in stores:
        assert not (await store.hit([_window(10)], now))[0].allowed


async def test_without_redis_hits_below_half_a_limit_still_answer() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the probe is closed
    store = RedisStore(f"redis://127.0.0.1:{port}/0", "t:down:")
    try:
        now = _now()
        states = [(await store.hit([_window(100)], now))[0] for _ in range(50)]
        assert all(s.allowed for s in states)
        await store.flush()  # logged, not raised: the counts wait for Redis
        # From half of the limit on, a hit needs Redis (domain/ratelimit.py lets it pass).
        with pytest.raises(redis.exceptions.ConnectionError):
            await store.hit([_window(100)], now)
    finally:
        await store.close()
