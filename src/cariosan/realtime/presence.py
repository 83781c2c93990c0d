"""Presence: `presence.changed` when a user's first connection on any node opens and when its
last one closes (or its node dies), sent to the users who share a channel with it.

With Redis, each node keeps per-user connection counts in `{prefix}presence:{ws}:{user}` (a
hash: node -> count) and proves it is alive with `{prefix}node:{node}` (TTL `NODE_TTL`,
refreshed every `HEARTBEAT_SECONDS`, which also rewrites its counts: a flushed Redis heals).
Every node sweeps the registry for nodes whose key expired (killed ones) and takes their
connections out, announcing users left with none. Without Redis the counts are in memory.
`last_active_at` is persisted when a user connects and when it goes offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cariosan.db.pool import Database
from cariosan.domain import live
from cariosan.obs.logging import get_logger
from cariosan.realtime.bus import Bus
from cariosan.realtime.connection import LiveConnection

log = get_logger("cariosan.realtime")

HEARTBEAT_SECONDS = 5.0
ACTIVE_FLUSH_SECONDS = 2.0
# Users refreshed per pipeline by a heartbeat (_beat).
BEAT_USERS = 100
NODE_TTL = 15

# KEYS[1] the user's presence hash; ARGV: node, delta. Returns the number of nodes left.
_CHANGE = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return redis.call('HLEN', KEYS[1])
"""
# KEYS[1] the user's presence hash; ARGV[1] a dead node. Returns the number of nodes left.
_DROP = """
local had = redis.call('HDEL', KEYS[1], ARGV[1])
if had == 0 then return -1 end
return redis.call('HLEN', KEYS[1])
"""

UserKey = tuple[uuid.UUID, str]


class Presence:
    def __init__(
        self,
        bus: Bus,
        database: Database | None,
        redis: aioredis.Redis | None,
        prefix: str,
        node_id: str,
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        node_ttl_seconds: int = NODE_TTL,
    ) -> None:
        self.heartbeat_seconds = heartbeat_seconds
        self.node_ttl_seconds = node_ttl_seconds
        self.bus = bus
        self.database = database
        self.redis = redis
        self.prefix = prefix
        self.node_id = node_id
        self.local: Counter[UserKey] = Counter()
        # Users whose `last_active_at` is to be written (batched: one UPDATE per workspace).
        self._active: set[UserKey] = set()
        self._task: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    def start(self, database: Database) -> None:
        self.database = database
        self._flusher = asyncio.create_task(self._flush_loop(), name="cariosan-last-active")
        if self.redis is not None:
            self._task = asyncio.create_task(self._heartbeat(), name="cariosan-presence")

    def _hash(self, key: UserKey) -> str:
        return f"{self.prefix}presence:{key[0]}:{key[1]}"

    async def connected(self, connection: LiveConnection) -> None:
        key = (connection.workspace_id, connection.user_id)
        self.local[key] += 1
        first_here = self.local[key] == 1
        if self.redis is None:
            online = first_here
        else:
            online = False
            try:
                nodes = await self.redis.eval(_CHANGE, 1, self._hash(key), self.node_id, 1)  # type: ignore[misc]
                await self.redis.sadd(self._users_key(self.node_id), f"{key[0]} {key[1]}")  # type: ignore[misc]
                online = first_here and int(nodes) == 1
            except (RedisError, OSError) as exc:
                log.warning("presence_failed", error=exc.__class__.__name__, exc_info=exc)
        if online:
            self._announce(key, True)
        await self._mark_active(key)

    async def disconnected(self, connection: LiveConnection) -> None:
        key = (connection.workspace_id, connection.user_id)
        self.local[key] -= 1
        if self.local[key] > 0:
            return
        del self.local[key]
        if self.redis is None:
            offline = True
        else:
            offline = False
            try:
                nodes = await self.redis.eval(_CHANGE, 1, self._hash(key), self.node_id, -1)  # type: ignore[misc]
                await self.redis.srem(self._users_key(self.node_id), f"{key[0]} {key[1]}")  # type: ignore[misc]
                offline = int(nodes) == 0
            except (RedisError, OSError) as exc:
                log.warning("presence_failed", error=exc.__class__.__name__, exc_info=exc)
        await self._mark_active(key)
        if offline:
            self._announce(key, False)

    def _announce(self, key: UserKey, online: bool) -> None:
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        frame = {
            "type": "presence.changed",
            "user_id": key[1],
            "online": online,
            "last_active_at": now,
        }
        # Neither channel nor user list: the hub sends it to whoever shares a channel with it.
        self.bus.publish(key[0], frame)

    async def _mark_active(self, key: UserKey) -> None:
        self._active.add(key)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(ACTIVE_FLUSH_SECONDS)
            await self.flush_active()

    async def flush_active(self) -> None:
        """Write the pending `last_active_at` updates, one statement per workspace."""
        pending, self._active = self._active, set()
        if self.database is None or not pending:
            return
        by_workspace: dict[uuid.UUID, list[str]] = {}
        for workspace_id, user_id in pending:
            by_workspace.setdefault(workspace_id, []).append(user_id)
        for workspace_id, user_ids in by_workspace.items():
            try:
                await live.mark_active(self.database, workspace_id, sorted(user_ids))
            except Exception as exc:
                log.warning("last_active_failed", error=exc.__class__.__name__, exc_info=exc)

    def _users_key(self, node: str) -> str:
        return f"{self.prefix}node_users:{node}"

    async def _heartbeat(self) -> None:
        assert self.redis is not None
        while True:
            try:
                await self._beat(self.redis)
                await self._sweep(self.redis)
            except Exception as exc:  # Redis away, or a bug: logged, and the loop goes on
                log.warning("presence_heartbeat_failed", error=exc.__class__.__name__, exc_info=exc)
            await asyncio.sleep(self.heartbeat_seconds)

    async def _beat(self, redis: aioredis.Redis) -> None:
        pipe = redis.pipeline(transaction=False)
        pipe.set(f"{self.prefix}node:{self.node_id}", "1", ex=self.node_ttl_seconds)
        pipe.sadd(f"{self.prefix}nodes", self.node_id)
        await pipe.execute()
        # The users in pipelines of BEAT_USERS. One pipeline for 2,500 users took 125 ms to
        # build, pack and read back, mostly without a pause: a stall that every socket of the
        # process waited through at every heartbeat.
        users = list(self.local)
        for start in range(0, len(users), BEAT_USERS):
            pipe = redis.pipeline(transaction=False)
            for key in users[start : start + BEAT_USERS]:
                count = self.local.get(key, 0)
                if count > 0:  # gone meanwhile: disconnected() took it out of Redis
                    pipe.hset(self._hash(key), self.node_id, count)
                    pipe.sadd(self._users_key(self.node_id), f"{key[0]} {key[1]}")
            await pipe.execute()

    async def _sweep(self, redis: aioredis.Redis) -> None:
        nodes = [_text(n) for n in await redis.smembers(f"{self.prefix}nodes")]  # type: ignore[misc]
        for node in nodes:
            if node == self.node_id or await redis.exists(f"{self.prefix}node:{node}"):
                continue
            if not await redis.set(f"{self.prefix}sweep:{node}", self.node_id, nx=True, ex=60):
                continue
            members = await redis.smembers(self._users_key(node))  # type: ignore[misc]
            for member in members:
                workspace, _, user_id = _text(member).partition(" ")
                key = (uuid.UUID(workspace), user_id)
                left = await redis.eval(_DROP, 1, self._hash(key), node)  # type: ignore[misc]
                if int(left) == 0:
                    self._announce(key, False)
            await redis.delete(self._users_key(node))
            await redis.srem(f"{self.prefix}nodes", node)  # type: ignore[misc]
            log.info("presence_node_expired", node=node, users=len(members))

    async def close(self) -> None:
        for task in (self._task, self._flusher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        # Connected users were active until now.
        self._active |= set(self.local)
        with contextlib.suppress(Exception):
            await self.flush_active()
        if self.redis is not None and self.local:
            # A clean shutdown hands its users over at once instead of waiting for the sweep.
            with contextlib.suppress(RedisError, OSError):
                for key in list(self.local):
                    left = await self.redis.eval(_DROP, 1, self._hash(key), self.node_id)  # type: ignore[misc]
                    if int(left) == 0:
                        self._announce(key, False)
                await self.redis.delete(
                    self._users_key(self.node_id), f"{self.prefix}node:{self.node_id}"
                )
                await self.redis.srem(f"{self.prefix}nodes", self.node_id)  # type: ignore[misc]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
