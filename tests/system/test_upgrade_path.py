"""Upgrades lose nothing: starting from an empty database, every schema version is reached in
turn, with rows written at each version (into every table that exists then), and each migration
must leave every earlier row exactly as it was."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from cariosan.db import schema

Seed = Callable[[asyncpg.Connection, uuid.UUID, int], Awaitable[None]]


async def _seed_workspaces(conn: asyncpg.Connection, ws: uuid.UUID, step: int) -> None:
    await conn.execute("INSERT INTO workspaces (id, name) VALUES ($1, $2)", ws, f"ws {step}")
    await conn.execute(
        "INSERT INTO api_secrets (workspace_id, secret_hash) VALUES ($1, $2)",
        ws,
        uuid.uuid4().bytes,
    )
    await conn.execute(
        "INSERT INTO deployment_facts (key, value) VALUES ($1, $2)", f"fact-{step}", str(step)
    )


async def _seed_chat(conn: asyncpg.Connection, ws: uuid.UUID, step: int) -> None:
    message = uuid.uuid5(ws, "message")
    await conn.execute(
        "INSERT INTO users (workspace_id, id, name, data) VALUES ($1, 'alice', 'Alice', $2)",
        ws,
        json.dumps({"step": step}),
    )
    await conn.execute(
        "INSERT INTO channels (workspace_id, id, type, name) VALUES ($1, 'room', 'group', 'R')",
        ws,
    )
    await conn.execute(
        "INSERT INTO messages (workspace_id, id, channel_id, user_id, text) "
        "VALUES ($1, $2, 'room', 'alice', $3)",
        ws,
        message,
        f"written at step {step}",
    )
    await conn.execute(
        "INSERT INTO channel_members (workspace_id, channel_id, user_id, last_read_message_id) "
        "VALUES ($1, 'room', 'alice', $2)",
        ws,
        message,
    )
    await conn.execute(
        "INSERT INTO reactions (workspace_id, message_id, type, user_id) "
        "VALUES ($1, $2, 'like', 'alice')",
        ws,
        message,
    )
    await conn.execute(
        "INSERT INTO events (workspace_id, seq, type, channel_id, payload) "
        "VALUES ($1, 1, 'message.new', 'room', $2)",
        ws,
        json.dumps({"id": str(message)}),
    )


async def _seed_webhooks(conn: asyncpg.Connection, ws: uuid.UUID, step: int) -> None:
    endpoint = uuid.uuid5(ws, "endpoint")
    await conn.execute(
        "INSERT INTO webhook_endpoints (workspace_id, id, url, events, secret) "
        "VALUES ($1, $2, 'https://example.com/hook', '{*}', 'whsec_c2VjcmV0')",
        ws,
        endpoint,
    )
    await conn.execute(
        "INSERT INTO webhook_deliveries (workspace_id, id, endpoint_id, event_type, seq, body) "
        "VALUES ($1, $2, $3, 'message.new', 1, '{}')",
        ws,
        uuid.uuid5(ws, "delivery"),
        endpoint,
    )


async def _seed_attachments(conn: asyncpg.Connection, ws: uuid.UUID, step: int) -> None:
    attachment = uuid.uuid5(ws, "attachment")
    await conn.execute(
        "INSERT INTO attachments (workspace_id, id, channel_id, user_id, filename, "
        "content_type, size, object_key) VALUES ($1, $2, 'room', 'alice', 'a.png', "
        "'image/png', 10, $3)",
        ws,
        attachment,
        f"{ws}/{attachment}/a.png",
    )


async def _seed_event_log(conn: asyncpg.Connection, ws: uuid.UUID, step: int) -> None:
    # An event written the way this release writes them: unnumbered, referring to its message,
    # and the positions the sequencer keeps.
    await conn.execute(
        "INSERT INTO events (workspace_id, seq, type, channel_id, payload, message_id, actor_id) "
        "VALUES ($1, -nextval('event_provisional_seq'), 'message.new', 'room', '{}', $2, 'alice')",
        ws,
        uuid.uuid5(ws, "message"),
    )
    await conn.execute("INSERT INTO event_positions (workspace_id, last_seq) VALUES ($1, 1)", ws)
    await conn.execute(
        "INSERT INTO channel_event_positions (workspace_id, channel_id, last_seq) "
        "VALUES ($1, 'room', 1)",
        ws,
    )


async def _seed_revocation(conn: asyncpg.Connection, ws: uuid.UUID, step: int) -> None:
    await conn.execute(
        "UPDATE users SET tokens_valid_after = now() WHERE workspace_id = $1 AND id = 'alice'", ws
    )
    # A fingerprint names a secret, not a workspace: the step's workspace id stands in for one.
    await conn.execute("INSERT INTO jwt_keys (fingerprint, retired_at) VALUES ($1, now())", str(ws))


async def _seed_attachment_seal(conn: asyncpg.Connection, ws: uuid.UUID, step: int) -> None:
    # The step's attachment (seeded just before) sent: served from its verified copy.
    attachment = uuid.uuid5(ws, "attachment")
    await conn.execute(
        "UPDATE attachments SET message_id = $3, referenced_at = now(), object_key = $4, "
        "checksum = $5, tidied_at = now() WHERE workspace_id = $1 AND id = $2",
        ws,
        attachment,
        uuid.uuid5(ws, "message"),
        f"{ws}/{attachment}/0123456789abcdef/a.png",
        f"etag:{uuid.uuid5(ws, 'bytes').hex}",
    )


async def _seed_audit_log(conn: asyncpg.Connection, ws: uuid.UUID, step: int) -> None:
    await conn.execute(
        "INSERT INTO audit_log (workspace_id, id, actor, action, target, reason, data) "
        "VALUES ($1, $2, 'backend', 'user.role_changed', 'user:alice', $3, $4)",
        ws,
        uuid.uuid5(ws, "audit"),
        f"step {step}",
        json.dumps({"from": "user", "to": "moderator"}),
    )


async def _seed_bans(conn: asyncpg.Connection, ws: uuid.UUID, step: int) -> None:
    await conn.execute(
        "INSERT INTO bans (workspace_id, id, user_id, channel_id, reason, shadow, created_by) "
        "VALUES ($1, $2, 'alice', 'room', $3, true, 'backend')",
        ws,
        uuid.uuid5(ws, "ban"),
        f"step {step}",
    )
    await conn.execute(
        "UPDATE messages SET shadow = true WHERE workspace_id = $1 AND id = $2",
        ws,
        uuid.uuid5(ws, "message"),
    )


async def _seed_flags(conn: asyncpg.Connection, ws: uuid.UUID, step: int) -> None:
    await conn.execute(
        "INSERT INTO flags (workspace_id, id, message_id, channel_id, user_id, reporter_id, "
        "reason) VALUES ($1, $2, $3, 'room', 'alice', 'backend', $4)",
        ws,
        uuid.uuid5(ws, "flag"),
        uuid.uuid5(ws, "message"),
        f"step {step}",
    )
    await conn.execute(
        "INSERT INTO events (workspace_id, seq, type, payload, audience) VALUES "
        "($1, -nextval('event_provisional_seq'), 'message.flagged', '{}', 'moderators')",
        ws,
    )


async def _seed_mutes_blocks(conn: asyncpg.Connection, ws: uuid.UUID, step: int) -> None:
    await conn.execute("INSERT INTO users (workspace_id, id, name) VALUES ($1, 'bob', 'Bob')", ws)
    await conn.execute(
        "INSERT INTO channel_mutes (workspace_id, user_id, channel_id) "
        "VALUES ($1, 'alice', 'room')",
        ws,
    )
    await conn.execute(
        "INSERT INTO user_mutes (workspace_id, user_id, muted_id, expires_at) "
        "VALUES ($1, 'alice', 'bob', now() + interval '1 day')",
        ws,
    )
    await conn.execute(
        "INSERT INTO user_blocks (workspace_id, user_id, blocked_id) VALUES ($1, 'bob', 'alice')",
        ws,
    )


async def _seed_pins_slow_mode(conn: asyncpg.Connection, ws: uuid.UUID, step: int) -> None:
    # Fills the new columns of rows earlier versions write: still one message per step.
    await conn.execute(
        "UPDATE messages SET pinned_at = now(), pinned_by = 'alice' "
        "WHERE workspace_id = $1 AND id = $2",
        ws,
        uuid.uuid5(ws, "message"),
    )
    await conn.execute(
        "UPDATE channels SET cooldown_seconds = $2, frozen = true WHERE workspace_id = $1",
        ws,
        step,
    )
    await conn.execute(
        "UPDATE channel_members SET last_sent_at = now() WHERE workspace_id = $1", ws
    )


# Rows valid at each schema version, written at that version and at every later one. A new
# migration adds its entry here, so that its tables carry data through later upgrades too.
# Each entry: (the seed, a table it writes one row to per step, counted at the end), or None for
# a migration that adds no table or column to write (indexes only: earlier seeds' rows use them).
SEEDS: dict[int, tuple[Seed, str] | None] = {
    1: (_seed_workspaces, "workspaces"),
    2: (_seed_chat, "messages"),
    3: (_seed_webhooks, "webhook_deliveries"),
    4: (_seed_attachments, "attachments"),
    5: (_seed_event_log, "channel_event_positions"),
    6: None,
    7: (_seed_revocation, "jwt_keys"),
    # Fills the new columns of the row version 4 writes: still one attachment per step.
    8: (_seed_attachment_seal, "attachments"),
    9: (_seed_audit_log, "audit_log"),
    10: (_seed_bans, "bans"),
    11: (_seed_flags, "flags"),
    12: (_seed_mutes_blocks, "user_blocks"),
    13: (_seed_pins_slow_mode, "messages"),
    # Indexes only (the user directory and the user's rows for exports and hard deletes).
    14: None,
    # A function only (the common send, db/messages.send_plain_batch): no table or column.
    15: None,
}


async def _columns(conn: asyncpg.Connection) -> dict[str, list[str]]:
    rows = await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name <> 'schema_migrations' "
        "ORDER BY table_name, ordinal_position"
    )
    columns: dict[str, list[str]] = {}
    for r in rows:
        columns.setdefault(r["table_name"], []).append(r["column_name"])
    return columns


async def _rows(conn: asyncpg.Connection, columns: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each table's rows as sorted JSON, over the given columns only (later migrations may add
    columns: those are not part of what earlier rows held)."""
    found = {}
    for table, names in columns.items():
        picked = ", ".join(f'"{n}"' for n in names)
        query = f'SELECT to_jsonb(x)::text FROM (SELECT {picked} FROM "{table}") x ORDER BY 1'
        found[table] = [r[0] for r in await conn.fetch(query)]
    return found


async def test_every_version_in_turn_keeps_every_row(empty_database_url: str) -> None:
    migrations = schema.load_migrations()
    unseeded = [m.filename for m in migrations if m.version not in SEEDS]
    assert not unseeded, f"add rows for {unseeded} to SEEDS in {__file__}"
    conn = await asyncpg.connect(empty_database_url)
    try:
        for step, migration in enumerate(migrations, start=1):
            columns = await _columns(conn)
            before = await _rows(conn, columns)
            report = await schema.migrate(conn, migrations[:step])
            assert [m.version for m in report.applied_now] == [migration.version]
            after = await _rows(conn, columns)
            for table in before:
                assert after[table] == before[table], (
                    f"{migration.filename} changed or lost rows of {table}"
                )
            workspace = uuid.uuid5(uuid.NAMESPACE_URL, f"cariosan-upgrade-step-{step}")
            async with conn.transaction():
                for version, entry in SEEDS.items():
                    if entry is not None and version <= migration.version:
                        await entry[0](conn, workspace, step)
        # Every step's rows are all there at the end, in every table (a migration may also
        # have filled a new table from older rows: those belong to earlier steps' workspaces).
        final = await _rows(conn, await _columns(conn))
        for version, entry in SEEDS.items():
            if entry is None:
                continue
            table = entry[1]
            first_step = next(i for i, m in enumerate(migrations, 1) if m.version >= version)
            seeded = {
                str(uuid.uuid5(uuid.NAMESPACE_URL, f"cariosan-upgrade-step-{step}"))
                for step in range(first_step, len(migrations) + 1)
            }
            rows = [json.loads(r) for r in final[table]]
            owner = ("workspace_id", "id", "fingerprint")
            mine = [r for r in rows if next((r[k] for k in owner if k in r), None) in seeded]
            assert len(mine) == len(migrations) - first_step + 1, table
    finally:
        await conn.close()
