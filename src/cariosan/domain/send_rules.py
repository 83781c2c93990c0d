"""Slow mode and freeze: what a channel's moderators impose on everyone else's sends.

Whoever may change a channel's cooldown and freeze (Action.CHANNEL_UPDATE: its owner and
moderators, workspace moderators and admins, the backend, also when it acts as a user) is
exempt from both: they moderate the channel, they are not moderated by it.

Slow mode keeps each member's last send on its member row (channel_members.last_sent_at), on
the database clock and in the send's own transaction: exact across nodes and Redis restarts, a
refused or failed send does not start a new wait, and channels without a cooldown never touch it.
"""

from __future__ import annotations

import math
from datetime import timedelta

import asyncpg

from cariosan.db import members
from cariosan.domain.access import ChannelAccess
from cariosan.domain.permissions import Action
from cariosan.errors import Forbidden, RateLimited, ValidationFailed

# Up to six hours, as Stream's slow mode: longer is a freeze, not a pace.
MAX_COOLDOWN_SECONDS = 6 * 3600


def valid_cooldown(cooldown_seconds: int | None) -> int:
    """The cooldown to store: None and 0 turn slow mode off."""
    if cooldown_seconds is None:
        return 0
    if isinstance(cooldown_seconds, bool) or not 0 <= cooldown_seconds <= MAX_COOLDOWN_SECONDS:
        raise ValidationFailed(
            f"cooldown_seconds must be between 0 (off) and {MAX_COOLDOWN_SECONDS}"
        )
    return cooldown_seconds


def exempt(access: ChannelAccess) -> bool:
    return access.allowed(Action.CHANNEL_UPDATE)


def check_not_frozen(access: ChannelAccess, doing: str) -> None:
    """FORBIDDEN in a frozen channel, except for its moderators (`doing`: "send", "react")."""
    if access.frozen and not exempt(access):
        raise Forbidden(f"the channel is frozen: only its moderators may {doing} until it thaws")


async def check_send(conn: asyncpg.Connection, access: ChannelAccess, user_id: str) -> None:
    """Freeze and slow mode for one new message of `user_id`, in the send's transaction (after
    the insert: a repeated send of an existing message id is never refused)."""
    if not access.frozen and access.cooldown_seconds <= 0:
        return
    if exempt(access):
        return
    check_not_frozen(access, "send")
    cooldown = access.cooldown_seconds
    wait = await members.take_send_slot(
        conn, access.caller.workspace_id, access.channel_id, user_id, cooldown
    )
    if wait is None:
        return
    seconds = max(1, math.ceil(wait.seconds))
    # Rounded up: a client that waits until the time shown is never refused again.
    allowed_at = (wait.allowed_at + timedelta(microseconds=999_999)).replace(microsecond=0)
    at = allowed_at.isoformat().replace("+00:00", "Z")
    raise RateLimited(
        f"slow mode: one message every {cooldown} s in this channel; "
        f"your next message is allowed in {seconds} s (at {at})",
        retry_after=seconds,
    )
