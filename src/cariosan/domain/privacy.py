"""Privacy (issue 14, point 7): everything stored about a user as one document (the export),
and erasing it from every table, event, webhook body and the attachment store (the hard
delete, called by domain/users.delete_user).

Tables added later that hold a user's data (bans, mutes, blocks, flags, ...) join both by
appending to EXPORT_SECTIONS (what the export shows under its name) and ERASE_STEPS (what the
hard delete runs in its transaction); tests/integration/test_privacy.py proves, by searching
the whole database dump and the bucket for a marker, that nothing is left behind.

Decisions:
- Other users' messages keep their text (it is theirs), but the deleted user's id leaves their
  mention lists: an id can be personal (an e-mail), and a mention of nobody means nothing.
- Event payloads and audit entries are rewritten, not dropped, where they are about others too
  (a channel's member list, a moderator's action): the user's id, name and image URL become
  null, and a list entry about the user (a member) is removed.
- The audit log keeps that the user was deleted (`user.deleted`, target `user:<id>`, so an
  operator can answer "was this person erased, and when?"); entries about or by the user keep
  their action and time but name `DELETED_USER` instead and lose their reason.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from cariosan.blobs.store import BlobStore
from cariosan.config import Settings
from cariosan.db import privacy as rows
from cariosan.db import users as user_rows
from cariosan.db.pool import Database
from cariosan.domain import audit, permissions
from cariosan.domain.auth import Caller
from cariosan.domain.ids import customer_id
from cariosan.domain.permissions import Action
from cariosan.domain.views import UserView, to_payload
from cariosan.errors import NotFound, Unavailable
from cariosan.obs.logging import get_logger

log = get_logger("cariosan.privacy")

# What an audit entry or an event names instead of an erased user.
DELETED_USER = "deleted-user"
_DELETED_TARGET = f"user:{DELETED_USER}"
# Must match domain/channels.py's dm pair key.
_DM_KEY_SEPARATOR = "\n"

Section = Callable[[asyncpg.Connection, uuid.UUID, str], Awaitable[Any]]
EraseStep = Callable[[asyncpg.Connection, uuid.UUID, str], Awaitable[Any]]

# Extension point: (name in the export document, reader). Moderation tables (bans, mutes,
# blocks, flags) append theirs here: the export shows every section, in this order.
EXPORT_SECTIONS: list[tuple[str, Section]] = [
    ("memberships", rows.memberships),
    ("messages", rows.messages),
    ("reactions", rows.reactions),
    ("audit", rows.audit_entries),
]

# Extension point: run by the hard delete in its transaction, before the user's messages,
# memberships and row go (so a step can still join them). Moderation tables append theirs.
ERASE_STEPS: list[EraseStep] = []


async def _forget_moderation_links(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> None:
    await rows.forget_moderation_links(conn, workspace_id, user_id, DELETED_USER)


# Bans, flags, mutes, blocks and pins (issue 14): shown in the export, and where the user acted
# on others (pinned, banned, resolved) its id leaves those rows at a hard delete.
EXPORT_SECTIONS.append(("moderation", rows.moderation))
ERASE_STEPS.append(_forget_moderation_links)


def user_document(row: user_rows.UserRow) -> dict[str, Any]:
    view = UserView(
        id=row.id,
        name=row.name,
        image_url=row.image_url,
        role=row.role,
        data=row.data,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_active_at=row.last_active_at,
        deleted_at=row.deleted_at,
    )
    found: dict[str, Any] = to_payload(view)
    return found


@dataclass(frozen=True)
class ExportFile:
    """A file of the export: where it is in the store and what it is called."""

    attachment_id: str
    object_key: str
    filename: str
    size: int


@dataclass(frozen=True)
class Export:
    document: dict[str, Any]
    files: list[ExportFile]


async def export_user(
    database: Database,
    blobs: BlobStore | None,
    settings: Settings,
    workspace_id: uuid.UUID,
    user_id: str,
    *,
    actor: str,
) -> Export:
    """Everything stored about the user, with a fresh download URL per attachment (none
    without `blobs`, as for the CLI, which copies the files itself). Recorded in the audit log
    in the same transaction as the reads."""
    customer_id("user_id", user_id)
    # One snapshot for every section: a message sent meanwhile is in all of them or none.
    async with database.connection() as conn, conn.transaction(isolation="repeatable_read"):
        user = await user_rows.get_user(conn, workspace_id, user_id)
        if user is None:
            raise NotFound(f"no such user: {user_id}")
        document: dict[str, Any] = {
            "format": "cariosan.user-export/1",
            "exported_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "workspace_id": str(workspace_id),
            "user": user_document(user),
        }
        for name, section in EXPORT_SECTIONS:
            document[name] = await section(conn, workspace_id, user_id)
        document["read_state"] = [
            {
                "channel_id": m["channel_id"],
                "last_read_message_id": m["last_read_message_id"],
                "last_read_at": m["last_read_at"],
            }
            for m in document["memberships"]
        ]
        found = await rows.attachments(conn, workspace_id, user_id)
        if blobs is not None and found:
            # UNAVAILABLE (and no audit entry) rather than an export without its URLs.
            await blobs.ensure_available()
        await audit.record(
            conn,
            workspace_id,
            actor=actor,
            action=audit.USER_EXPORTED,
            target=f"user:{user_id}",
            data={
                "messages": len(document["messages"]),
                "attachments": len(found),
            },
        )
    files = [ExportFile(str(a.id), a.object_key, a.filename, a.size) for a in found]
    document["attachments"] = [await _attachment(blobs, settings, a) for a in found]
    return Export(document, files)


async def _attachment(
    blobs: BlobStore | None, settings: Settings, row: rows.UserAttachment
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": str(row.id),
        "channel_id": row.channel_id,
        "message_id": None if row.message_id is None else str(row.message_id),
        "filename": row.filename,
        "content_type": row.content_type,
        "size": row.size,
        "status": row.status,
        "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
        "download_url": None,
        "download_expires_at": None,
    }
    if blobs is not None and row.status != "deleting":
        signed = await blobs.presign_get(
            row.object_key, row.filename, row.content_type, settings.attachment_url_seconds
        )
        entry["download_url"] = signed.url
        entry["download_expires_at"] = signed.expires_at.isoformat().replace("+00:00", "Z")
    return entry


async def export_for(
    database: Database, blobs: BlobStore, settings: Settings, caller: Caller, user_id: str
) -> dict[str, Any]:
    """The export for the backend (domain/permissions.py)."""
    permissions.require(Action.USER_EXPORT, permissions.WORKSPACE, caller.capacities())
    done = await export_user(
        database, blobs, settings, caller.workspace_id, user_id, actor=audit.actor_of(caller)
    )
    return done.document


# ---- the hard delete ---------------------------------------------------------------------------


def _needles(user: user_rows.UserRow) -> list[str]:
    """What identifies the user as text: its id and, when set, its name and image URL."""
    return [v for v in (user.id, user.name, user.image_url) if v]


# Keys whose value is a user id, and lists of user ids: the only places an id is taken out
# (a channel may have the same id as a user; its `channel_id` stays).
_USER_KEYS = frozenset({"user_id", "actor", "author", "created_by", "target_user"})
_USER_SUFFIXES = ("_by", "_user_id")
_USER_LISTS = frozenset({"mentions", "user_ids", "members", "member_ids"})


def _names_user(key: str) -> bool:
    return key in _USER_KEYS or key.endswith(_USER_SUFFIXES)


def _is_about(value: dict[str, Any], user_id: str) -> bool:
    """A member, a user or a reaction of the user (not a channel that shares its id)."""
    return value.get("user_id") == user_id or (value.get("id") == user_id and "image_url" in value)


def scrub(value: Any, user_id: str, needles: set[str], key: str = "") -> Any:
    """`value` without the user: its id under keys that name users (`user_id`, `created_by`,
    ...) becomes None and leaves lists of users (`mentions`, ...); `user:<id>` becomes
    `user:deleted-user`; its name or image URL becomes None anywhere; a dict about it (a
    member, its user object) becomes None, or leaves the list it is in."""
    if isinstance(value, str):
        if value == f"user:{user_id}":
            return _DELETED_TARGET
        if value == user_id:
            return None if _names_user(key) else value
        return None if value in needles - {user_id} else value
    if isinstance(value, list):
        return [
            scrub(v, user_id, needles, key)
            for v in value
            if not (isinstance(v, dict) and _is_about(v, user_id))
            and not (isinstance(v, str) and v == user_id and key in _USER_LISTS)
            and not (isinstance(v, str) and v in needles - {user_id})
        ]
    if isinstance(value, dict):
        return {
            k: None
            if isinstance(v, dict) and _is_about(v, user_id)
            else scrub(v, user_id, needles, k)
            for k, v in value.items()
        }
    return value


def _scrub_audit(entry: rows.AuditText, user_id: str, needles: set[str]) -> rows.AuditText:
    # A user whose id is "backend" or "operator" cannot be told from those actors by the log.
    by_user = entry.actor == user_id and user_id not in (audit.BACKEND, audit.OPERATOR)
    about = by_user or entry.target == f"user:{user_id}"
    return rows.AuditText(
        entry.id,
        DELETED_USER if by_user else entry.actor,
        scrub(entry.target, user_id, needles),
        None if about else scrub(entry.reason, user_id, needles),
        scrub(entry.data, user_id, needles),
    )


@dataclass(frozen=True)
class Erased:
    """What erasing a user found: the files to delete from the store, and counts for the log."""

    files: list[rows.DoomedFile]
    events: int
    mentions: int

    @property
    def anything(self) -> bool:
        return bool(self.files or self.events or self.mentions)


async def erase_in_transaction(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    user_id: str,
    user: user_rows.UserRow | None,
    *,
    upload_window: float,
) -> Erased:
    """Remove or rewrite everything of the user that is not its messages, memberships and row
    (db/users.hard_delete_user, which the caller runs next): attachment records, other
    moderation tables (ERASE_STEPS), mentions, channel links, events and their webhook
    deliveries, the audit log's text. Uploads whose URL may still be used within
    `upload_window` seconds keep an anonymous record (db/privacy.py).

    Without `user` (its row is gone: a hard delete by an older release, which left attachments
    behind): its attachments and mentions only (an id alone does not tell a gone user's audit
    entries from others')."""
    if user is None:
        files = await rows.delete_attachments(conn, workspace_id, user_id, upload_window)
        return Erased(files, 0, await rows.forget_mentions(conn, workspace_id, user_id))
    needles = _needles(user)
    needle_set = set(needles)
    for step in ERASE_STEPS:
        await step(conn, workspace_id, user_id)
    files = await rows.delete_attachments(conn, workspace_id, user_id, upload_window)
    await rows.recount_threads_of(conn, workspace_id, user_id)
    mentions = await rows.forget_mentions(conn, workspace_id, user_id)
    await rows.forget_channel_links(conn, workspace_id, user_id, _DM_KEY_SEPARATOR)
    removed = await rows.remove_events(conn, workspace_id, user_id)
    for event in await rows.events_mentioning(conn, workspace_id, needles):
        cleaned = scrub(event.payload, user_id, needle_set)
        if cleaned != event.payload:
            await rows.rewrite_event(conn, workspace_id, event.seq, cleaned)
    for entry in await rows.audit_mentioning(conn, workspace_id, user_id, needles):
        await rows.rewrite_audit(conn, workspace_id, _scrub_audit(entry, user_id, needle_set))
    await rows.forget_deliveries(conn, workspace_id, removed, needles)
    return Erased(files, len(removed), mentions)


async def delete_files(
    blobs: BlobStore, workspace_id: uuid.UUID, files: list[rows.DoomedFile]
) -> None:
    """Delete every file of these attachments (the served copy, the upload, stray copies: all
    under `{workspace}/{id}/`). Raises Unavailable when the store fails, so that the caller
    does not commit the delete of records whose files are still there."""
    if not files:
        return
    try:
        await blobs.ensure_available()
        for doomed in files:
            keys = set(await blobs.list_keys(f"{workspace_id}/{doomed.id}/"))
            keys.add(doomed.object_key)
            await asyncio.gather(*(blobs.delete(key) for key in sorted(keys)))
    except Unavailable:
        raise
    except Exception as exc:
        log.warning("user_files_not_removed", error=exc.__class__.__name__, exc_info=exc)
        raise Unavailable(
            "the attachment store did not remove the user's files: try again"
        ) from exc
