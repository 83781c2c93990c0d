"""Wake-ups and ephemeral frames between server processes.

Three kinds of notices travel: "workspace W has new events" (after a commit; the receiver reads
the log itself, so a lost notice only delays delivery until the next poll), ephemeral frames
(`typing.*`, `presence.changed`: no seq, never replayed), and control notices for the other
hubs (a user's tokens were revoked, a JWT secret was retired: close the sockets concerned; a
lost one is made up for by the hub's periodic check against the database). Redis pub/sub
carries them between processes when `CARIOS_REDIS_URL` is set; otherwise they stay in this
process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import redis.asyncio as aioredis

from cariosan.obs.logging import get_logger

log = get_logger("cariosan.realtime")

OnWake = Callable[[uuid.UUID], None]
# (workspace, frame, channel_id or None for "every user named in user_ids", user_ids or None)
OnEphemeral = Callable[[uuid.UUID, dict[str, Any], str | None, list[str] | None], None]
OnReconnect = Callable[[], None]
OnControl = Callable[[dict[str, Any]], None]


class Bus(Protocol):
    kind: str

    def start(
        self,
        on_wake: OnWake,
        on_ephemeral: OnEphemeral,
        on_reconnect: OnReconnect,
        on_control: OnControl | None = None,
    ) -> None:
        """Begin delivering notices (from this process and, with Redis, from the others)."""

    def publish_control(self, message: dict[str, Any]) -> None:
        """A notice for the hubs of the other processes (this one acts on it itself).
        Never blocks, never raises."""

    def notify_events(self, workspace_ids: Iterable[uuid.UUID]) -> None:
        """After a commit: these workspaces have new events. Never blocks, never raises."""

    def publish(
        self,
        workspace_id: uuid.UUID,
        frame: dict[str, Any],
        *,
        channel_id: str | None = None,
        user_ids: list[str] | None = None,
    ) -> None:
        """Fan an ephemeral frame out to every process. Never blocks, never raises."""

    async def close(self) -> None: ...


class LocalBus:
    """One process: notices are calls."""

    kind = "memory"

    def __init__(self) -> None:
        self._on_wake: OnWake | None = None
        self._on_ephemeral: OnEphemeral | None = None

    def start(
        self,
        on_wake: OnWake,
        on_ephemeral: OnEphemeral,
        on_reconnect: OnReconnect,
        on_control: OnControl | None = None,
    ) -> None:
        self._on_wake, self._on_ephemeral = on_wake, on_ephemeral

    def publish_control(self, message: dict[str, Any]) -> None:
        # There is no other process.
        return

    def notify_events(self, workspace_ids: Iterable[uuid.UUID]) -> None:
        if self._on_wake is not None:
            for workspace_id in workspace_ids:
                self._on_wake(workspace_id)

    def publish(
        self,
        workspace_id: uuid.UUID,
        frame: dict[str, Any],
        *,
        channel_id: str | None = None,
        user_ids: list[str] | None = None,
    ) -> None:
        if self._on_ephemeral is not None:
            self._on_ephemeral(workspace_id, frame, channel_id, user_ids)

    async def close(self) -> None:
        self._on_wake = self._on_ephemeral = None


class RedisBus:
    """Redis pub/sub between processes; this process's own notices are handled directly.

    Channels: `{prefix}rt:wake` (message `node workspace`), `{prefix}rt:ephemeral` and
    `{prefix}rt:control` (JSON). The
    subscriber reconnects with backoff when Redis goes away and then wakes every dispatcher,
    since notices sent meanwhile are lost.
    """

    kind = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        self.node_id = uuid.uuid4().hex
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=15
        )
        self._wake_channel = f"{prefix}rt:wake"
        self._ephemeral_channel = f"{prefix}rt:ephemeral"
        self._control_channel = f"{prefix}rt:control"
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=10_000)
        self._on_wake: OnWake | None = None
        self._on_ephemeral: OnEphemeral | None = None
        self._on_reconnect: OnReconnect | None = None
        self._on_control: OnControl | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.subscribed = asyncio.Event()

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    def start(
        self,
        on_wake: OnWake,
        on_ephemeral: OnEphemeral,
        on_reconnect: OnReconnect,
        on_control: OnControl | None = None,
    ) -> None:
        self._on_wake, self._on_ephemeral, self._on_reconnect = on_wake, on_ephemeral, on_reconnect
        self._on_control = on_control
        self._tasks = [
            asyncio.create_task(self._listen(), name="cariosan-bus-listen"),
            asyncio.create_task(self._send(), name="cariosan-bus-send"),
        ]

    def notify_events(self, workspace_ids: Iterable[uuid.UUID]) -> None:
        for workspace_id in workspace_ids:
            if self._on_wake is not None:
                self._on_wake(workspace_id)
            self._enqueue(self._wake_channel, f"{self.node_id} {workspace_id}")

    def publish(
        self,
        workspace_id: uuid.UUID,
        frame: dict[str, Any],
        *,
        channel_id: str | None = None,
        user_ids: list[str] | None = None,
    ) -> None:
        if self._on_ephemeral is not None:
            self._on_ephemeral(workspace_id, frame, channel_id, user_ids)
        message = {
            "node": self.node_id,
            "ws": str(workspace_id),
            "frame": frame,
            "channel_id": channel_id,
            "user_ids": user_ids,
        }
        self._enqueue(self._ephemeral_channel, json.dumps(message, separators=(",", ":")))

    def publish_control(self, message: dict[str, Any]) -> None:
        body = {"node": self.node_id, **message}
        self._enqueue(self._control_channel, json.dumps(body, separators=(",", ":")))

    def _enqueue(self, channel: str, message: str) -> None:
        # Redis slow or gone: dropping a notice only delays delivery (dispatchers poll).
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait((channel, message))

    async def _send(self) -> None:
        while True:
            first = await self._outbox.get()
            batch = {first}
            while not self._outbox.empty() and len(batch) < 500:
                batch.add(self._outbox.get_nowait())
            try:
                pipe = self._client.pipeline(transaction=False)
                for channel, message in batch:
                    pipe.publish(channel, message)
                await pipe.execute()
            except Exception as exc:  # Redis away, or a bug: logged, and the loop goes on
                log.warning("bus_publish_failed", error=exc.__class__.__name__, exc_info=exc)
                await asyncio.sleep(0.5)

    async def _listen(self) -> None:
        delay = 0.2
        first = True
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(
                    self._wake_channel, self._ephemeral_channel, self._control_channel
                )
                self.subscribed.set()
                if not first:
                    log.info("bus_reconnected")
                    if self._on_reconnect is not None:
                        self._on_reconnect()
                first = False
                delay = 0.2
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None:
                        self._dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away, or a bug: logged, and the loop goes on
                self.subscribed.clear()
                log.warning("bus_disconnected", error=exc.__class__.__name__, exc_info=exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel = message["channel"].decode()
        data = message["data"].decode()
        try:
            if channel == self._wake_channel:
                node, _, workspace = data.partition(" ")
                if node != self.node_id and self._on_wake is not None:
                    self._on_wake(uuid.UUID(workspace))
            elif channel == self._ephemeral_channel:
                body = json.loads(data)
                if body["node"] != self.node_id and self._on_ephemeral is not None:
                    self._on_ephemeral(
                        uuid.UUID(body["ws"]), body["frame"], body["channel_id"], body["user_ids"]
                    )
            elif channel == self._control_channel:
                body = json.loads(data)
                if body["node"] != self.node_id and self._on_control is not None:
                    self._on_control(body)
        except (ValueError, KeyError, TypeError):
            log.warning("bus_bad_message", channel=channel)

    async def close(self) -> None:
        # Let the last notices (presence going offline) out, briefly.
        for _ in range(100):
            if not self._tasks or self._outbox.empty():
                break
            await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._client.aclose()
