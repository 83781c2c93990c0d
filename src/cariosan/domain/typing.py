"""Typing indicators: a member of a channel says it is (no longer) typing.

Ephemeral: no seq, never persisted or replayed. The signal itself (a marker with a TTL and the
fan-out to the channel's members) is the realtime layer's `TypingSignals`; the rule (only a
member of the channel, acting as a user) is here. `POST /v1/channels/{id}/typing` and the
WebSocket's `typing.start`/`typing.stop` frames both come through `set_typing`.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from cariosan.db.pool import Database
from cariosan.domain.access import channel_access
from cariosan.domain.auth import Caller
from cariosan.errors import ValidationFailed

# A typing.start not refreshed within this many seconds ends with a typing.stop.
TYPING_SECONDS = 5.0


class TypingSignals(Protocol):
    async def start(self, workspace_id: uuid.UUID, channel_id: str, user_id: str) -> None: ...

    async def stop(self, workspace_id: uuid.UUID, channel_id: str, user_id: str) -> None: ...


async def set_typing(
    database: Database, signals: TypingSignals, caller: Caller, channel_id: str, state: str
) -> None:
    """`state` is "start" or "stop"; NOT_FOUND unless the caller's user is in the channel."""
    async with database.connection() as conn:
        await channel_access(conn, caller, channel_id)
    user_id = caller.require_user()
    if state not in ("start", "stop"):
        raise ValidationFailed("state must be 'start' or 'stop'")
    if state == "start":
        await signals.start(caller.workspace_id, channel_id, user_id)
    else:
        await signals.stop(caller.workspace_id, channel_id, user_id)


async def start_typing(
    database: Database, signals: TypingSignals, caller: Caller, channel_id: str
) -> None:
    await set_typing(database, signals, caller, channel_id, "start")


async def stop_typing(
    database: Database, signals: TypingSignals, caller: Caller, channel_id: str
) -> None:
    await set_typing(database, signals, caller, channel_id, "stop")
