"""One live WebSocket's delivery state: what it has been sent, and its bounded send queue.

Persisted events are sent in seq order, each at most once (only a seq above the last one sent
goes out). While the connection waits for its first frame, or replays a `resume`, live events
are held back and released afterwards, so the seam between catch-up and live has neither a gap
nor a duplicate. A client that does not keep up overflows its queue and is closed with
`TOO_SLOW`: it reconnects and resumes from its last seq, and nobody else waits for it.

With a `writer` (realtime/wire.py), a frame is written to the socket's transport at once when
nothing is queued before it and the transport's buffer is below its high-water mark; otherwise
it is queued, and the gateway's send task writes the queue in order as the buffer drains. So the
order of frames never changes, and the fan-out of one event costs no task switch per socket.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from cariosan.realtime.wire import text_frame

# Close codes (API.md): the client should reconnect and `resume` after TOO_SLOW and GOING_AWAY.
UNAUTHORIZED = 4001
# The user is banned from the workspace (domain/bans.py): reconnecting is refused while it lasts.
BANNED = 4003
RATE_LIMITED = 4008
TOO_SLOW = 4009
# A user already has `max_sockets_per_user` open sockets on this server: the newest is refused.
TOO_MANY_SOCKETS = 4029
GOING_AWAY = 1001
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013

# Pages of (seq, wire JSON) after a seq, oldest first, until caught up.
Pages = Callable[[int], AsyncIterator[list[tuple[int, str]]]]

# Live events held back during a replay before the connection is told to come back later.
MAX_HELD = 10_000


class FrameWriter(Protocol):
    """Whole-frame writes to one socket (realtime/wire.py FrameWriterProtocol)."""

    def is_open(self) -> bool: ...

    def can_write_now(self) -> bool: ...

    async def until_writable(self) -> None: ...

    def write_frame(self, frame: bytes) -> None: ...


class SocketQuota:
    """Open sockets per (workspace, user) in this process, at most `limit` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[tuple[uuid.UUID, str], int] = {}

    def acquire(self, workspace_id: uuid.UUID, user_id: str) -> bool:
        key = (workspace_id, user_id)
        count = self._open.get(key, 0)
        if count >= self.limit:
            return False
        self._open[key] = count + 1
        return True

    def release(self, workspace_id: uuid.UUID, user_id: str) -> None:
        key = (workspace_id, user_id)
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)


class LiveConnection:
    def __init__(
        self,
        workspace_id: uuid.UUID,
        user_id: str,
        *,
        queue_size: int,
        on_overflow: Callable[[LiveConnection], None] | None = None,
        on_other_sent: Callable[[], None] | None = None,
        issued_at_us: int = 0,
        key_id: str = "",
    ) -> None:
        self.workspace_id = workspace_id
        self.user_id = user_id
        # Of the token the socket authenticated with: revocations and retired secrets close it.
        self.issued_at_us = issued_at_us
        self.key_id = key_id
        # When it authenticated (monotonic): a ban learnt after this closes it on joining.
        self.opened_at = time.monotonic()
        self.sent_seq = 0
        self.queue: asyncio.Queue[tuple[str, float | None]] = asyncio.Queue(maxsize=queue_size)
        self.closed = asyncio.Event()
        self.close_code = 1000
        self.close_reason = ""
        self._held: list[tuple[int, str, float | None]] = []
        self._holding = True
        self._on_overflow = on_overflow
        self._on_other_sent = on_other_sent
        # Set by the gateway when the server offers whole-frame writes for this socket.
        self.writer: FrameWriter | None = None
        # The send task holds a frame taken from the queue and not written yet.
        self.sending = False

    @property
    def holding(self) -> bool:
        return self._holding

    def start_at(self, seq: int) -> None:
        """Live delivery continues after `seq` (the `latest_seq` of `connection.ready`)."""
        self.sent_seq = seq

    def close(self, code: int, reason: str) -> None:
        if not self.closed.is_set():
            self.close_code, self.close_reason = code, reason
            self.closed.set()

    def send_frame(self, text: str) -> None:
        """Send or queue a frame without a seq (ready, pong, typing, presence)."""
        if self._push(text, None) and self._on_other_sent is not None:
            self._on_other_sent()

    def deliver(
        self, seq: int, text: str, created: float | None = None, frame: bytes | None = None
    ) -> bool:
        """A live persisted event (its wire JSON, and its whole frame if already built), from
        the workspace's dispatcher. True when it was written to the socket at once."""
        if self.closed.is_set():
            return False
        if self._holding:
            self._held.append((seq, text, created))
            if len(self._held) > MAX_HELD:
                self._overflow()
        elif seq > self.sent_seq:
            self.sent_seq = seq
            return self._push(text, created, frame)
        return False

    def release(self) -> None:
        """Stop holding live events back: send the held ones not sent yet, in order."""
        if not self._holding:
            return
        self._holding = False
        held, self._held = self._held, []
        for seq, text, created in held:
            self.deliver(seq, text, created)

    async def replay(self, after_seq: int, pages: Pages) -> None:
        """Send every event after `after_seq` from `pages` (catch-up), then go live.

        If reading fails the connection must be closed by the caller: releasing the held live
        events then would leave a gap.
        """
        self._holding = True
        self.sent_seq = after_seq
        async for page in pages(after_seq):
            for seq, text in page:
                if seq > self.sent_seq:
                    self.sent_seq = seq
                    # Catch-up waits for the client (a full queue is not an overflow here).
                    await self.queue.put((text, None))
            if self.closed.is_set():
                return
        self.release()

    async def write_queued(self, writer: FrameWriter, text: str) -> bool:
        """The send task's half of the order above: write a frame taken from the queue once
        the socket has room. Nothing overtakes it meanwhile. False if the socket closed first."""
        self.sending = True
        try:
            await writer.until_writable()
            if not writer.is_open():
                return False
            writer.write_frame(text_frame(text.encode()))
            return True
        finally:
            self.sending = False

    def _push(self, text: str, created: float | None, frame: bytes | None = None) -> bool:
        """Write the frame now if nothing waits before it; else queue it. True if written."""
        if self.closed.is_set():
            return False
        writer = self.writer
        if (
            writer is not None
            and not self.sending
            and self.queue.empty()
            and writer.can_write_now()
        ):
            writer.write_frame(frame if frame is not None else text_frame(text.encode()))
            return True
        try:
            self.queue.put_nowait((text, created))
        except asyncio.QueueFull:
            self._overflow()
        return False

    def _overflow(self) -> None:
        if not self.closed.is_set():
            self.close(TOO_SLOW, "too slow: reconnect and resume")
            if self._on_overflow is not None:
                self._on_overflow(self)
