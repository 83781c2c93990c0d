"""Ephemeral state in Redis, shared by every server node."""

from __future__ import annotations

import redis.asyncio as aioredis


class RedisStore:
    kind = "redis"

    def __init__(self, url: str) -> None:
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=15
        )

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()
