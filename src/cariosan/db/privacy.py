"""SQL for privacy: everything stored about one user (the export), and erasing it (the hard
delete). domain/privacy.py decides what goes where; each table's part is here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# ---- the export --------------------------------------------------------------------------------


async def memberships(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> list[dict[str, Any]]:
    """The user's channels with its role, when it joined and how far it has read."""
    rows = await conn.fetch(
        """
        SELECT m.channel_id, c.type, c.name, c.deleted_at, m.role, m.joined_at,
               m.last_read_message_id, m.last_read_at
        FROM channel_members m
        JOIN channels c ON c.workspace_id = m.workspace_id AND c.id = m.channel_id
        WHERE m.workspace_id = $1 AND m.user_id = $2
        ORDER BY m.joined_at, m.channel_id
        """,
        workspace_id,
        user_id,
    )
    return [
        {
            "channel_id": r["channel_id"],
            "channel_type": r["type"],
            "channel_name": r["name"],
            "channel_deleted_at": _iso(r["deleted_at"]),
            "role": r["role"],
            "joined_at": _iso(r["joined_at"]),
            "last_read_message_id": _text(r["last_read_message_id"]),
            "last_read_at": _iso(r["last_read_at"]),
        }
        for r in rows
    ]


async def messages(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> list[dict[str, Any]]:
    """Every message the user wrote (replies and deleted ones too), oldest first."""
    rows = await conn.fetch(
        """
        SELECT id, channel_id, parent_id, text, mentions, attachment_ids, data, created_at,
               edited_at, deleted_at
        FROM messages WHERE workspace_id = $1 AND user_id = $2
        ORDER BY created_at, id
        """,
        workspace_id,
        user_id,
    )
    return [
        {
            "id": str(r["id"]),
            "channel_id": r["channel_id"],
            "parent_id": _text(r["parent_id"]),
            "text": r["text"],
            "mentions": list(r["mentions"]),
            "attachment_ids": [str(a) for a in r["attachment_ids"]],
            "data": msgspec.json.decode(r["data"]),
            "created_at": _iso(r["created_at"]),
            "edited_at": _iso(r["edited_at"]),
            "deleted_at": _iso(r["deleted_at"]),
        }
        for r in rows
    ]


async def reactions(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT r.message_id, m.channel_id, r.type, r.created_at
        FROM reactions r
        JOIN messages m ON m.workspace_id = r.workspace_id AND m.id = r.message_id
        WHERE r.workspace_id = $1 AND r.user_id = $2
        ORDER BY r.created_at, r.message_id, r.type
        """,
        workspace_id,
        user_id,
    )
    return [
        {
            "message_id": str(r["message_id"]),
            "channel_id": r["channel_id"],
            "type": r["type"],
            "created_at": _iso(r["created_at"]),
        }
        for r in rows
    ]


@dataclass(frozen=True)
class UserAttachment:
    id: uuid.UUID
    channel_id: str
    message_id: uuid.UUID | None
    filename: str
    content_type: str
    size: int
    status: str
    object_key: str
    created_at: datetime


async def attachments(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> list[UserAttachment]:
    """The user's uploads and the files of its messages (the backend may upload for a user)."""
    rows = await conn.fetch(
        """
        SELECT a.id, a.channel_id, a.message_id, a.filename, a.content_type, a.size, a.status,
               a.object_key, a.created_at
        FROM attachments a
        WHERE a.workspace_id = $1 AND (a.user_id = $2 OR a.message_id IN (
            SELECT m.id FROM messages m WHERE m.workspace_id = $1 AND m.user_id = $2))
        ORDER BY a.created_at, a.id
        """,
        workspace_id,
        user_id,
    )
    return [
        UserAttachment(
            r["id"],
            r["channel_id"],
            r["message_id"],
            r["filename"],
            r["content_type"],
            r["size"],
            r["status"],
            r["object_key"],
            r["created_at"],
        )
        for r in rows
    ]


async def audit_entries(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> list[dict[str, Any]]:
    """Audit entries by the user or about it (target `user:<id>`)."""
    rows = await conn.fetch(
        """
        SELECT id, actor, action, target, reason, data, created_at FROM audit_log
        WHERE workspace_id = $1 AND (actor = $2 OR target = 'user:' || $2)
        ORDER BY created_at, id
        """,
        workspace_id,
        user_id,
    )
    return [
        {
            "id": str(r["id"]),
            "actor": r["actor"],
            "action": r["action"],
            "target": r["target"],
            "reason": r["reason"],
            "data": msgspec.json.decode(r["data"]),
            "created_at": _iso(r["created_at"]),
        }
        for r in rows
    ]


# ---- the hard delete ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DoomedFile:
    id: uuid.UUID
    object_key: str


ERASED_NAME = "erased"


async def delete_attachments(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str, upload_window: float
) -> list[DoomedFile]:
    """Remove the records of the user's uploads and of its messages' files; their keys (the
    caller deletes the files).

    An upload not sent and younger than `upload_window` (its presigned PUT URL may still be
    used) keeps an anonymous record instead: no uploader, no name, a served key that names no
    file, and a checksum, so that the cleanup job's tidy pass (domain/attachments.py
    remove_leftovers) deletes whatever is put in its folder later, and its stale pass removes
    the record after a day."""
    fresh = await conn.fetch(
        """
        WITH fresh AS (
            SELECT a.id, a.object_key FROM attachments a
            WHERE a.workspace_id = $1 AND a.user_id = $2 AND a.message_id IS NULL
              AND a.status = 'pending' AND a.created_at > now() - make_interval(secs => $3)
            FOR UPDATE
        )
        UPDATE attachments a SET
            user_id = NULL, filename = $4, content_type = 'application/octet-stream',
            object_key = a.workspace_id::text || '/' || a.id::text || '/.' || $4,
            checksum = $4, tidied_at = NULL
        FROM fresh WHERE a.workspace_id = $1 AND a.id = fresh.id
        RETURNING a.id, fresh.object_key
        """,
        workspace_id,
        user_id,
        float(upload_window),
        ERASED_NAME,
    )
    rows = await conn.fetch(
        """
        DELETE FROM attachments a
        WHERE a.workspace_id = $1 AND (a.user_id = $2 OR a.message_id IN (
            SELECT m.id FROM messages m WHERE m.workspace_id = $1 AND m.user_id = $2))
        RETURNING a.id, a.object_key
        """,
        workspace_id,
        user_id,
    )
    return [DoomedFile(r["id"], r["object_key"]) for r in [*fresh, *rows]]


async def recount_threads_of(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> None:
    """Correct the reply counts of threads the user replied in, once its replies are gone
    (the caller deletes them next, in the same transaction)."""
    await conn.execute(
        """
        UPDATE messages p SET reply_count = (
            SELECT count(*) FROM messages r
            WHERE r.workspace_id = p.workspace_id AND r.parent_id = p.id AND r.user_id <> $2)
        WHERE p.workspace_id = $1 AND p.user_id <> $2 AND p.id IN (
            SELECT m.parent_id FROM messages m
            WHERE m.workspace_id = $1 AND m.user_id = $2 AND m.parent_id IS NOT NULL)
        """,
        workspace_id,
        user_id,
    )


async def forget_mentions(conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str) -> int:
    """Take the user's id out of other users' messages' mention lists (their text stays)."""
    result = await conn.execute(
        "UPDATE messages SET mentions = array_remove(mentions, $2) "
        "WHERE workspace_id = $1 AND $2 = ANY(mentions)",
        workspace_id,
        user_id,
    )
    return int(result.split()[-1])


async def forget_channel_links(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str, dm_separator: str
) -> None:
    """Channels the user created no longer name it; its dms lose the pair key that holds its
    id (the other member keeps the channel, and may start a new dm with a new user of that id)."""
    await conn.execute(
        "UPDATE channels SET created_by = NULL WHERE workspace_id = $1 AND created_by = $2",
        workspace_id,
        user_id,
    )
    await conn.execute(
        """
        UPDATE channels SET dm_key = NULL
        WHERE workspace_id = $1 AND dm_key IS NOT NULL
          AND $2 = ANY(string_to_array(dm_key, $3))
        """,
        workspace_id,
        user_id,
        dm_separator,
    )


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    payload: dict[str, Any]


async def events_mentioning(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, needles: list[str]
) -> list[StoredEvent]:
    """Events of the workspace whose payload holds any of `needles` as text (a superset: the
    caller looks at the values). A scan of the workspace's log, kept short by retention."""
    rows = await conn.fetch(
        """
        SELECT seq, payload FROM events
        WHERE workspace_id = $1 AND EXISTS (
            SELECT 1 FROM unnest($2::text[]) n(needle) WHERE strpos(payload::text, n.needle) > 0)
        """,
        workspace_id,
        needles,
    )
    return [StoredEvent(r["seq"], msgspec.json.decode(r["payload"])) for r in rows]


async def rewrite_event(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, seq: int, payload: dict[str, Any]
) -> None:
    await conn.execute(
        "UPDATE events SET payload = $3::jsonb WHERE workspace_id = $1 AND seq = $2",
        workspace_id,
        seq,
        msgspec.json.encode(payload).decode(),
    )


async def remove_events(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> list[int]:
    """Every event the user caused or that is about the user; their seqs (unsequenced events,
    still negative, have no deliveries yet)."""
    rows = await conn.fetch(
        "DELETE FROM events WHERE workspace_id = $1 AND (actor_id = $2 OR user_id = $2) "
        "RETURNING seq",
        workspace_id,
        user_id,
    )
    return [int(r["seq"]) for r in rows if r["seq"] > 0]


async def forget_deliveries(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, removed_seqs: list[int], needles: list[str]
) -> None:
    """The deliveries of removed events go with them (pending ones would only fail later); a
    body stored with a delivery (older releases kept one) that holds a needle is emptied, so
    the worker makes it again from the event as it is now."""
    await conn.execute(
        "DELETE FROM webhook_deliveries WHERE workspace_id = $1 AND seq = ANY($2::bigint[])",
        workspace_id,
        removed_seqs,
    )
    await conn.execute(
        """
        UPDATE webhook_deliveries SET body = ''
        WHERE workspace_id = $1 AND body <> '' AND EXISTS (
            SELECT 1 FROM unnest($2::text[]) n(needle) WHERE strpos(body, n.needle) > 0)
        """,
        workspace_id,
        needles,
    )


@dataclass(frozen=True)
class AuditText:
    id: uuid.UUID
    actor: str
    target: str | None
    reason: str | None
    data: dict[str, Any]


async def audit_mentioning(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str, needles: list[str]
) -> list[AuditText]:
    """Audit entries by or about the user, or whose reason or data hold a needle."""
    rows = await conn.fetch(
        """
        SELECT id, actor, target, reason, data FROM audit_log
        WHERE workspace_id = $1 AND (
            actor = $2 OR target = 'user:' || $2 OR EXISTS (
                SELECT 1 FROM unnest($3::text[]) n(needle)
                WHERE strpos(coalesce(reason, ''), n.needle) > 0
                   OR strpos(data::text, n.needle) > 0))
        """,
        workspace_id,
        user_id,
        needles,
    )
    return [
        AuditText(r["id"], r["actor"], r["target"], r["reason"], msgspec.json.decode(r["data"]))
        for r in rows
    ]


async def rewrite_audit(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, entry: AuditText
) -> None:
    await conn.execute(
        "UPDATE audit_log SET actor = $3, target = $4, reason = $5, data = $6::jsonb "
        "WHERE workspace_id = $1 AND id = $2",
        workspace_id,
        entry.id,
        entry.actor,
        entry.target,
        entry.reason,
        msgspec.json.encode(entry.data).decode(),
    )


# ---- moderation (bans, flags, mutes, blocks, pins) -----------------------------------------


async def moderation(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> dict[str, list[dict[str, Any]]]:
    """What moderation stores about the user: its bans (expired ones too), the flags it made
    and those about it, its mutes and blocks, and the messages it pinned."""
    bans = await conn.fetch(
        "SELECT channel_id, reason, expires_at, shadow, created_by, created_at FROM bans "
        "WHERE workspace_id = $1 AND user_id = $2 ORDER BY created_at, id",
        workspace_id,
        user_id,
    )
    flags = await conn.fetch(
        "SELECT id, message_id, channel_id, user_id, reporter_id, reason, status, resolution, "
        "created_at, resolved_at FROM flags "
        "WHERE workspace_id = $1 AND (reporter_id = $2 OR user_id = $2) ORDER BY created_at, id",
        workspace_id,
        user_id,
    )
    channel_mutes = await conn.fetch(
        "SELECT channel_id, expires_at, created_at FROM channel_mutes "
        "WHERE workspace_id = $1 AND user_id = $2 ORDER BY created_at, channel_id",
        workspace_id,
        user_id,
    )
    user_mutes = await conn.fetch(
        "SELECT muted_id, expires_at, created_at FROM user_mutes "
        "WHERE workspace_id = $1 AND user_id = $2 ORDER BY created_at, muted_id",
        workspace_id,
        user_id,
    )
    blocks = await conn.fetch(
        "SELECT blocked_id, created_at FROM user_blocks "
        "WHERE workspace_id = $1 AND user_id = $2 ORDER BY created_at, blocked_id",
        workspace_id,
        user_id,
    )
    pins = await conn.fetch(
        "SELECT id, channel_id, pinned_at FROM messages "
        "WHERE workspace_id = $1 AND pinned_by = $2 ORDER BY pinned_at, id",
        workspace_id,
        user_id,
    )

    def plain(record: asyncpg.Record) -> dict[str, Any]:
        return {
            key: _iso(value)
            if isinstance(value, datetime)
            else _text(value)
            if isinstance(value, uuid.UUID)
            else value
            for key, value in record.items()
        }

    return {
        "bans": [plain(r) for r in bans],
        "flags": [plain(r) for r in flags],
        "channel_mutes": [plain(r) for r in channel_mutes],
        "user_mutes": [plain(r) for r in user_mutes],
        "blocks": [plain(r) for r in blocks],
        "pins": [plain(r) for r in pins],
    }


async def forget_moderation_links(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str, replacement: str
) -> None:
    """The user's id where it names who acted (pinned a message, banned someone, resolved a
    flag): those rows are about others and stay, naming `replacement` instead. Its own bans,
    mutes and blocks go with its row (foreign keys); its reports with domain/users.py."""
    await conn.execute(
        "UPDATE messages SET pinned_by = NULL WHERE workspace_id = $1 AND pinned_by = $2",
        workspace_id,
        user_id,
    )
    await conn.execute(
        "UPDATE bans SET created_by = $3 WHERE workspace_id = $1 AND created_by = $2",
        workspace_id,
        user_id,
        replacement,
    )
    await conn.execute(
        "UPDATE flags SET resolved_by = $3 WHERE workspace_id = $1 AND resolved_by = $2",
        workspace_id,
        user_id,
        replacement,
    )
