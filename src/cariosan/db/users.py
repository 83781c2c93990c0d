"""SQL for users."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

_COLUMNS = "id, name, image_url, role, data, created_at, updated_at, deleted_at, last_active_at"


@dataclass(frozen=True)
class UserRow:
    id: str
    name: str | None
    image_url: str | None
    role: str
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    last_active_at: datetime | None


def _row(r: asyncpg.Record) -> UserRow:
    return UserRow(
        r["id"],
        r["name"],
        r["image_url"],
        r["role"],
        json.loads(r["data"]),
        r["created_at"],
        r["updated_at"],
        r["deleted_at"],
        r["last_active_at"],
    )


async def get_user(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> UserRow | None:
    r = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM users WHERE workspace_id = $1 AND id = $2",  # noqa: S608
        workspace_id,
        user_id,
    )
    return None if r is None else _row(r)


async def upsert_user(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    user_id: str,
    *,
    name: str | None,
    image_url: str | None,
    role: str | None,
    data: dict[str, Any] | None,
    fields_set: frozenset[str],
) -> tuple[UserRow, bool]:
    """Create the user, or update the fields given; (row, created). Upserting a deleted
    (anonymized) user brings it back."""
    r = await conn.fetchrow(
        f"""
        INSERT INTO users (workspace_id, id, name, image_url, role, data)
        VALUES ($1, $2, $3, $4, coalesce($5, 'user'), coalesce($6::jsonb, '{{}}'))
        ON CONFLICT (workspace_id, id) DO UPDATE SET
            name = CASE WHEN $7 THEN EXCLUDED.name ELSE users.name END,
            image_url = CASE WHEN $8 THEN EXCLUDED.image_url ELSE users.image_url END,
            role = CASE WHEN $9 THEN EXCLUDED.role ELSE users.role END,
            data = CASE WHEN $10 THEN EXCLUDED.data ELSE users.data END,
            -- Brought back from a delete: no token of its former life works again.
            tokens_valid_after = CASE WHEN users.deleted_at IS NULL
                THEN users.tokens_valid_after ELSE clock_timestamp() END,
            deleted_at = NULL,
            updated_at = now()
        RETURNING {_COLUMNS}, (xmax = 0) AS created
        """,  # noqa: S608
        workspace_id,
        user_id,
        name,
        image_url,
        role,
        None if data is None else json.dumps(data),
        "name" in fields_set,
        "image_url" in fields_set,
        "role" in fields_set and role is not None,
        "data" in fields_set and data is not None,
    )
    return _row(r), bool(r["created"])


async def existing_user_ids(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_ids: list[str]
) -> set[str]:
    rows = await conn.fetch(
        "SELECT id FROM users WHERE workspace_id = $1 AND id = ANY($2::text[]) "
        "AND deleted_at IS NULL",
        workspace_id,
        user_ids,
    )
    return {r["id"] for r in rows}


async def anonymize_user(conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str) -> bool:
    """Keep the id (messages still reference it), drop what identifies the person."""
    result = await conn.execute(
        "UPDATE users SET name = NULL, image_url = NULL, data = '{}', deleted_at = now(), "
        "updated_at = now(), tokens_valid_after = clock_timestamp() "
        "WHERE workspace_id = $1 AND id = $2",
        workspace_id,
        user_id,
    )
    return bool(result != "UPDATE 0")


@dataclass(frozen=True)
class RemovedMembership:
    channel_id: str
    role: str
    joined_at: datetime


async def hard_delete_user(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> list[RemovedMembership] | None:
    """Remove the user with its messages, reactions and memberships; the memberships it had
    in channels not deleted (for their `member.removed`), or None when there was no user."""
    await conn.execute(
        "DELETE FROM reactions WHERE workspace_id = $1 AND user_id = $2", workspace_id, user_id
    )
    await conn.execute(
        "DELETE FROM messages WHERE workspace_id = $1 AND user_id = $2", workspace_id, user_id
    )
    removed = await conn.fetch(
        """
        DELETE FROM channel_members m WHERE m.workspace_id = $1 AND m.user_id = $2
        RETURNING m.channel_id, m.role, m.joined_at, EXISTS (
            SELECT 1 FROM channels c
            WHERE c.workspace_id = m.workspace_id AND c.id = m.channel_id
              AND c.deleted_at IS NULL) AS live
        """,
        workspace_id,
        user_id,
    )
    result = await conn.execute(
        "DELETE FROM users WHERE workspace_id = $1 AND id = $2", workspace_id, user_id
    )
    if result == "DELETE 0":
        return None
    return [
        RemovedMembership(r["channel_id"], r["role"], r["joined_at"])
        for r in sorted(removed, key=lambda r: r["channel_id"])
        if r["live"]
    ]


async def revoke_tokens(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> datetime | None:
    """Refuse every token of the user minted before now; the new `tokens_valid_after`, or None
    when there is no such user."""
    value = await conn.fetchval(
        "UPDATE users SET tokens_valid_after = clock_timestamp() "
        "WHERE workspace_id = $1 AND id = $2 RETURNING tokens_valid_after",
        workspace_id,
        user_id,
    )
    return value if isinstance(value, datetime) else None


@dataclass(frozen=True)
class TokenCheck:
    role: str
    # Tokens minted before this are refused; None: every token of the user (older rows).
    tokens_valid_after: datetime | None


async def token_check(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> TokenCheck | None:
    """What a user token is checked against; None when the user is gone or deleted."""
    r = await conn.fetchrow(
        "SELECT role, tokens_valid_after FROM users "
        "WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL",
        workspace_id,
        user_id,
    )
    return None if r is None else TokenCheck(r["role"], r["tokens_valid_after"])


UserKey = tuple[uuid.UUID, str]


async def token_checks(conn: asyncpg.Connection, keys: list[UserKey]) -> dict[UserKey, TokenCheck]:
    """token_check for several users in one round trip; a user missing from the result is gone
    or deleted. A lone key takes the single-row statement, whose plan is cached: the array form
    is planned anew on each call (its arrays' lengths make every custom plan look cheaper)."""
    if len(keys) == 1:
        (workspace_id, user_id) = keys[0]
        one = await token_check(conn, workspace_id, user_id)
        return {} if one is None else {keys[0]: one}
    rows = await conn.fetch(
        "SELECT u.workspace_id, u.id, u.role, u.tokens_valid_after "
        "FROM unnest($1::uuid[], $2::text[]) AS k (workspace_id, id) "
        "JOIN users u ON u.workspace_id = k.workspace_id AND u.id = k.id "
        "WHERE u.deleted_at IS NULL",
        [workspace_id for workspace_id, _ in keys],
        [user_id for _, user_id in keys],
    )
    return {
        (r["workspace_id"], r["id"]): TokenCheck(r["role"], r["tokens_valid_after"]) for r in rows
    }


async def issue_time(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> datetime | None:
    """The database clock now, for a token's issue time; None unless the user is active."""
    value = await conn.fetchval(
        "SELECT clock_timestamp() FROM users "
        "WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL",
        workspace_id,
        user_id,
    )
    return value if isinstance(value, datetime) else None


async def auth_lookup(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> str | None:
    """The role of an active (not deleted) user, for authentication; None if there is none."""
    role = await conn.fetchval(
        "SELECT role FROM users WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL",
        workspace_id,
        user_id,
    )
    return role if isinstance(role, str) else None


async def database_now(conn: asyncpg.Connection) -> datetime:
    """PostgreSQL's clock now (the clock token issue times are read from)."""
    value = await conn.fetchval("SELECT clock_timestamp()")
    assert isinstance(value, datetime)
    return value


# ---- the user directory (GET /v1/users) ------------------------------------------------------

# $1 workspace, $2 the id to continue after ('' for the first page: ids are never empty),
# $3 the page size, then for a search $4 the lowered prefix, $5 its LIKE pattern (wildcards
# escaped), $6 the exclusive upper bound of the prefix range, and for a user's view $7 (or $4)
# that user. Each variant is its own statement without `$n IS NULL OR`, so that a generic plan
# still uses the indexes: the ~>=~ / ~<~ range makes users_*_prefix_idx a range (a LIKE with a
# parameter cannot), the LIKE is the exact test, and `id > $2` bounds the primary key.
_MATCH = """
  AND u.id IN (
      SELECT x.id FROM users x
      WHERE x.workspace_id = $1 AND x.deleted_at IS NULL
        AND lower(x.id) ~>=~ $4 AND lower(x.id) ~<~ $6 AND lower(x.id) LIKE $5 ESCAPE '\\'
      UNION
      SELECT x.id FROM users x
      WHERE x.workspace_id = $1 AND x.deleted_at IS NULL
        AND lower(x.name) ~>=~ $4 AND lower(x.name) ~<~ $6 AND lower(x.name) LIKE $5 ESCAPE '\\'
  )"""

# Driven by the user's own memberships (a semi-join, no OR), so a user in a few channels of a
# big workspace costs its channels' members, never a walk of the workspace's users.
_SHARING = """
  AND u.id IN (
      SELECT ${n}::text
      UNION
      SELECT theirs.user_id FROM channel_members mine
      JOIN channels c ON c.workspace_id = mine.workspace_id AND c.id = mine.channel_id
      JOIN channel_members theirs
        ON theirs.workspace_id = mine.workspace_id AND theirs.channel_id = mine.channel_id
      WHERE mine.workspace_id = $1 AND mine.user_id = ${n} AND c.deleted_at IS NULL
  )"""


def directory_sql(*, search: bool, sharing: bool) -> str:
    """The directory statement for a search or not, everyone or one user's view."""
    match = _MATCH if search else ""
    scope = _SHARING.replace("{n}", "7" if search else "4") if sharing else ""
    return f"""
SELECT {_COLUMNS} FROM users u
WHERE u.workspace_id = $1 AND u.deleted_at IS NULL AND u.id > $2{match}{scope}
ORDER BY u.id
LIMIT $3
"""  # noqa: S608 (constant SQL fragments, values are parameters)


async def lowered(conn: asyncpg.Connection, text: str) -> str:
    """`text` lowered by PostgreSQL, so that a prefix compares with `lower(id)` exactly as the
    database lowers (its locale, not Python's)."""
    value = await conn.fetchval("SELECT lower($1::text)", text)
    assert isinstance(value, str)
    return value


async def directory(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    *,
    prefix: str | None,
    pattern: str | None,
    upper: str | None,
    after: str | None,
    limit: int,
    sharing_with: str | None,
) -> list[UserRow]:
    """Active users by id, those whose id or name starts with `prefix` (lowered), after
    `after`; with `sharing_with`, only that user and those sharing a live channel with it."""
    args: list[Any] = [workspace_id, after or "", limit]
    if prefix is not None:
        args += [prefix, pattern, upper]
    if sharing_with is not None:
        args.append(sharing_with)
    query = directory_sql(search=prefix is not None, sharing=sharing_with is not None)
    rows = await conn.fetch(query, *args)
    return [_row(r) for r in rows]
