"""Who may see and change a channel. Non-members learn nothing: they get NOT_FOUND, exactly as
if the channel did not exist."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from cariosan.db import members
from cariosan.db.bans import ActiveBan
from cariosan.domain import permissions
from cariosan.domain.auth import Caller
from cariosan.domain.ids import customer_id
from cariosan.domain.permissions import MEMBER, OWNER, Action, Who
from cariosan.errors import NotFound

__all__ = ["MEMBER", "OWNER", "ChannelAccess", "channel_access"]


@dataclass(frozen=True)
class ChannelAccess:
    channel_id: str
    type: str
    member_role: str | None
    caller: Caller
    # The caller's user's active ban of the workspace or this channel (domain/bans.py).
    ban: ActiveBan | None = None
    # Slow mode (0: off) and freeze (domain/moderation.py).
    cooldown_seconds: int = 0
    frozen: bool = False

    @property
    def is_member(self) -> bool:
        return self.member_role is not None

    def capacities(
        self, *, author_id: str | None = None, subject_id: str | None = None
    ) -> set[Who]:
        """Every capacity the caller acts in here: its workspace role, its channel role, the
        author of the message acted on (`author_id`), the user acted on (`subject_id`)."""
        found = self.caller.capacities() | permissions.channel_capacities(self.member_role)
        user_id = self.caller.user_id
        if user_id is not None and user_id == author_id:
            found.add(Who.AUTHOR)
        if user_id is not None and user_id == subject_id:
            found.add(Who.SELF)
        return found

    def allowed(
        self, action: Action, *, author_id: str | None = None, subject_id: str | None = None
    ) -> bool:
        capacities = self.capacities(author_id=author_id, subject_id=subject_id)
        return permissions.allowed(action, self.type, capacities)

    def require(
        self, action: Action, *, author_id: str | None = None, subject_id: str | None = None
    ) -> None:
        """FORBIDDEN unless the permission table lets the caller do `action` here."""
        capacities = self.capacities(author_id=author_id, subject_id=subject_id)
        permissions.require(action, self.type, capacities)


async def channel_access(
    conn: asyncpg.Connection, caller: Caller, channel_id: str, *, moderation: bool = False
) -> ChannelAccess:
    """The caller's access to a channel it may see, else NOT_FOUND.

    Members see their channels. The backend (acting as itself) sees every channel. With
    `moderation`, the backend and workspace moderators and admins reach any channel of the
    workspace, also when acting as a user who is not a member.
    """
    customer_id("channel_id", channel_id)
    row = await members.channel_access(conn, caller.workspace_id, channel_id, caller.user_id)
    if row is None:
        raise NotFound(f"no such channel: {channel_id}")
    access = ChannelAccess(
        row.channel_id,
        row.type,
        row.member_role,
        caller,
        ban=row.ban,
        cooldown_seconds=row.cooldown_seconds,
        frozen=row.frozen,
    )
    if access.is_member:
        return access
    if caller.is_server and caller.user_id is None:
        return access
    if moderation and caller.is_workspace_mod:
        return access
    raise NotFound(f"no such channel: {channel_id}")
