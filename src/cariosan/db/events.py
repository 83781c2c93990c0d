"""SQL for the event log: appending, numbering (the sequencer), reading, and trimming.

Writers insert an event with a provisional negative seq in their own transaction. After commit,
the sequencer (`sequence_pending`, one at a time across every server, under a transaction-level
advisory lock) gives committed events their public seq: per workspace, above every seq already
published. Readers see only numbered rows (`seq > after_seq >= 0`), and a numbering round
commits before the next one starts, so a reader that has seen seq N never finds a new event
below N later, and no reader depends on which transactions are still open anywhere on the
server (a long transaction in another database no longer holds live events back).

The same round updates the per-workspace and per-channel positions that let a reader skip
channels with nothing new, and queues the webhook deliveries of the numbered events (the
outbox: an event that committed is always numbered, so it always gets its deliveries).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from cariosan.db.pool import note_event

# Any fixed 64-bit number, shared by every server: one numbering round at a time.
SEQUENCER_LOCK_KEY = 0x43415249_53455131  # "CARISEQ1"

# The `audience` of events only the workspace's moderators and admins read (besides the backend
# and webhooks, which get every event): written once, with neither channel_id nor user_id, so
# the sequencer queues one webhook delivery per event as for any other; readers find them by
# the partial index events_moderators_idx (migration 0011).
MODERATORS = "moderators"


@dataclass(frozen=True)
class EventRow:
    seq: int
    type: str
    channel_id: str | None
    user_id: str | None
    payload: dict[str, Any]
    created_at: datetime
    # Events about a message refer to it; reads show the message as it is now.
    message_id: uuid.UUID | None = None
    # Set when resolved (domain/events.py) for a shadow-banned message: the only user who may
    # read the event, its author.
    visible_to: str | None = None
    # MODERATORS, or None: the channel's members and the event's user.
    audience: str | None = None


@dataclass(frozen=True)
class Positions:
    """A workspace's highest published seq, and the highest seq the retention job removed."""

    last_seq: int
    trimmed_seq: int


@dataclass(frozen=True)
class ReaderChannel:
    """A channel a user belongs to, as far as reading its events is concerned."""

    channel_id: str
    joined_at: datetime
    deleted: bool


async def append_event(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    type: str,
    payload: dict[str, Any],
    *,
    channel_id: str | None = None,
    user_id: str | None = None,
    message_id: uuid.UUID | None = None,
    actor_id: str | None = None,
    audience: str | None = None,
) -> None:
    """Write one event in the caller's transaction. It gets its public seq (and its webhook
    deliveries) from the sequencer once the transaction has committed."""
    await conn.execute(
        """
        INSERT INTO events
            (workspace_id, seq, type, channel_id, user_id, payload, message_id, actor_id,
             audience)
        VALUES ($1, -nextval('event_provisional_seq'), $2, $3, $4, $5::jsonb, $6, $7, $8)
        """,
        workspace_id,
        type,
        channel_id,
        user_id,
        msgspec.json.encode(payload).decode(),
        message_id,
        actor_id,
        audience,
    )
    note_event(workspace_id)


# ---- the sequencer -------------------------------------------------------------------------

_NUMBER = """
WITH pending AS (
    SELECT workspace_id, seq AS provisional FROM events
    WHERE seq < 0 ORDER BY seq DESC LIMIT $1
),
bases AS (
    -- Above the workspace's published position and above any seq in its log (rows written
    -- by an older release, which numbered events itself).
    SELECT w.workspace_id, greatest(
        coalesce((SELECT p.last_seq FROM event_positions p
                  WHERE p.workspace_id = w.workspace_id), 0),
        coalesce((SELECT max(e.seq) FROM events e WHERE e.workspace_id = w.workspace_id), 0)
    ) AS base
    FROM (SELECT DISTINCT workspace_id FROM pending) w
),
numbered AS (
    SELECT p.workspace_id, p.provisional, b.base + row_number() OVER (
        PARTITION BY p.workspace_id ORDER BY p.provisional DESC
    ) AS seq
    FROM pending p JOIN bases b USING (workspace_id)
),
moved AS (
    UPDATE events e SET seq = n.seq
    FROM numbered n
    WHERE e.workspace_id = n.workspace_id AND e.seq = n.provisional
    RETURNING e.workspace_id, e.seq, e.type, e.channel_id
),
channel_positions AS (
    INSERT INTO channel_event_positions AS cp (workspace_id, channel_id, last_seq)
    SELECT workspace_id, channel_id, max(seq) FROM moved
    WHERE channel_id IS NOT NULL GROUP BY workspace_id, channel_id
    ON CONFLICT (workspace_id, channel_id)
        DO UPDATE SET last_seq = greatest(cp.last_seq, EXCLUDED.last_seq)
),
outbox AS (
    -- The body is made when it is sent, from the event as reads show it then.
    INSERT INTO webhook_deliveries (workspace_id, id, endpoint_id, event_type, seq, body)
    SELECT m.workspace_id, gen_random_uuid(), w.id, m.type, m.seq, ''
    FROM moved m
    JOIN webhook_endpoints w ON w.workspace_id = m.workspace_id
    WHERE w.enabled AND w.events && ARRAY[m.type, '*']
),
published AS (
    INSERT INTO event_positions AS ep (workspace_id, last_seq)
    SELECT workspace_id, max(seq) FROM moved GROUP BY workspace_id
    ON CONFLICT (workspace_id) DO UPDATE SET last_seq = greatest(ep.last_seq, EXCLUDED.last_seq)
    RETURNING workspace_id, last_seq
)
SELECT p.workspace_id, p.last_seq,
       (SELECT count(*) FROM moved m WHERE m.workspace_id = p.workspace_id) AS numbered
FROM published p
"""


# A round reaches events only through indexes: pending ones through their partial index, each
# to number through the primary key. That is the right plan at any size, and the planner finds
# it by itself once the table has statistics; without them (a fresh or just restored database,
# before autovacuum's first pass) it hashed the whole log every round: 2.8 ms instead of 0.4 at
# 3,000 events, and growing with the log. Then the round's lock, all in one round trip.
ROUND_SETTINGS = (
    "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; "
    f"SET LOCAL enable_mergejoin = off; SELECT pg_advisory_xact_lock({int(SEQUENCER_LOCK_KEY)})"
)


async def has_pending(conn: asyncpg.Connection) -> bool:
    """Whether some committed event still waits for its seq (one index probe)."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events WHERE seq < 0)"))


@dataclass(frozen=True)
class Numbered:
    """What a numbering round did: each workspace's last seq now, and how many it numbered."""

    last_seqs: dict[uuid.UUID, int]
    count: int


async def sequence_pending(conn: asyncpg.Connection, limit: int) -> Numbered:
    """Number up to `limit` committed events, oldest first.

    The lock is taken in its own statement, so the numbering statement's snapshot (read
    committed) already sees the previous round's numbers.
    """
    async with conn.transaction():
        await conn.execute(ROUND_SETTINGS)
        rows = await conn.fetch(_NUMBER, limit)
    return Numbered(
        {r["workspace_id"]: int(r["last_seq"]) for r in rows},
        sum(int(r["numbered"]) for r in rows),
    )


# ---- reading -------------------------------------------------------------------------------

_EVENT_COLUMNS = (
    "e.seq, e.type, e.channel_id, e.user_id, e.payload, e.created_at, e.message_id, e.audience"
)


def _event(r: asyncpg.Record) -> EventRow:
    return EventRow(
        r["seq"],
        r["type"],
        r["channel_id"],
        r["user_id"],
        msgspec.json.decode(r["payload"]),
        r["created_at"],
        r["message_id"],
        audience=r["audience"],
    )


async def positions(conn: asyncpg.Connection, workspace_id: uuid.UUID) -> Positions:
    r = await conn.fetchrow(
        "SELECT last_seq, trimmed_seq FROM event_positions WHERE workspace_id = $1",
        workspace_id,
    )
    return Positions(0, 0) if r is None else Positions(int(r["last_seq"]), int(r["trimmed_seq"]))


async def latest_seq(conn: asyncpg.Connection, workspace_id: uuid.UUID) -> int:
    """The highest seq a reader may see now (0 when there is none)."""
    return (await positions(conn, workspace_id)).last_seq


async def events_for_workspace(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, after_seq: int, limit: int
) -> list[EventRow]:
    """The workspace's published events after `after_seq`, in order (the server-side view)."""
    rows = await conn.fetch(
        f"""
        SELECT {_EVENT_COLUMNS} FROM events e
        WHERE e.workspace_id = $1 AND e.seq > $2
        ORDER BY e.seq LIMIT $3
        """,  # noqa: S608 (constant SQL fragment, values are parameters)
        workspace_id,
        max(after_seq, 0),
        limit,
    )
    return [_event(r) for r in rows]


async def events_by_seq(
    conn: asyncpg.Connection, keys: list[tuple[uuid.UUID, int]]
) -> dict[tuple[uuid.UUID, int], EventRow]:
    """Events by (workspace, seq): what a webhook delivery refers to."""
    rows = await conn.fetch(
        f"""
        SELECT e.workspace_id, {_EVENT_COLUMNS}
        FROM unnest($1::uuid[], $2::bigint[]) AS k(workspace_id, seq)
        JOIN events e ON e.workspace_id = k.workspace_id AND e.seq = k.seq
        """,  # noqa: S608
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r["workspace_id"], r["seq"]): _event(r) for r in rows}


async def reader_channels(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str, after_seq: int, limit: int
) -> list[ReaderChannel]:
    """Up to `limit` of the user's channels that have events after `after_seq` (one index range
    per table: a user in 1,000 quiet channels costs 1,000 index entries, never their logs)."""
    # Driven by the user's memberships, each probing its channel's position: a cached generic
    # plan of a plain join walked every channel of the workspace instead (7 ms at 1,000).
    rows = await conn.fetch(
        """
        SELECT m.channel_id, m.joined_at, x.deleted
        FROM channel_members m
        CROSS JOIN LATERAL (
            SELECT c.deleted_at IS NOT NULL AS deleted
            FROM channel_event_positions p
            JOIN channels c ON c.workspace_id = p.workspace_id AND c.id = p.channel_id
            WHERE p.workspace_id = $1 AND p.channel_id = m.channel_id AND p.last_seq > $3
            LIMIT 1
        ) x
        WHERE m.workspace_id = $1 AND m.user_id = $2
        LIMIT $4
        """,
        workspace_id,
        user_id,
        after_seq,
        limit,
    )
    return [ReaderChannel(r["channel_id"], r["joined_at"], r["deleted"]) for r in rows]


@dataclass(frozen=True)
class ReaderEvents:
    """Events a user may be shown, in order, with what reading them depends on."""

    events: list[EventRow]
    # The user's channels among those events (membership decides what of them it may read).
    channels: dict[str, ReaderChannel]
    # Set when the walk of the log stopped at its bound before the page filled: every event up
    # to this seq was looked at (the reader continues from it).
    walked_to: int | None = None


# Few active channels: walk each channel's index (and the user's own events) and merge the
# first `limit` seqs, then fetch those rows. Many: walk the workspace's log, joining each event
# to the user's membership of its channel; the walk looks at no more than WALK_PER_EVENT rows
# per event of the page, so a page costs the same however sparse the user's events are.
FEW_CHANNELS = 64
WALK_PER_EVENT = 20

_BY_CHANNEL = f"""
WITH picked AS (
    SELECT DISTINCT seq FROM (
        SELECT s.seq FROM unnest($4::text[]) AS c(id)
        CROSS JOIN LATERAL (
            SELECT e.seq FROM events e
            WHERE e.workspace_id = $1 AND e.channel_id = c.id AND e.seq > $2 AND e.seq <= $5
            ORDER BY e.seq LIMIT $3
        ) s
        UNION ALL
        (
            SELECT e.seq FROM events e
            WHERE e.workspace_id = $1 AND e.user_id = $6 AND e.seq > $2 AND e.seq <= $5
            ORDER BY e.seq LIMIT $3
        )
        UNION ALL
        (
            -- Moderators' events, for moderators only ($7): one range of a small partial index.
            SELECT e.seq FROM events e
            WHERE $7::boolean AND e.workspace_id = $1 AND e.audience = 'moderators'
              AND e.seq > $2 AND e.seq <= $5
            ORDER BY e.seq LIMIT $3
        )
    ) candidates
    ORDER BY seq LIMIT $3
)
SELECT {_EVENT_COLUMNS} FROM picked
JOIN events e ON e.workspace_id = $1 AND e.seq = picked.seq
ORDER BY e.seq
"""  # noqa: S608 (constant SQL fragment, values are parameters)

# $1 workspace, $2 after, $3 limit, $4 where the walk ends, $5 user, $6 the user is a workspace
# moderator. The walk goes in seq order and stops at the limit; each event costs one probe of the
# user's membership of its channel.
_BY_LOG = f"""
SELECT {_EVENT_COLUMNS}, m.joined_at, c.deleted_at IS NOT NULL AS channel_deleted
FROM (
    SELECT * FROM events e
    WHERE e.workspace_id = $1 AND e.seq > $2 AND e.seq <= $4
      AND (e.user_id = $5 OR ($6::boolean AND e.audience = 'moderators') OR EXISTS (
          SELECT 1 FROM channel_members x
          WHERE x.workspace_id = $1 AND x.channel_id = e.channel_id AND x.user_id = $5
      ))
    ORDER BY e.seq LIMIT $3
) e
LEFT JOIN channel_members m
  ON m.workspace_id = $1 AND m.channel_id = e.channel_id AND m.user_id = $5
LEFT JOIN channels c ON c.workspace_id = $1 AND c.id = m.channel_id
ORDER BY e.seq
"""  # noqa: S608 (constant SQL fragment, values are parameters)


async def events_for_reader(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    user_id: str,
    after_seq: int,
    upto_seq: int,
    limit: int,
    *,
    moderator: bool = False,
) -> ReaderEvents:
    """Up to `limit` events in (`after_seq`, `upto_seq`] of the user's channels or about the
    user (and, for a workspace `moderator`, the moderators' events), in order. The caller
    filters them further by what the user may see of each channel."""
    active = await reader_channels(conn, workspace_id, user_id, after_seq, FEW_CHANNELS + 1)
    if len(active) <= FEW_CHANNELS:
        rows = await conn.fetch(
            _BY_CHANNEL,
            workspace_id,
            after_seq,
            limit,
            [c.channel_id for c in active],
            upto_seq,
            user_id,
            moderator,
        )
        return ReaderEvents([_event(r) for r in rows], {c.channel_id: c for c in active})
    # A workspace's seqs are consecutive (but for trimmed and erased events), so a range of
    # them bounds the walk; pages end early, at the range's end, when the user's events are
    # sparse in it.
    walk_end = min(upto_seq, after_seq + limit * WALK_PER_EVENT)
    rows = await conn.fetch(_BY_LOG, workspace_id, after_seq, limit, walk_end, user_id, moderator)
    channels = {
        r["channel_id"]: ReaderChannel(r["channel_id"], r["joined_at"], r["channel_deleted"])
        for r in rows
        if r["joined_at"] is not None
    }
    stopped = len(rows) < limit and walk_end < upto_seq
    return ReaderEvents([_event(r) for r in rows], channels, walk_end if stopped else None)


# ---- retention -----------------------------------------------------------------------------


async def workspaces_with_events(conn: asyncpg.Connection) -> list[uuid.UUID]:
    rows = await conn.fetch("SELECT workspace_id FROM event_positions ORDER BY workspace_id")
    return [r["workspace_id"] for r in rows]


async def trim_events(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, cutoff: datetime, batch: int
) -> int:
    """Remove up to `batch` of the workspace's oldest events written before `cutoff`; how many.

    Only a prefix of the log goes (stopping at the first newer event), so what is kept is
    always every event after `trimmed_seq`, which readers compare their position with.
    """
    async with conn.transaction():
        r = await conn.fetchrow(
            """
            WITH oldest AS (
                SELECT seq, created_at FROM events
                WHERE workspace_id = $1 AND seq > 0 ORDER BY seq LIMIT $3
            ),
            stop AS (SELECT min(seq) AS seq FROM oldest WHERE created_at >= $2),
            gone AS (
                DELETE FROM events e USING oldest o
                WHERE e.workspace_id = $1 AND e.seq = o.seq
                  AND o.seq < coalesce((SELECT seq FROM stop), 9223372036854775807)
                RETURNING e.seq
            )
            SELECT count(*) AS n, max(seq) AS upto FROM gone
            """,
            workspace_id,
            cutoff,
            batch,
        )
        removed = int(r["n"])
        if removed:
            await conn.execute(
                """
                UPDATE event_positions SET trimmed_seq = greatest(trimmed_seq, $2)
                WHERE workspace_id = $1
                """,
                workspace_id,
                int(r["upto"]),
            )
    return removed


async def remove_events_of_user(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> None:
    """Every event the user caused or that is about the user (a hard delete)."""
    await conn.execute(
        "DELETE FROM events WHERE workspace_id = $1 AND (actor_id = $2 OR user_id = $2)",
        workspace_id,
        user_id,
    )


async def remove_flag_events_about(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> None:
    """The moderators' events of flags about the user (a hard delete; its reports are the
    events it caused). Walks only the workspace's moderators' events (a partial index)."""
    await conn.execute(
        """
        DELETE FROM events
        WHERE workspace_id = $1 AND audience = 'moderators' AND payload->'flag'->>'user_id' = $2
        """,
        workspace_id,
        user_id,
    )
