"""User-token checks shared by concurrent requests (domain/token_checks.py): the one statement
answers each user of each workspace, and every request gets its own user's outcome."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from cariosan.db.users import token_checks
from cariosan.domain.workspaces import NewWorkspace
from tests.support.chat import backend_client, make_user, user_client
from tests.support.server import RunningServer


async def test_one_statement_answers_each_user_of_each_workspace(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        ours, theirs = uuid.uuid4(), uuid.uuid4()
        await conn.execute(
            "INSERT INTO workspaces (id, name) VALUES ($1, 'ours'), ($2, 'theirs')", ours, theirs
        )
        await conn.execute(
            """
            INSERT INTO users (workspace_id, id, role, deleted_at, tokens_valid_after) VALUES
                ($1, 'ann', 'user', NULL, NULL),
                ($1, 'mo', 'moderator', NULL, '2026-01-02T03:04:05.123456Z'),
                ($1, 'del', 'user', now(), NULL),
                ($2, 'ann', 'admin', NULL, NULL)
            """,
            ours,
            theirs,
        )
        keys = [(ours, "ann"), (ours, "mo"), (ours, "del"), (ours, "nobody"), (theirs, "ann")]
        found = await token_checks(conn, keys)
        assert {key: check.role for key, check in found.items()} == {
            (ours, "ann"): "user",
            (ours, "mo"): "moderator",
            (theirs, "ann"): "admin",
        }
        valid_after = found[ours, "mo"].tokens_valid_after
        assert valid_after is not None and valid_after.microsecond == 123456
        # A lone user, through the single-row statement: the same answers.
        assert await token_checks(conn, [(ours, "del")]) == {}
        assert await token_checks(conn, [(theirs, "ann")]) == {
            (theirs, "ann"): found[theirs, "ann"]
        }
    finally:
        await conn.close()


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    return shared_server


async def test_concurrent_requests_each_get_their_own_users_outcome(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    names = [f"u{i}" for i in range(12)]
    tokens = {name: await make_user(server, workspace, name) for name in names}
    async with backend_client(server, workspace) as backend:
        assert (await backend.delete("/v1/users/u3")).status_code == 204
        assert (await backend.post("/v1/users/u7/revoke-tokens")).status_code == 204

    async def status(name: str) -> tuple[str, int]:
        async with user_client(server, tokens[name]) as http:
            return name, (await http.get("/v1/channels")).status_code

    # Five rounds of every user at once: more requests than the statements in flight.
    outcomes = await asyncio.gather(*(status(name) for _ in range(5) for name in names))
    expected = {name: 401 if name in ("u3", "u7") else 200 for name in names}
    assert sorted(outcomes) == sorted((name, expected[name]) for _ in range(5) for name in names)
