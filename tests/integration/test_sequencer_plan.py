"""The sequencer's round reaches events through indexes, whatever the planner's statistics say
(db/events.py ROUND_SETTINGS): a fresh or just restored database has none until autovacuum's
first pass, and a plan that reads the whole event log would then run on every round."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg

from cariosan.db import events


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def test_a_round_numbers_pending_events_through_indexes_without_statistics(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        workspace = uuid.uuid4()
        # A log of 3,000 numbered events and 3 pending ones, never analysed.
        await conn.execute(
            """
            INSERT INTO events (workspace_id, seq, type, channel_id, payload)
            SELECT $1, n, 'message.new', 'c' || (n % 10), '{}' FROM generate_series(1, 3000) n
            """,
            workspace,
        )
        await conn.execute(
            "INSERT INTO event_positions (workspace_id, last_seq) VALUES ($1, 3000)", workspace
        )
        await conn.execute(
            """
            INSERT INTO events (workspace_id, seq, type, channel_id, payload)
            SELECT $1, -nextval('event_provisional_seq'), 'message.new', 'c1', '{}'
            FROM generate_series(1, 3)
            """,
            workspace,
        )
        async with conn.transaction():
            await conn.execute(events.ROUND_SETTINGS)
            explained = await conn.fetchval("EXPLAIN (FORMAT JSON) " + events._NUMBER, 2000)
        nodes = list(_nodes(json.loads(explained)[0]["Plan"]))
        scans = [
            (n["Node Type"], n.get("Index Name"))
            for n in nodes
            if n.get("Relation Name") == "events"
        ]
        assert scans, nodes
        assert all(kind != "Seq Scan" for kind, _ in scans), scans
        assert not any(n["Node Type"] in ("Hash Join", "Merge Join") for n in nodes), nodes

        numbered = await events.sequence_pending(conn, 2000)
        assert numbered.count == 3 and numbered.last_seqs == {workspace: 3003}
        seqs = await conn.fetch(
            "SELECT seq FROM events WHERE workspace_id = $1 AND seq > 3000 ORDER BY seq",
            workspace,
        )
        assert [r["seq"] for r in seqs] == [3001, 3002, 3003]
        assert not await events.has_pending(conn)
    finally:
        await conn.close()
