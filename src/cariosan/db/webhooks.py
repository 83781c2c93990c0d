"""SQL for webhook endpoints and their deliveries (the outbox the worker drains).

The deliveries themselves are queued by the event sequencer (`db/events.sequence_pending`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

_ENDPOINT_COLUMNS = "id, url, events, enabled, disabled_reason, created_at"
_DELIVERY_COLUMNS = (
    "id, endpoint_id, event_type, seq, status, attempts, last_status_code, last_error, "
    "next_attempt_at, created_at"
)


@dataclass(frozen=True)
class EndpointRow:
    id: uuid.UUID
    url: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None
    created_at: datetime


@dataclass(frozen=True)
class DeliveryRow:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_type: str
    seq: int
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime


@dataclass(frozen=True)
class Claim:
    """A delivery a worker took for one attempt; `lease` fences the outcome it records."""

    workspace_id: uuid.UUID
    id: uuid.UUID
    endpoint_id: uuid.UUID
    url: str
    secrets: list[str]
    # Empty for deliveries queued by this release: the worker makes it from event `seq`.
    body: str
    attempts: int
    lease: uuid.UUID
    seq: int = 0


def _endpoint(r: asyncpg.Record) -> EndpointRow:
    return EndpointRow(
        r["id"], r["url"], list(r["events"]), r["enabled"], r["disabled_reason"], r["created_at"]
    )


def _delivery(r: asyncpg.Record) -> DeliveryRow:
    return DeliveryRow(
        r["id"],
        r["endpoint_id"],
        r["event_type"],
        r["seq"],
        r["status"],
        r["attempts"],
        r["last_status_code"],
        r["last_error"],
        r["next_attempt_at"],
        r["created_at"],
    )


async def insert_endpoint(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    url: str,
    events: list[str],
    secret: str,
) -> EndpointRow:
    r = await conn.fetchrow(
        f"""
        INSERT INTO webhook_endpoints (workspace_id, id, url, events, secret)
        VALUES ($1, $2, $3, $4, $5)
        RETURNING {_ENDPOINT_COLUMNS}
        """,  # noqa: S608 (constant column list)
        workspace_id,
        endpoint_id,
        url,
        events,
        secret,
    )
    return _endpoint(r)


async def list_endpoints(conn: asyncpg.Connection, workspace_id: uuid.UUID) -> list[EndpointRow]:
    rows = await conn.fetch(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE workspace_id = $1 "  # noqa: S608
        "ORDER BY created_at, id",
        workspace_id,
    )
    return [_endpoint(r) for r in rows]


async def endpoint_exists(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, endpoint_id: uuid.UUID
) -> bool:
    found = await conn.fetchval(
        "SELECT true FROM webhook_endpoints WHERE workspace_id = $1 AND id = $2",
        workspace_id,
        endpoint_id,
    )
    return bool(found)


async def delete_endpoint(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, endpoint_id: uuid.UUID
) -> bool:
    """Remove the endpoint with its delivery log."""
    result = await conn.execute(
        "DELETE FROM webhook_endpoints WHERE workspace_id = $1 AND id = $2",
        workspace_id,
        endpoint_id,
    )
    return bool(result != "DELETE 0")


async def rotate_secret(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    secret: str,
    grace_seconds: float,
) -> EndpointRow | None:
    """Sign with `secret` from now on, and with the current one too for `grace_seconds`."""
    r = await conn.fetchrow(
        f"""
        UPDATE webhook_endpoints SET
            previous_secret = secret,
            previous_secret_expires_at = now() + $4::float8 * interval '1 second',
            secret = $3
        WHERE workspace_id = $1 AND id = $2
        RETURNING {_ENDPOINT_COLUMNS}
        """,  # noqa: S608
        workspace_id,
        endpoint_id,
        secret,
        grace_seconds,
    )
    return None if r is None else _endpoint(r)


async def list_deliveries(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    status: str | None,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[DeliveryRow]:
    """Deliveries of an endpoint, newest first, after the `before` position of a cursor."""
    rows = await conn.fetch(
        f"""
        SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries
        WHERE workspace_id = $1 AND endpoint_id = $2
          AND ($3::text IS NULL OR status = $3)
          AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
        ORDER BY created_at DESC, id DESC
        LIMIT $6
        """,  # noqa: S608
        workspace_id,
        endpoint_id,
        status,
        None if before is None else before[0],
        None if before is None else before[1],
        limit,
    )
    return [_delivery(r) for r in rows]


async def replay_delivery(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> bool:
    """Make the delivery pending and due now, with a fresh retry schedule; the endpoint is
    enabled again (asking for a replay says the receiver is back)."""
    result = await conn.execute(
        """
        UPDATE webhook_deliveries SET
            status = 'pending', attempts = 0, next_attempt_at = now(), lease = NULL,
            updated_at = now()
        WHERE workspace_id = $1 AND endpoint_id = $2 AND id = $3
        """,
        workspace_id,
        endpoint_id,
        delivery_id,
    )
    if result == "UPDATE 0":
        return False
    await conn.execute(
        "UPDATE webhook_endpoints SET enabled = true, disabled_reason = NULL "
        "WHERE workspace_id = $1 AND id = $2 AND NOT enabled",
        workspace_id,
        endpoint_id,
    )
    return True


async def claim_due(
    conn: asyncpg.Connection,
    limit: int,
    lease_seconds: float,
    *,
    per_endpoint: int | None = None,
    skip_endpoints: list[uuid.UUID] | None = None,
) -> list[Claim]:
    """Take up to `limit` due deliveries of enabled endpoints for one attempt each, at most
    `per_endpoint` of any one endpoint and none of `skip_endpoints` (so that one slow or dead
    receiver cannot take every slot of a worker from the other endpoints).

    One statement, so it commits at once: the rows are locked (`SKIP LOCKED`: concurrent workers
    take different rows) only while they are pushed `lease_seconds` into the future, never during
    the HTTP call. A worker that dies mid-call leaves its rows due again once the lease ends.
    """
    rows = await conn.fetch(
        """
        WITH locked AS (
            -- A few more rows than wanted, locked (others skip them) so that the per-endpoint
            -- cap below is applied to rows this worker alone holds. The conditions are checked
            -- again on a row's latest version once it is locked.
            SELECT d.workspace_id, d.id, d.endpoint_id, d.next_attempt_at
            FROM webhook_deliveries d
            JOIN webhook_endpoints w ON w.workspace_id = d.workspace_id AND w.id = d.endpoint_id
            WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND w.enabled
              AND NOT (d.endpoint_id = ANY($4::uuid[]))
            ORDER BY d.next_attempt_at
            LIMIT $1 * 4
            FOR UPDATE OF d SKIP LOCKED
        ),
        due AS (
            SELECT workspace_id, id FROM (
                SELECT workspace_id, id, next_attempt_at, row_number() OVER (
                    PARTITION BY workspace_id, endpoint_id ORDER BY next_attempt_at
                ) AS n
                FROM locked
            ) ranked
            WHERE n <= $3
            ORDER BY next_attempt_at
            LIMIT $1
        )
        UPDATE webhook_deliveries d SET
            attempts = d.attempts + 1,
            next_attempt_at = now() + $2::float8 * interval '1 second',
            lease = gen_random_uuid(),
            updated_at = now()
        FROM due, webhook_endpoints w
        WHERE d.workspace_id = due.workspace_id AND d.id = due.id
          AND w.workspace_id = d.workspace_id AND w.id = d.endpoint_id
        RETURNING d.workspace_id, d.id, d.endpoint_id, d.body, d.attempts, d.lease, d.seq, w.url,
                  w.secret, w.previous_secret, (w.previous_secret_expires_at > now()) AS both
        """,
        limit,
        lease_seconds,
        per_endpoint or limit,
        skip_endpoints or [],
    )
    return [
        Claim(
            workspace_id=r["workspace_id"],
            id=r["id"],
            endpoint_id=r["endpoint_id"],
            url=r["url"],
            secrets=[r["secret"], *([r["previous_secret"]] if r["both"] else [])],
            body=r["body"],
            attempts=r["attempts"],
            lease=r["lease"],
            seq=r["seq"],
        )
        for r in rows
    ]


async def record_attempt(
    conn: asyncpg.Connection,
    claim: Claim,
    *,
    status: str,
    status_code: int | None,
    error: str | None,
    retry_in: float | None = None,
) -> bool:
    """Record the outcome of the claimed attempt: `succeeded`, `failed`, or `pending` again
    (due in `retry_in` seconds). False when the claim was superseded (replayed meanwhile)."""
    result = await conn.execute(
        """
        UPDATE webhook_deliveries SET
            status = $4,
            last_status_code = $5,
            last_error = $6,
            next_attempt_at = CASE WHEN $4 = 'pending'
                THEN now() + $7::float8 * interval '1 second' ELSE next_attempt_at END,
            lease = NULL,
            updated_at = now()
        WHERE workspace_id = $1 AND id = $2 AND lease = $3 AND status = 'pending'
        """,
        claim.workspace_id,
        claim.id,
        claim.lease,
        status,
        status_code,
        error,
        retry_in or 0.0,
    )
    return bool(result != "UPDATE 0")


async def disable_endpoint(
    conn: asyncpg.Connection, claim: Claim, status_code: int, reason: str
) -> None:
    """The receiver is gone for good: stop the endpoint and fail its pending deliveries."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $3 "
            "WHERE workspace_id = $1 AND id = $2",
            claim.workspace_id,
            claim.endpoint_id,
            reason,
        )
        await conn.execute(
            """
            UPDATE webhook_deliveries SET status = 'failed', lease = NULL, updated_at = now(),
                last_status_code = CASE WHEN id = $3 THEN $4 ELSE last_status_code END,
                last_error = CASE WHEN id = $3 THEN $5 ELSE 'endpoint disabled: ' || $5 END
            WHERE workspace_id = $1 AND endpoint_id = $2 AND status = 'pending'
            """,
            claim.workspace_id,
            claim.endpoint_id,
            claim.id,
            status_code,
            reason,
        )


async def queue_stats(conn: asyncpg.Connection) -> tuple[int, float]:
    """Pending deliveries of every workspace, and the age in seconds of the oldest one."""
    r = await conn.fetchrow(
        """
        SELECT count(*) AS depth,
               coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest
        FROM webhook_deliveries WHERE status = 'pending'
        """
    )
    return int(r["depth"]), float(r["oldest"])


async def trim_deliveries(conn: asyncpg.Connection, cutoff: datetime, batch: int) -> int:
    """Remove up to `batch` finished deliveries last changed before `cutoff`; how many."""
    result = await conn.execute(
        """
        DELETE FROM webhook_deliveries WHERE ctid IN (
            SELECT ctid FROM webhook_deliveries
            WHERE status <> 'pending' AND updated_at < $1
            LIMIT $2
        )
        """,
        cutoff,
        batch,
    )
    return int(result.split()[-1])
