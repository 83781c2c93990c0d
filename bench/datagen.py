"""Fill a deployment with a big chat history, fast, as the API would have written it.

Channels, users and memberships are made through the API (so their rows and events are the real
thing); the bulk of messages is written with a few set-based statements that produce exactly
the rows a `POST /v1/channels/{id}/messages` produces: the message (its search vector is a
generated column), its `message.new` event referring to it, numbered after everything already
in the log, the channel's last message, and the log positions the sequencer keeps. A test
(tests/system/test_datagen.py) checks the result through the public API.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import asyncpg
import httpx

# A small vocabulary, so that searches find many matches in a big workspace.
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
AUTHORS = 10
CHUNK = 50_000


@dataclass(frozen=True)
class Shape:
    messages: int
    channels: int
    # The share of messages in the first channel (the "hot" one).
    hot_share: float = 0.3


def channel_ids(count: int) -> list[str]:
    return [f"c{i:04d}" for i in range(count)]


async def make_channels(
    url: str, api_secret: str, shape: Shape, members: list[str], few: list[str]
) -> list[str]:
    """Channels through the API: `members` in every one, `few` only in the first two."""
    ids = channel_ids(shape.channels)
    headers = {"Authorization": f"Bearer {api_secret}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        for start in range(0, len(ids), 25):
            batch = ids[start : start + 25]
            replies = await asyncio.gather(
                *(
                    http.post(
                        "/v1/channels",
                        json={
                            "id": c,
                            "type": "group",
                            "name": f"channel {c}",
                            "members": members + (few if c in ids[:2] else []),
                            "user_id": members[0],
                        },
                    )
                    for c in batch
                )
            )
            for reply in replies:
                if reply.status_code != 201:
                    raise RuntimeError(f"creating a channel: {reply.status_code} {reply.text}")
    return ids


_FILL = """
WITH timed AS (
    SELECT i, $8::timestamptz - ($10 - i) * interval '1 millisecond' AS at,
           md5($1::uuid::text || ':' || i) AS h
    FROM generate_series($2::bigint, $3::bigint) AS i
),
src AS (
    SELECT i,
           -- A UUIDv7 from the message's time, as the server and the SDKs make them.
           (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
               || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid AS id,
           CASE WHEN i % 100 < $4 THEN 'c0000'
                ELSE 'c' || lpad((1 + i % ($5 - 1))::text, 4, '0') END AS channel_id,
           'w' || (i % $6) AS user_id,
           'message ' || i || ' ' || ($7::text[])[1 + i % cardinality($7::text[])]
               || ' ' || ($7::text[])[1 + (i / 7) % cardinality($7::text[])] AS text,
           at
    FROM timed
),
written AS (
    INSERT INTO messages (workspace_id, id, channel_id, user_id, text, created_at)
    SELECT $1::uuid, id, channel_id, user_id, text, at FROM src
)
INSERT INTO events (workspace_id, seq, type, channel_id, payload, created_at, message_id, actor_id)
SELECT $1::uuid, $9 + i, 'message.new', channel_id, '{}', at, id, user_id FROM src
"""

_FINISH = """
WITH latest AS (
    SELECT DISTINCT ON (channel_id) channel_id, id, created_at FROM messages
    WHERE workspace_id = $1 AND parent_id IS NULL
    ORDER BY channel_id, created_at DESC, id DESC
),
channels_done AS (
    UPDATE channels c SET last_message_id = l.id, last_message_at = l.created_at
    FROM latest l WHERE c.workspace_id = $1 AND c.id = l.channel_id
),
positions AS (
    INSERT INTO channel_event_positions AS p (workspace_id, channel_id, last_seq)
    SELECT $1, channel_id, max(seq) FROM events
    WHERE workspace_id = $1 AND channel_id IS NOT NULL GROUP BY channel_id
    ON CONFLICT (workspace_id, channel_id) DO UPDATE SET last_seq = EXCLUDED.last_seq
)
INSERT INTO event_positions AS p (workspace_id, last_seq)
SELECT $1, max(seq) FROM events WHERE workspace_id = $1
ON CONFLICT (workspace_id) DO UPDATE SET last_seq = EXCLUDED.last_seq
"""


async def fill_messages(
    dsn: str, workspace_id: uuid.UUID, shape: Shape, *, progress: bool = False
) -> None:
    """`shape.messages` messages by authors w0..w9 over `shape.channels` channels, 1 ms apart
    and the last one now (so a message sent afterwards is newer), each with its `message.new`
    event. The channels and authors must exist already."""
    conn = await asyncpg.connect(dsn)
    try:
        # Nothing of this workspace may wait for the sequencer while the log is extended.
        for _ in range(600):
            if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM events WHERE seq < 0 AND workspace_id = $1)",
                workspace_id,
            ):
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("events of the workspace stayed unnumbered for a minute")
        base_seq = await conn.fetchval(
            "SELECT coalesce(max(seq), 0) FROM events WHERE workspace_id = $1", workspace_id
        )
        started = await conn.fetchval("SELECT now()")
        hot = round(shape.hot_share * 100)
        for first in range(1, shape.messages + 1, CHUNK):
            last = min(first + CHUNK - 1, shape.messages)
            await conn.execute(
                _FILL,
                workspace_id,
                first,
                last,
                hot,
                shape.channels,
                AUTHORS,
                WORDS,
                started,
                base_seq,
                shape.messages,
            )
            if progress:
                print(f"  {last:,} of {shape.messages:,} messages", flush=True)
        await conn.execute(_FINISH, workspace_id)
    finally:
        await conn.close()


async def analyze(dsn: str) -> None:
    """Up-to-date statistics and visibility map, as autovacuum would leave them, and the bulk
    load written out: otherwise the first reads of each page evict dirty buffers and write them
    (timings of a database minutes after a million-row load, not of one in service)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
        try:
            await conn.execute("CHECKPOINT")
        except asyncpg.InsufficientPrivilegeError:
            print("note: not allowed to CHECKPOINT; the first reads may write out the load")
    finally:
        await conn.close()
