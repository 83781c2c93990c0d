"""The audit log: every moderation and admin action, who did it to whom, when and why.

An entry is written in the transaction of the action it records, so there is never an action
without its entry or an entry of an action that rolled back. Each entry is also the webhook
event `audit.recorded` (for the backend and webhooks only: no user's socket receives it).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec

from cariosan.db import audit as rows
from cariosan.db.events import append_event
from cariosan.db.pool import Database
from cariosan.domain import cursors, permissions
from cariosan.domain.ids import customer_id, time_ordered_id
from cariosan.domain.permissions import Action
from cariosan.errors import ValidationFailed

if TYPE_CHECKING:  # domain/auth imports domain/workspaces, which records rotations here
    from cariosan.domain.auth import Caller

# What the log records (the `action` of an entry).
ROLE_CHANGED = "user.role_changed"
MEMBER_ROLE_CHANGED = "member.role_changed"
USER_BANNED = "user.banned"
USER_UNBANNED = "user.unbanned"
FLAG_RESOLVED = "flag.resolved"
MESSAGE_DELETED = "message.deleted"  # by someone other than its author
CHANNEL_UPDATED = "channel.moderated"  # cooldown or freeze changed
MESSAGE_PINNED = "message.pinned"
MESSAGE_UNPINNED = "message.unpinned"
TOKENS_REVOKED = "user.tokens_revoked"
USER_EXPORTED = "user.exported"
USER_DELETED = "user.deleted"
SECRET_ROTATED = "secret.rotated"

BACKEND = "backend"
OPERATOR = "operator"
MAX_PAGE = 200
MAX_REASON = 1000


class AuditEntry(msgspec.Struct):
    id: str
    actor: str
    action: str
    target: str | None
    reason: str | None
    data: dict[str, Any]
    created_at: str


def actor_of(caller: Caller) -> str:
    """The user acted as, else "backend"."""
    return caller.user_id if caller.user_id is not None else BACKEND


def valid_reason(reason: str | None) -> str | None:
    if reason is not None and len(reason) > MAX_REASON:
        raise ValidationFailed(f"reason must have at most {MAX_REASON} characters")
    return reason


def entry_view(row: rows.AuditRow) -> AuditEntry:
    return AuditEntry(
        id=str(row.id),
        actor=row.actor,
        action=row.action,
        target=row.target,
        reason=row.reason,
        data=row.data,
        created_at=row.created_at.isoformat().replace("+00:00", "Z"),
    )


async def record(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    *,
    actor: str,
    action: str,
    target: str | None,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an entry in the caller's transaction, and its `audit.recorded` event."""
    row = await rows.append(
        conn,
        workspace_id,
        time_ordered_id(),
        actor=actor,
        action=action,
        target=target,
        reason=valid_reason(reason),
        data=data or {},
    )
    entry = entry_view(row)
    await append_event(conn, workspace_id, "audit.recorded", {"entry": msgspec.to_builtins(entry)})
    return entry


async def read(
    database: Database,
    workspace_id: uuid.UUID,
    *,
    actor: str | None,
    action: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[AuditEntry], str | None]:
    """A page of the log, newest first, and the cursor of the next page."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}")
    if actor is not None:
        customer_id("actor", actor)
    before = cursors.decode_with_uuid(cursor) if cursor else None
    async with database.connection() as conn:
        found = await rows.page(
            conn, workspace_id, actor=actor, action=action, before=before, limit=limit + 1
        )
    page = found[:limit]
    more = len(found) > limit
    next_cursor = cursors.encode(page[-1].created_at, str(page[-1].id)) if more else None
    return [entry_view(r) for r in page], next_cursor


async def read_for(
    database: Database,
    caller: Caller,
    *,
    actor: str | None,
    action: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[AuditEntry], str | None]:
    """The log for the backend and admin users (domain/permissions.py)."""
    permissions.require(Action.AUDIT_READ, permissions.WORKSPACE, caller.capacities())
    return await read(
        database, caller.workspace_id, actor=actor, action=action, limit=limit, cursor=cursor
    )
