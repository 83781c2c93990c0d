"""The presence heartbeat against a real Redis (realtime/presence.py): after Redis lost its
keys, one beat restores every local user's presence, in pipelines of bounded size, so that no
single pipeline stalls the process."""

from __future__ import annotations

import uuid
from typing import Any

import redis.asyncio as aioredis

from cariosan.realtime.bus import LocalBus
from cariosan.realtime.presence import BEAT_USERS, Presence


async def test_a_beat_restores_every_users_presence_in_bounded_pipelines(
    redis_url: str, redis_prefix: str, monkeypatch: Any
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        presence = Presence(LocalBus(), None, client, redis_prefix, "node-a")
        workspace = uuid.uuid4()
        users = [f"u{i}" for i in range(BEAT_USERS * 2 + 17)]
        for i, user in enumerate(users):
            presence.local[workspace, user] = 1 + i % 3
        # As after a Redis restart or FLUSHALL: nothing of this node is left.
        sizes: list[int] = []
        real_pipeline = client.pipeline

        def counted(*args: Any, **kwargs: Any) -> Any:
            pipe = real_pipeline(*args, **kwargs)
            real_execute = pipe.execute

            async def execute(*a: Any, **k: Any) -> Any:
                sizes.append(len(pipe.command_stack))
                return await real_execute(*a, **k)

            pipe.execute = execute  # type: ignore[method-assign]
            return pipe

        monkeypatch.setattr(client, "pipeline", counted)
        await presence._beat(client)

        for i, user in enumerate(users):
            assert (
                await client.hget(f"{redis_prefix}presence:{workspace}:{user}", "node-a")
                == str(1 + i % 3).encode()
            )
        members = await client.smembers(f"{redis_prefix}node_users:node-a")  # type: ignore[misc]
        assert members == {f"{workspace} {u}".encode() for u in users}
        assert await client.exists(f"{redis_prefix}node:node-a") == 1
        # Every user, two commands each, and never more than BEAT_USERS users in one pipeline.
        assert sum(sizes) == 2 + 2 * len(users)
        assert max(sizes) <= 2 * BEAT_USERS
    finally:
        await client.aclose()
