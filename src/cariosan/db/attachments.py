"""SQL for attachment records (the files themselves are in blobs/)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

PENDING, UPLOADED, DELETING = "pending", "uploaded", "deleting"

_COLUMNS = (
    "a.workspace_id, a.id, a.channel_id, a.user_id, a.filename, a.content_type, a.size, "
    "a.object_key, a.status, a.message_id, a.created_at"
)


@dataclass(frozen=True)
class AttachmentRow:
    workspace_id: uuid.UUID
    id: uuid.UUID
    channel_id: str
    user_id: str | None
    filename: str
    content_type: str
    size: int
    object_key: str
    status: str
    message_id: uuid.UUID | None
    created_at: datetime


@dataclass(frozen=True)
class StaleAttachment:
    workspace_id: uuid.UUID
    id: uuid.UUID
    object_key: str


def _row(r: asyncpg.Record) -> AttachmentRow:
    return AttachmentRow(
        r["workspace_id"],
        r["id"],
        r["channel_id"],
        r["user_id"],
        r["filename"],
        r["content_type"],
        r["size"],
        r["object_key"],
        r["status"],
        r["message_id"],
        r["created_at"],
    )


async def insert_pending(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    attachment_id: uuid.UUID,
    *,
    channel_id: str,
    user_id: str | None,
    filename: str,
    content_type: str,
    size: int,
    object_key: str,
) -> None:
    await conn.execute(
        "INSERT INTO attachments (workspace_id, id, channel_id, user_id, filename, content_type, "
        "size, object_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        workspace_id,
        attachment_id,
        channel_id,
        user_id,
        filename,
        content_type,
        size,
        object_key,
    )


async def get_readable(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, attachment_id: uuid.UUID
) -> AttachmentRow | None:
    """The attachment unless it is being removed or its message was deleted."""
    r = await conn.fetchrow(
        f"""
        SELECT {_COLUMNS}
        FROM attachments a
        LEFT JOIN messages m ON m.workspace_id = a.workspace_id AND m.id = a.message_id
        WHERE a.workspace_id = $1 AND a.id = $2 AND a.status <> 'deleting'
          AND (a.message_id IS NULL OR (m.id IS NOT NULL AND m.deleted_at IS NULL))
        """,  # noqa: S608
        workspace_id,
        attachment_id,
    )
    return None if r is None else _row(r)


async def _among(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, attachment_ids: list[uuid.UUID], tail: str
) -> list[AttachmentRow]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM attachments a WHERE a.workspace_id = $1 "  # noqa: S608
        f"AND a.id = ANY($2::uuid[]) {tail}",
        workspace_id,
        attachment_ids,
    )
    return [_row(r) for r in rows]


async def lock_for_claim(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, attachment_ids: list[uuid.UUID]
) -> list[AttachmentRow]:
    """The attachments among `attachment_ids`, locked until the transaction ends (in id order,
    so two sends naming the same attachments cannot deadlock)."""
    return await _among(conn, workspace_id, attachment_ids, "ORDER BY a.id FOR UPDATE")


async def unlocked(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, attachment_ids: list[uuid.UUID]
) -> list[AttachmentRow]:
    """The attachments among `attachment_ids`, read without a lock (checked again, locked,
    by the send's transaction)."""
    return await _among(conn, workspace_id, attachment_ids, "")


@dataclass(frozen=True)
class SealedCopy:
    """An attachment's verified copy: where it is and the checksum it was verified against."""

    id: uuid.UUID
    object_key: str
    checksum: str


async def mark_referenced(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    copies: list[SealedCopy],
    message_id: uuid.UUID,
) -> None:
    """Tie each attachment to the message and serve it from its copy from now on (only those
    without a message: an attachment keeps the first copy it was sent with)."""
    if not copies:
        return
    await conn.execute(
        """
        UPDATE attachments a
        SET status = 'uploaded', message_id = $4, referenced_at = now(),
            object_key = c.object_key, checksum = c.checksum
        FROM unnest($2::uuid[], $3::text[], $5::text[]) AS c(id, object_key, checksum)
        WHERE a.workspace_id = $1 AND a.id = c.id AND a.message_id IS NULL
        """,
        workspace_id,
        [c.id for c in copies],
        [c.object_key for c in copies],
        message_id,
        [c.checksum for c in copies],
    )


async def refs_by_id(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, attachment_ids: list[uuid.UUID]
) -> list[AttachmentRow]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM attachments a "  # noqa: S608
        "WHERE a.workspace_id = $1 AND a.id = ANY($2::uuid[])",
        workspace_id,
        attachment_ids,
    )
    return [_row(r) for r in rows]


# -- the cleanup job -----------------------------------------------------------------------------


async def mark_stale(
    conn: asyncpg.Connection, older_than_seconds: float, limit: int
) -> list[StaleAttachment]:
    """Mark unreferenced attachments older than the cut-off as being removed, and return them
    together with those a previous run could not finish. A send that locked one of them first
    wins: this waits for it and then skips the row, which has a message by then."""
    rows = await conn.fetch(
        """
        UPDATE attachments SET status = 'deleting'
        WHERE (workspace_id, id) IN (
            SELECT workspace_id, id FROM attachments
            WHERE message_id IS NULL
              AND (status = 'deleting'
                   OR created_at < now() - make_interval(secs => $1))
            ORDER BY created_at
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        ) AND message_id IS NULL
        RETURNING workspace_id, id, object_key
        """,
        float(older_than_seconds),
        limit,
    )
    return [StaleAttachment(r["workspace_id"], r["id"], r["object_key"]) for r in rows]


async def untidy(
    conn: asyncpg.Connection, older_than_seconds: float, limit: int
) -> list[StaleAttachment]:
    """Sent attachments whose other files (the upload, stray copies) may still be in the store,
    once their upload URL has expired (nothing can put a file under their folder any more)."""
    rows = await conn.fetch(
        """
        SELECT workspace_id, id, object_key FROM attachments
        WHERE checksum IS NOT NULL AND tidied_at IS NULL
          AND created_at < now() - make_interval(secs => $1)
        ORDER BY created_at
        LIMIT $2
        """,
        float(older_than_seconds),
        limit,
    )
    return [StaleAttachment(r["workspace_id"], r["id"], r["object_key"]) for r in rows]


async def mark_tidied(conn: asyncpg.Connection, tidied: list[StaleAttachment]) -> None:
    if not tidied:
        return
    await conn.execute(
        "UPDATE attachments a SET tidied_at = now() "
        "FROM unnest($1::uuid[], $2::uuid[]) AS r(workspace_id, id) "
        "WHERE a.workspace_id = r.workspace_id AND a.id = r.id",
        [s.workspace_id for s in tidied],
        [s.id for s in tidied],
    )


async def delete_records(conn: asyncpg.Connection, removed: list[StaleAttachment]) -> None:
    if not removed:
        return
    await conn.execute(
        "DELETE FROM attachments a USING unnest($1::uuid[], $2::uuid[]) AS r(workspace_id, id) "
        "WHERE a.workspace_id = r.workspace_id AND a.id = r.id AND a.status = 'deleting'",
        [s.workspace_id for s in removed],
        [s.id for s in removed],
    )
