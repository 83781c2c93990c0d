"""The live hub of one server process: a dispatcher per workspace with connected users.

A dispatcher keeps a cursor into its workspace's event log and, on each wake-up (a notice from
a sequencer that numbered new events, in this process or another through the bus) or every
`POLL_SECONDS`, reads the new events: one page per wake-up per workspace, however many
connections. Each event is encoded once and handed to the local connections of its audience
(domain/live.py decides who). Live delivery and catch-up read the same log, so a lost notice
only delays an event, never loses it.

Revocation: a deleted user, a `revoke-tokens` call or a retired JWT secret closes the sockets
concerned with 4001 on every node. The node that made the change acts at once and tells the
others over the bus; a notice lost with Redis is made up for by a check of every open socket
against the database every `check_seconds` and right after the bus reconnects. A revocation is
also remembered for a while, so that a socket that authenticated just before it but registers
just after it is closed too.

User mutes (domain/mutes.py): a dispatcher knows whom each of its connected users mutes (read
when the user's first socket joins, read again when a node says the user's mutes changed). A
message event goes out encoded once for everyone, plus once more with `muted: true` only when
some recipient here mutes its author: a dict lookup per recipient, no query on the fan-out path.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cariosan.db.events import EventRow
from cariosan.db.pool import Database
from cariosan.domain import live
from cariosan.domain.events import encode, wire_event
from cariosan.domain.jwt_keys import KeyRing
from cariosan.obs.logging import get_logger
from cariosan.obs.metrics import Metrics
from cariosan.realtime.bus import Bus
from cariosan.realtime.connection import BANNED, GOING_AWAY, UNAUTHORIZED, LiveConnection
from cariosan.realtime.wire import text_frame
from cariosan.waiting import wait_set

log = get_logger("cariosan.realtime")

POLL_SECONDS = 1.0
# A workspace's dispatcher stops this long after its last connection left.
LINGER_SECONDS = 30.0
# A revocation is remembered this long: longer than authenticating and joining can take.
REVOCATION_MEMORY_SECONDS = 120.0
REVOKED = "the token was revoked: get a new one"
RETIRED = "the token's signing secret was retired: get a new token"
BANNED_REASON = "banned from the workspace"


class Dispatcher:
    """Reads one workspace's log and fans its events out to this process's connections."""

    def __init__(self, hub: Hub, workspace_id: uuid.UUID) -> None:
        self.hub = hub
        self.workspace_id = workspace_id
        self.cursor = 0
        self.audience = live.Audience()
        self.users: dict[str, set[LiveConnection]] = {}
        # Connected user -> author it mutes -> end of the mute (POSIX time; None: no end).
        self.mutes: dict[str, dict[str, float | None]] = {}
        self.ready = asyncio.Event()
        self.joining = 0
        self._wake = asyncio.Event()
        self._idle_since = time.monotonic()
        self.task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def add(self, connection: LiveConnection) -> int:
        """Register a connection; it receives every event after the returned seq."""
        self.users.setdefault(connection.user_id, set()).add(connection)
        connection.start_at(self.cursor)
        return self.cursor

    def remove(self, connection: LiveConnection) -> None:
        conns = self.users.get(connection.user_id)
        if conns is not None:
            conns.discard(connection)
            if not conns:
                del self.users[connection.user_id]
                self.mutes.pop(connection.user_id, None)
        if not self.users:
            self._idle_since = time.monotonic()

    async def run(self) -> None:
        delay = 0.2
        while True:
            try:
                self.cursor, self.audience = await live.open_stream(
                    self.hub.database(), self.workspace_id
                )
                break
            except Exception as exc:
                log.warning("dispatcher_start_failed", error=exc.__class__.__name__, exc_info=exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.ready.set()
        while True:
            await wait_set(self._wake, POLL_SECONDS)
            self._wake.clear()
            if self._should_stop():
                return
            try:
                await self.pump()
            except Exception as exc:
                log.warning("dispatcher_read_failed", error=exc.__class__.__name__, exc_info=exc)
                await asyncio.sleep(POLL_SECONDS)

    def _should_stop(self) -> bool:
        idle = not self.users and self.joining == 0
        if idle and time.monotonic() - self._idle_since > LINGER_SECONDS:
            self.hub.forget(self)
            return True
        return False

    async def pump(self) -> None:
        """Fan out every event after the cursor, page by page, in order."""
        while True:
            page = await live.read_stream(
                self.hub.database(), self.workspace_id, self.cursor, self.hub.page_size
            )
            for row in page.events:
                self.fan_out(row)
            self.cursor = max(self.cursor, page.last_seq)
            if not page.full:
                return

    def fan_out(self, row: EventRow) -> None:
        plain: _Encoded | None = None
        muted: _Encoded | None = None
        created = row.created_at.timestamp()
        author = _author(row) if self.mutes else None
        written = 0
        for user_id in self.audience.recipients(row):
            if row.visible_to is not None and user_id != row.visible_to:
                continue  # another user's shadow-banned message (domain/bans.py)
            conns = self.users.get(user_id)
            if not conns:
                continue
            if author is not None and self._mutes(user_id, author):
                if muted is None:
                    muted = _Encoded(_marked_muted(wire_event(row)))
                encoded = muted
            else:
                if plain is None:
                    plain = _Encoded(wire_event(row))
                encoded = plain
            for connection in list(conns):
                written += connection.deliver(row.seq, encoded.text, created, encoded.frame)
        self.cursor = row.seq
        if written:
            # Counted once per event: per socket, this would cost as much as the writes.
            self.hub.sent_events.inc(written)
            self.hub.metrics.ws_fanout_latency.observe(max(0.0, time.time() - created))

    def _mutes(self, user_id: str, author: str) -> bool:
        muted = self.mutes.get(user_id)
        if not muted or author not in muted:
            return False
        ends = muted[author]
        return ends is None or ends > time.time()

    def send_ephemeral(
        self, frame: dict[str, Any], channel_id: str | None, user_ids: list[str] | None
    ) -> None:
        """A frame without seq to the members of `channel_id`, to `user_ids`, or (neither
        given) to the users who share a channel with the frame's `user_id` (presence)."""
        targets: set[str] = set(user_ids or ())
        if channel_id is not None:
            targets |= self.audience.members.get(channel_id, set())
        elif user_ids is None and isinstance(frame.get("user_id"), str):
            targets = self.audience.co_members(frame["user_id"])
        text: str | None = None
        for user_id in targets:
            for connection in list(self.users.get(user_id, ())):
                text = text or encode(frame)
                connection.send_frame(text)


class _Encoded:
    """An event's wire JSON, and its WebSocket frame: both made once, for every socket."""

    __slots__ = ("frame", "text")

    def __init__(self, event: dict[str, Any]) -> None:
        self.text = encode(event)
        self.frame = text_frame(self.text.encode())


def _author(row: EventRow) -> str | None:
    """The author of the message an event carries, if it carries one."""
    message = row.payload.get("message")
    if isinstance(message, dict) and isinstance(message.get("user_id"), str):
        return str(message["user_id"])
    return None


def _marked_muted(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "message": {**event["message"], "muted": True}}


class Hub:
    """Every dispatcher and live connection of this process."""

    def __init__(
        self,
        database: Callable[[], Database],
        bus: Bus,
        metrics: Metrics,
        *,
        send_queue_size: int = 1000,
        page_size: int = live.STREAM_PAGE,
        keyring: KeyRing | None = None,
        check_seconds: float = 10.0,
    ) -> None:
        # A page is fanned out without a pause: a queue smaller than a page could overflow for
        # a client that keeps up.
        self.database = database
        self.bus = bus
        self.metrics = metrics
        self.sent_events = metrics.ws_events_sent.labels("event")
        self._sent_other = metrics.ws_events_sent.labels("other")
        self.send_queue_size = send_queue_size
        self.page_size = page_size
        self.dispatchers: dict[uuid.UUID, Dispatcher] = {}
        self.connections: set[LiveConnection] = set()
        self.keyring = keyring
        self.check_seconds = check_seconds
        # (workspace, user) -> (tokens minted before this are refused, when it was learnt)
        self._revocations: OrderedDict[tuple[uuid.UUID, str], tuple[int, float]] = OrderedDict()
        self._checker: asyncio.Task[None] | None = None
        self._check_now = asyncio.Event()
        # (workspace, user) -> when a workspace ban of the user was learnt (monotonic).
        self._bans: OrderedDict[tuple[uuid.UUID, str], float] = OrderedDict()
        # Reloads of users' mutes under way (kept so that they are not garbage-collected).
        self._mute_reloads: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.bus.start(self.wake, self.on_ephemeral, self._bus_reconnected, self.on_control)
        self._checker = asyncio.create_task(self._check_loop(), name="cariosan-revocation-check")

    def _bus_reconnected(self) -> None:
        self.wake_all()
        # Revocation notices sent meanwhile are lost: check the open sockets now.
        self._check_now.set()

    # ---- revocation ------------------------------------------------------------------------

    def revoked(self, workspace_id: uuid.UUID, user_id: str, valid_after_us: int) -> None:
        """After a commit: the user's tokens minted before `valid_after_us` are refused. Closes
        its sockets here and tells the other nodes."""
        self._revoke(workspace_id, user_id, valid_after_us)
        self.bus.publish_control(
            {"kind": "revoke", "ws": str(workspace_id), "user": user_id, "after": valid_after_us}
        )

    def banned(self, workspace_id: uuid.UUID, user_id: str) -> None:
        """After a commit: the user is banned from the workspace (domain/bans.py). Closes its
        sockets here with 4003 and tells the other nodes."""
        self._ban(workspace_id, user_id)
        self.bus.publish_control({"kind": "ban", "ws": str(workspace_id), "user": user_id})

    def _ban(self, workspace_id: uuid.UUID, user_id: str) -> None:
        now = time.monotonic()
        self._bans.pop((workspace_id, user_id), None)
        self._bans[workspace_id, user_id] = now
        while self._bans:
            _, learnt = next(iter(self._bans.items()))
            if now - learnt <= REVOCATION_MEMORY_SECONDS:
                break
            self._bans.popitem(last=False)
        dispatcher = self.dispatchers.get(workspace_id)
        for connection in list(dispatcher.users.get(user_id, ()) if dispatcher else ()):
            connection.close(BANNED, BANNED_REASON)

    # ---- user mutes ------------------------------------------------------------------------

    def mutes_changed(self, workspace_id: uuid.UUID, user_id: str) -> None:
        """After a commit: the user muted or unmuted someone. Its dispatchers on every node
        read its mutes again."""
        self._reload_mutes(workspace_id, user_id)
        self.bus.publish_control({"kind": "mutes", "ws": str(workspace_id), "user": user_id})

    def _reload_mutes(self, workspace_id: uuid.UUID, user_id: str) -> None:
        dispatcher = self.dispatchers.get(workspace_id)
        if dispatcher is None or user_id not in dispatcher.users:
            return
        task = asyncio.create_task(self._load_mutes(dispatcher, user_id))
        self._mute_reloads.add(task)
        task.add_done_callback(self._mute_reloads.discard)

    async def _load_mutes(self, dispatcher: Dispatcher, user_id: str) -> None:
        try:
            found = await live.muted_authors(self.database(), dispatcher.workspace_id, user_id)
        except Exception as exc:  # live marks wait for the next change; reads stay right
            log.warning("mutes_load_failed", error=exc.__class__.__name__, exc_info=exc)
            return
        if found and user_id in dispatcher.users:
            dispatcher.mutes[user_id] = found
        else:
            dispatcher.mutes.pop(user_id, None)

    def keys_changed(self) -> None:
        """This node retired JWT secrets at boot: the other nodes re-read which ones."""
        self.bus.publish_control({"kind": "keys"})

    def on_control(self, message: dict[str, Any]) -> None:
        try:
            if message["kind"] == "revoke":
                after = message["after"]
                if not isinstance(after, int) or not isinstance(message["user"], str):
                    raise TypeError("bad revoke notice")
                self._revoke(uuid.UUID(message["ws"]), message["user"], after)
            elif message["kind"] == "ban":
                if not isinstance(message["user"], str):
                    raise TypeError("bad ban notice")
                self._ban(uuid.UUID(message["ws"]), message["user"])
            elif message["kind"] == "keys":
                self._check_now.set()
            elif message["kind"] == "mutes":
                if not isinstance(message["user"], str):
                    raise TypeError("bad mutes notice")
                self._reload_mutes(uuid.UUID(message["ws"]), message["user"])
        except (KeyError, TypeError, ValueError):
            log.warning("bus_bad_control", kind=str(message.get("kind"))[:32])

    def _revoke(self, workspace_id: uuid.UUID, user_id: str, valid_after_us: int) -> None:
        key = (workspace_id, user_id)
        now = time.monotonic()
        known = self._revocations.pop(key, None)
        floor = max(valid_after_us, known[0]) if known is not None else valid_after_us
        self._revocations[key] = (floor, now)
        while self._revocations:
            _, (_, learnt) = next(iter(self._revocations.items()))
            if now - learnt <= REVOCATION_MEMORY_SECONDS:
                break
            self._revocations.popitem(last=False)
        dispatcher = self.dispatchers.get(workspace_id)
        for connection in list(dispatcher.users.get(user_id, ()) if dispatcher else ()):
            if connection.issued_at_us < floor:
                connection.close(UNAUTHORIZED, REVOKED)

    def _banned_on_join(self, connection: LiveConnection) -> bool:
        """Banned after the socket authenticated (so the authentication missed it)."""
        learnt = self._bans.get((connection.workspace_id, connection.user_id))
        return learnt is not None and learnt >= connection.opened_at

    def _refused_on_join(self, connection: LiveConnection) -> str | None:
        known = self._revocations.get((connection.workspace_id, connection.user_id))
        if known is not None and connection.issued_at_us < known[0]:
            return REVOKED
        if self.keyring is not None and self.keyring.is_retired(connection.key_id):
            return RETIRED
        return None

    async def _check_loop(self) -> None:
        while True:
            await wait_set(self._check_now, self.check_seconds)
            self._check_now.clear()
            try:
                await self.check_connections()
            except Exception as exc:  # the database away, or a bug: logged, and checked again
                log.warning("revocation_check_failed", error=exc.__class__.__name__, exc_info=exc)

    async def check_connections(self) -> None:
        """Close every open socket whose token no longer authenticates (see the docstring)."""
        if self.keyring is not None:
            await self.keyring.refresh(self.database())
            for connection in list(self.connections):
                if self.keyring.is_retired(connection.key_id):
                    connection.close(UNAUTHORIZED, RETIRED)
        for workspace_id, dispatcher in list(self.dispatchers.items()):
            conns = [c for users in dispatcher.users.values() for c in users]
            if not conns:
                continue
            refused = await live.revoked_sessions(
                self.database(), workspace_id, [(c.user_id, c.issued_at_us) for c in conns]
            )
            for connection in conns:
                if (connection.user_id, connection.issued_at_us) in refused:
                    connection.close(UNAUTHORIZED, REVOKED)
            # A ban notice lost with Redis: the database says who is banned now.
            banned = await live.banned_users(
                self.database(), workspace_id, sorted({c.user_id for c in conns})
            )
            for connection in conns:
                if connection.user_id in banned:
                    connection.close(BANNED, BANNED_REASON)

    def wake(self, workspace_id: uuid.UUID) -> None:
        dispatcher = self.dispatchers.get(workspace_id)
        if dispatcher is not None:
            dispatcher.wake()

    def wake_all(self) -> None:
        for dispatcher in self.dispatchers.values():
            dispatcher.wake()

    def on_ephemeral(
        self,
        workspace_id: uuid.UUID,
        frame: dict[str, Any],
        channel_id: str | None,
        user_ids: list[str] | None,
    ) -> None:
        dispatcher = self.dispatchers.get(workspace_id)
        if dispatcher is not None and dispatcher.ready.is_set():
            dispatcher.send_ephemeral(frame, channel_id, user_ids)

    def new_connection(
        self, workspace_id: uuid.UUID, user_id: str, *, issued_at_us: int = 0, key_id: str = ""
    ) -> LiveConnection:
        return LiveConnection(
            workspace_id,
            user_id,
            queue_size=self.send_queue_size,
            on_overflow=self._overflowed,
            on_other_sent=self._sent_other.inc,
            issued_at_us=issued_at_us,
            key_id=key_id,
        )

    def _overflowed(self, connection: LiveConnection) -> None:
        self.metrics.ws_slow_consumers.inc()
        log.info("ws_slow_consumer_dropped", user_id=connection.user_id)

    async def join(
        self, connection: LiveConnection, first_frame: Callable[[int], str] | None = None
    ) -> int:
        """Register a connection with its workspace's dispatcher; returns its `latest_seq`.

        `first_frame(latest_seq)` is queued before anything else can reach the connection.
        """
        dispatcher = self.dispatchers.get(connection.workspace_id)
        if dispatcher is None:
            dispatcher = Dispatcher(self, connection.workspace_id)
            self.dispatchers[connection.workspace_id] = dispatcher
            dispatcher.task = asyncio.create_task(
                dispatcher.run(), name=f"cariosan-dispatch-{connection.workspace_id}"
            )
        dispatcher.joining += 1
        try:
            await dispatcher.ready.wait()
        finally:
            dispatcher.joining -= 1
        if connection.user_id not in dispatcher.users:
            await self._load_mutes_before_join(dispatcher, connection.user_id)
        self.connections.add(connection)
        self.metrics.ws_connections.set(len(self.connections))
        latest = dispatcher.add(connection)
        refused = self._refused_on_join(connection)
        if self._banned_on_join(connection):
            connection.close(BANNED, BANNED_REASON)
        elif refused is not None:
            # Revoked between authenticating and registering: never a frame, closed at once.
            connection.close(UNAUTHORIZED, refused)
        elif first_frame is not None:
            connection.send_frame(first_frame(latest))
        return latest

    async def _load_mutes_before_join(self, dispatcher: Dispatcher, user_id: str) -> None:
        """The first socket of a user: read whom it mutes (a failure leaves live events
        unmarked for it; REST reads and catch-up still mark them)."""
        try:
            found = await live.muted_authors(self.database(), dispatcher.workspace_id, user_id)
        except Exception as exc:
            log.warning("mutes_load_failed", error=exc.__class__.__name__, exc_info=exc)
            return
        if found:
            dispatcher.mutes[user_id] = found

    def leave(self, connection: LiveConnection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            self.metrics.ws_connections.set(len(self.connections))
        dispatcher = self.dispatchers.get(connection.workspace_id)
        if dispatcher is not None:
            dispatcher.remove(connection)

    def forget(self, dispatcher: Dispatcher) -> None:
        if self.dispatchers.get(dispatcher.workspace_id) is dispatcher:
            del self.dispatchers[dispatcher.workspace_id]

    async def close_connections(self, wait_seconds: float = 3.0) -> None:
        """Ask every connection to close (clients reconnect elsewhere and resume); wait a bit."""
        for connection in list(self.connections):
            connection.close(GOING_AWAY, "server shutting down: reconnect and resume")
        for _ in range(int(wait_seconds / 0.05)):
            if not self.connections:
                break
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        tasks = [d.task for d in self.dispatchers.values() if d.task is not None]
        if self._checker is not None:
            tasks.append(self._checker)
            self._checker = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.dispatchers.clear()
        await self.bus.close()
