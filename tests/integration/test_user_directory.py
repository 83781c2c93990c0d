"""The user directory (issue 14, point 6): GET /v1/users lists every active user to the backend
and, to a user, itself and the users it shares a channel with; `q` is a case-insensitive prefix
of the id or the name (LIKE wildcards taken literally), served from an index; pages by id."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from cariosan.db.users import directory_sql
from cariosan.domain.users import like_prefix, prefix_upper_bound
from cariosan.domain.workspaces import NewWorkspace
from cariosan_client import ChatClient, ServerClient
from cariosan_client import sync as sync_client
from tests.support.chat import backend_client, make_user, user_client
from tests.support.server import RunningServer


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here works in a workspace of its own: one server serves them all."""
    return shared_server


async def ids(http: httpx.AsyncClient, **params: str | int) -> list[str]:
    response = await http.get("/v1/users", params=params)
    assert response.status_code == 200, response.text
    return [u["id"] for u in response.json()["users"]]


async def people(server: RunningServer, workspace: NewWorkspace) -> dict[str, str]:
    """ann and bob share "room"; cy shares "side" with ann; dee shares nothing; ed was deleted;
    "gone" was deleted too and shared "old" (deleted) with bob."""
    tokens = {u: await make_user(server, workspace, u) for u in ("ann", "bob", "cy", "dee", "ed")}
    async with backend_client(server, workspace) as backend:
        for body in (
            {"id": "room", "type": "group", "members": ["bob"], "user_id": "ann"},
            {"id": "side", "type": "group", "members": ["cy"], "user_id": "ann"},
            {"id": "old", "type": "group", "members": ["dee"], "user_id": "bob"},
        ):
            created = await backend.post("/v1/channels", json=body)
            assert created.status_code == 201, created.text
        assert (await backend.delete("/v1/channels/old")).status_code == 204
        assert (await backend.delete("/v1/users/ed")).status_code == 204
    return tokens


async def test_the_backend_lists_every_active_user_and_a_user_those_it_shares_a_channel_with(
    server: RunningServer, workspace: NewWorkspace, other_workspace: NewWorkspace
) -> None:
    tokens = await people(server, workspace)
    await make_user(server, other_workspace, "zed")
    async with backend_client(server, workspace) as backend:
        assert await ids(backend) == ["ann", "bob", "cy", "dee"]
        # The backend acting as a user sees what that user sees.
        assert await ids(backend, user_id="cy") == ["ann", "cy"]
        everyone = (await backend.get("/v1/users")).json()["users"]
        assert everyone[0]["name"] == "ann" and everyone[0]["role"] == "user"
    async with user_client(server, tokens["ann"]) as ann:
        assert await ids(ann) == ["ann", "bob", "cy"]
    async with user_client(server, tokens["bob"]) as bob:
        # dee shared only a deleted channel with bob.
        assert await ids(bob) == ["ann", "bob"]
    async with user_client(server, tokens["dee"]) as dee:
        assert await ids(dee) == ["dee"]
        # Naming another user with a user token is refused.
        assert (await dee.get("/v1/users", params={"user_id": "ann"})).status_code == 403


async def test_q_is_a_case_insensitive_prefix_of_the_id_or_the_name_with_wildcards_literal(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    async with backend_client(server, workspace) as backend:
        for user_id, name in (
            ("Alice.K", "Zoe Marsh"),
            ("alfred", "Fred"),
            ("a_b", "plain"),
            ("axb", "100% Ann"),
            ("bernd", "ALbert Émile"),
            ("carl", "Émile Carl"),
            ("dave", "1000 Ann"),
        ):
            made = await backend.put(f"/v1/users/{user_id}", json={"name": name})
            assert made.status_code == 200, made.text
        assert await ids(backend, q="al") == ["Alice.K", "alfred", "bernd"]
        assert await ids(backend, q="AL") == ["Alice.K", "alfred", "bernd"]
        assert await ids(backend, q="zoe m") == ["Alice.K"]
        assert await ids(backend, q="émile") == ["carl"]
        assert await ids(backend, q="ÉMILE") == ["carl"]
        # `_` and `%` are characters, not wildcards.
        assert await ids(backend, q="a_") == ["a_b"]
        assert await ids(backend, q="100%") == ["axb"]
        assert await ids(backend, q="%") == []
        assert await ids(backend, q="\\") == []
        assert await ids(backend, q="nobody") == []
        # Not a substring match.
        assert await ids(backend, q="red") == []
        for bad in ({"q": "x" * 201}, {"limit": 0}, {"limit": 201}, {"cursor": "nope"}):
            refused = await backend.get("/v1/users", params=bad)
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["code"] == "VALIDATION_FAILED"


async def test_pages_walk_every_user_once_in_id_order(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    async with backend_client(server, workspace) as backend:
        wanted = sorted(f"u{n:02d}" for n in range(23))
        for user_id in wanted:
            assert (await backend.put(f"/v1/users/{user_id}", json={})).status_code == 200
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, str | int] = {"limit": 5, "q": "U"}
            if cursor:
                params["cursor"] = cursor
            page = (await backend.get("/v1/users", params=params)).json()
            seen += [u["id"] for u in page["users"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == wanted and pages == 5


def test_prefix_helpers_escape_and_bound() -> None:
    assert like_prefix("a_b%c\\") == "a\\_b\\%c\\\\%"
    assert prefix_upper_bound("ab") == "ac"
    assert prefix_upper_bound("a\U0010ffff") == "b"
    assert prefix_upper_bound("\ud7ff") == "\ue000"
    assert prefix_upper_bound("\U0010ffff") is None


async def test_the_prefix_search_uses_the_indexes_even_with_a_generic_plan(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    conn = await asyncpg.connect(server.services.settings.database_url)
    try:
        await conn.execute(
            """
            INSERT INTO users (workspace_id, id, name)
            SELECT $1, 'user' || n, 'Name ' || n FROM generate_series(1, 20000) n
            """,
            workspace.id,
        )
        await conn.execute("ANALYZE users")
        # A prepared statement's generic plan cannot see the pattern: the range conditions
        # must still make it an index range.
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        prefix = "name 12"
        args = [workspace.id, "", 200, prefix, like_prefix(prefix), prefix_upper_bound(prefix)]
        search = directory_sql(search=True, sharing=False)
        plan = [r[0] for r in await (await conn.prepare(f"EXPLAIN {search}")).fetch(*args)]
        text = "\n".join(plan)
        assert "users_id_prefix_idx" in text, text
        assert "users_name_prefix_idx" in text, text
        assert "Seq Scan" not in text, text
        # And the rows it finds are the right ones.
        found = await conn.fetch(search, *args)
        # 12, 120-129, 1200-1299, 12000-12999: the first 200 by id.
        assert len(found) == 200
        assert all(r["name"].startswith("Name 12") for r in found)
        assert [r["id"] for r in found] == sorted(r["id"] for r in found)
        # A later page starts at its cursor in the primary key, not at the workspace's start.
        listing = directory_sql(search=False, sharing=False)
        later = "\n".join(
            r[0]
            for r in await (await conn.prepare(f"EXPLAIN {listing}")).fetch(
                workspace.id, "user5", 50
            )
        )
        assert "users_pkey" in later and "Seq Scan" not in later, later
        assert "id > $2" in later or "id > '" in later, later
        # A user's view starts from its own channels, not from the workspace's users.
        await conn.execute(
            "INSERT INTO channels (workspace_id, id, type) VALUES ($1, 'c1', 'group')",
            workspace.id,
        )
        await conn.execute(
            "INSERT INTO channel_members (workspace_id, channel_id, user_id) "
            "SELECT $1, 'c1', 'user' || n FROM generate_series(1, 3) n",
            workspace.id,
        )
        await conn.execute("ANALYZE channel_members")
        await conn.execute("ANALYZE channels")
        mine = directory_sql(search=False, sharing=True)
        view = await (await conn.prepare(f"EXPLAIN {mine}")).fetch(workspace.id, "", 50, "user1")
        view_plan = "\n".join(r[0] for r in view)
        assert "Seq Scan on users" not in view_plan, view_plan
        assert [r["id"] for r in await conn.fetch(mine, workspace.id, "", 50, "user1")] == [
            "user1",
            "user2",
            "user3",
        ]
    finally:
        await conn.close()


async def test_the_sdks_list_and_search_users(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    tokens = await people(server, workspace)
    async with ServerClient(server.url, workspace.api_secret) as backend:
        page = await backend.list_users(q="B", limit=10)
        assert [u.id for u in page.users] == ["bob"] and page.next_cursor is None
        walked = [u.id async for u in backend.iter_users(page_size=1)]
        assert walked == ["ann", "bob", "cy", "dee"]
    async with ChatClient(server.url, token=tokens["ann"]) as ann:
        found = await ann.search_users("c")
        assert [u.id for u in found.users] == ["cy"]
        assert [u.id async for u in ann.iter_users(page_size=2)] == ["ann", "bob", "cy"]

    def sync_calls() -> list[str]:
        with sync_client.ServerClient(server.url, workspace.api_secret) as sync_backend:
            return [u.id for u in sync_backend.list_users(q="d").users]

    assert await asyncio.to_thread(sync_calls) == ["dee"]
