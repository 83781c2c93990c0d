"""Who may see and change a channel. Non-members learn nothing: they get NOT_FOUND, exactly as
if the channel did not exist."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from cariosan.db import members
from cariosan.domain.auth import Caller
from cariosan.domain.ids import customer_id
from cariosan.errors import Forbidden, NotFound

# Channel roles: the creator owns the channel; owners may manage it like an admin.
OWNER = "owner"
MEMBER = "member"


@dataclass(frozen=True)
class ChannelAccess:
    channel_id: str
    type: str
    member_role: str | None
    caller: Caller

    @property
    def is_member(self) -> bool:
        return self.member_role is not None

    @property
    def can_manage(self) -> bool:
        """Change the channel and its members: the backend, admin users, the channel's owner."""
        return self.caller.is_admin or self.member_role == OWNER

    def require_manage(self) -> None:
        if not self.can_manage:
            raise Forbidden("only the channel's owner or an admin may do this")


async def channel_access(
    conn: asyncpg.Connection, caller: Caller, channel_id: str, *, moderation: bool = False
) -> ChannelAccess:
    """The caller's access to a channel it may see, else NOT_FOUND.

    Members see their channels. The backend (acting as itself) sees every channel. With
    `moderation`, the backend and admin users reach any channel of the workspace, also when
    acting as a user who is not a member.
    """
    customer_id("channel_id", channel_id)
    row = await members.channel_access(conn, caller.workspace_id, channel_id, caller.user_id)
    if row is None:
        raise NotFound(f"no such channel: {channel_id}")
    access = ChannelAccess(row.channel_id, row.type, row.member_role, caller)
    if access.is_member:
        return access
    if caller.is_server and caller.user_id is None:
        return access
    if moderation and caller.is_admin:
        return access
    raise NotFound(f"no such channel: {channel_id}")
