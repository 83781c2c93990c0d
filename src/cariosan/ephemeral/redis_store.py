"""Ephemeral state in Redis, shared by every server node."""

from __future__ import annotations

import redis.asyncio as aioredis

from cariosan.ephemeral.store import Window, WindowState


class RedisStore:
    kind = "redis"

    def __init__(self, url: str, prefix: str = "cariosan:") -> None:
        self.prefix = prefix
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=15
        )

    async def ping(self) -> None:
        await self.client.ping()

    async def hit(self, windows: list[Window], now: float) -> list[WindowState]:
        # Fixed windows: INCR + EXPIRE per window, all in one pipelined round trip.
        pipe = self.client.pipeline(transaction=False)
        starts = []
        for window in windows:
            start = int(now) // window.seconds * window.seconds
            starts.append(start)
            key = f"{self.prefix}rl:{window.key}:{start}"
            pipe.incr(key)
            pipe.expire(key, window.seconds + 1)
        results = await pipe.execute()
        return [
            WindowState(window, int(results[2 * i]), max(1, start + window.seconds - int(now)))
            for i, (window, start) in enumerate(zip(windows, starts, strict=True))
        ]

    async def close(self) -> None:
        await self.client.aclose()
