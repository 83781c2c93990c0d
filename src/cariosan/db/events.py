"""SQL for the catch-up event log.

`seq` is `(transaction id << 16) + position in the transaction`. Readers only return events whose
transaction id is below the oldest transaction still running (`pg_snapshot_xmin`), i.e. events of
transactions that have all finished. Any event written later belongs to a transaction that was
still running (or had not started) then, so it gets a larger seq than anything already returned:
a reader that advanced past N never misses an event below N, with no lock shared by writers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from cariosan.db.pool import note_event

SEQ_SHIFT = 16


@dataclass(frozen=True)
class EventRow:
    seq: int
    type: str
    channel_id: str | None
    user_id: str | None
    payload: dict[str, Any]
    created_at: datetime


async def append_event(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    type: str,
    payload: dict[str, Any],
    *,
    channel_id: str | None = None,
    user_id: str | None = None,
) -> int:
    """Write one event in the caller's transaction; returns its seq.

    The same statement queues one webhook delivery per enabled endpoint of the workspace that
    wants this type (the outbox), with the body clients get (`domain/events.wire_event`).
    """
    payload_json = json.dumps(payload, separators=(",", ":"), default=str)
    seq: int = await conn.fetchval(
        """
        WITH tx AS (SELECT pg_current_xact_id()::text::bigint << 16 AS base),
        ev AS (
            INSERT INTO events (workspace_id, seq, type, channel_id, user_id, payload)
            SELECT $1, tx.base + (
                       SELECT count(*) FROM events e
                       WHERE e.workspace_id = $1 AND e.seq >= tx.base AND e.seq < tx.base + 65536
                   ), $2, $3, $4, $5::jsonb
            FROM tx
            RETURNING seq, created_at
        ),
        outbox AS (
            INSERT INTO webhook_deliveries (workspace_id, id, endpoint_id, event_type, seq, body)
            SELECT $1, gen_random_uuid(), w.id, $2, ev.seq,
                   '{"type":' || to_json($2::text)::text || ',"seq":' || ev.seq
                   || coalesce(',"channel_id":' || to_json($3::text)::text, '')
                   || ',"created_at":"'
                   || to_char(ev.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                   || '"' || $6 || '}'
            FROM ev, webhook_endpoints w
            WHERE w.workspace_id = $1 AND w.enabled AND w.events && ARRAY[$2::text, '*']
        )
        SELECT seq FROM ev
        """,
        workspace_id,
        type,
        channel_id,
        user_id,
        payload_json,
        "" if payload_json == "{}" else "," + payload_json[1:-1],
    )
    note_event(workspace_id)
    return seq


def _event(r: asyncpg.Record) -> EventRow:
    return EventRow(
        r["seq"],
        r["type"],
        r["channel_id"],
        r["user_id"],
        json.loads(r["payload"]),
        r["created_at"],
    )


_VISIBLE = """
    e.workspace_id = $1
    AND e.seq > $2
    AND e.seq < (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 16)
    AND (
        e.user_id = $3
        OR e.channel_id IN (
            SELECT m.channel_id FROM channel_members m
            WHERE m.workspace_id = $1 AND m.user_id = $3
        )
    )
"""


async def events_for_user(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str, after_seq: int, limit: int
) -> list[EventRow]:
    """Finished events after `after_seq` of the user's channels (and about the user), in order."""
    rows = await conn.fetch(
        f"""
        SELECT e.seq, e.type, e.channel_id, e.user_id, e.payload, e.created_at
        FROM events e WHERE {_VISIBLE}
        ORDER BY e.seq LIMIT $4
        """,  # noqa: S608 (constant SQL fragment, values are parameters)
        workspace_id,
        after_seq,
        user_id,
        limit,
    )
    return [_event(r) for r in rows]


async def events_for_workspace(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, after_seq: int, limit: int
) -> list[EventRow]:
    """Every finished event of the workspace after `after_seq` (the server-side view)."""
    rows = await conn.fetch(
        """
        SELECT seq, type, channel_id, user_id, payload, created_at FROM events
        WHERE workspace_id = $1 AND seq > $2
          AND seq < (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 16)
        ORDER BY seq LIMIT $3
        """,
        workspace_id,
        after_seq,
        limit,
    )
    return [_event(r) for r in rows]


async def latest_seq(conn: asyncpg.Connection, workspace_id: uuid.UUID) -> int:
    """The highest seq a reader may see now (0 when there is none)."""
    value = await conn.fetchval(
        """
        SELECT coalesce(max(seq), 0) FROM events
        WHERE workspace_id = $1
          AND seq < (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 16)
        """,
        workspace_id,
    )
    return int(value)


async def read_page(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    user_id: str | None,
    after_seq: int,
    limit: int,
) -> tuple[list[EventRow], int]:
    """A page of events and the latest seq, both seen from one snapshot.

    Runs in a read-only repeatable-read transaction so that `latest_seq` never points past an
    event the page could not see.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if user_id is None:
            rows = await events_for_workspace(conn, workspace_id, after_seq, limit)
        else:
            rows = await events_for_user(conn, workspace_id, user_id, after_seq, limit)
        latest = rows[-1].seq if len(rows) == limit else await latest_seq(conn, workspace_id)
    return rows, latest
