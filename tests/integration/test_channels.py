"""Channels, members, read state and typing over real HTTP (raw httpx: the wire is the contract).

Messages are written straight into the database here (as `POST .../messages` will), so that
activity order, `last_message` and unread counts are tested independently of the messages API.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from cariosan.domain.workspaces import NewWorkspace
from tests.support.chat import backend_client, make_user, user_client
from tests.support.server import RunningServer


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here works in a workspace of its own: one server serves them all."""
    return shared_server


async def _users(server: RunningServer, workspace: NewWorkspace, *names: str) -> list[str]:
    return [await make_user(server, workspace, name) for name in names]


async def _create(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await http.post("/v1/channels", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _post_message(
    server: RunningServer, workspace: NewWorkspace, channel_id: str, user_id: str, text: str
) -> str:
    """Store a top-level message and bump the channel's activity, as posting will."""
    conn = await asyncpg.connect(server.services.settings.database_url)
    try:
        message_id = uuid.uuid4()
        async with conn.transaction():
            created_at = await conn.fetchval(
                "INSERT INTO messages (workspace_id, id, channel_id, user_id, text) "
                "VALUES ($1, $2, $3, $4, $5) RETURNING created_at",
                workspace.id,
                message_id,
                channel_id,
                user_id,
                text,
            )
            await conn.execute(
                "UPDATE channels SET last_message_id = $3, last_message_at = $4 "
                "WHERE workspace_id = $1 AND id = $2",
                workspace.id,
                channel_id,
                message_id,
                created_at,
            )
    finally:
        await conn.close()
    return str(message_id)


async def _events(http: httpx.AsyncClient, type: str, expected: int) -> list[dict[str, Any]]:
    """The caller's events of one type, once `expected` of them are visible.

    The catch-up log only shows events below the oldest transaction still running on the
    PostgreSQL server (any database), so a just-committed event may take a moment to appear.
    """
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        response = await http.get("/v1/events", params={"limit": 1000})
        assert response.status_code == 200, response.text
        found = [e for e in response.json()["events"] if e["type"] == type]
        if len(found) >= expected or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)


def _code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# --- creating ---------------------------------------------------------------------------------


async def test_create_group_channel_with_owner_and_event(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    alice, bob = await _users(server, workspace, "alice", "bob")
    await make_user(server, workspace, "carol")
    async with user_client(server, alice) as http:
        channel = await _create(
            http, id="team", type="group", name="Team", members=["bob", "carol"], data={"k": 1}
        )
    assert channel["id"] == "team" and channel["type"] == "group" and channel["name"] == "Team"
    assert channel["data"] == {"k": 1} and channel["created_by"] == "alice"
    assert channel["member_count"] == 3
    roles = {m["user_id"]: m["role"] for m in channel["members"]}
    assert roles == {"alice": "owner", "bob": "member", "carol": "member"}
    assert channel["unread_count"] == 0 and channel["last_message"] is None
    async with user_client(server, bob) as http:
        (event,) = await _events(http, "channel.created", 1)
    assert event["channel_id"] == "team" and isinstance(event["seq"], int)
    assert {m["user_id"] for m in event["channel"]["members"]} == {"alice", "bob", "carol"}


async def test_generated_id_and_duplicate_id_conflict(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    (alice,) = await _users(server, workspace, "alice")
    async with user_client(server, alice) as http:
        generated = await _create(http, type="public")
        assert generated["id"] and generated["members"][0]["role"] == "owner"
        await _create(http, id="taken", type="group")
        again = await http.post("/v1/channels", json={"id": "taken", "type": "public"})
    assert again.status_code == 409 and _code(again) == "CONFLICT"


async def test_backend_creates_as_a_user_or_for_itself(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    await _users(server, workspace, "alice", "bob")
    async with backend_client(server, workspace) as http:
        acting = await _create(http, type="group", members=["bob"], user_id="alice")
        alone = await _create(http, type="group", members=["alice", "bob"])
    assert acting["created_by"] == "alice"
    assert {m["user_id"]: m["role"] for m in acting["members"]}["alice"] == "owner"
    assert alone["created_by"] is None
    assert {m["role"] for m in alone["members"]} == {"member"}


@pytest.mark.parametrize(
    "body",
    [
        {"type": "group", "members": ["ghost", "bob", "phantom"]},
        {"type": "secret"},
        {"type": "group", "id": "bad id"},
        {"type": "group", "id": "x" * 65},
        {"type": "group", "name": "n" * 201},
        {"type": "group", "name": "nul\u0000"},
        {"type": "group", "data": "not an object"},
        {"type": "group", "data": {"nul": "\u0000"}},
        {"type": "group", "members": "bob"},
        {"type": "group", "members": [f"u{i}" for i in range(1001)]},
        {"type": "group", "members": ["bad id"]},
        {"type": "dm", "members": []},
        {"type": "dm", "members": ["alice"]},
        {"type": "dm", "members": ["bob", "carol"]},
        {"members": ["bob"]},
    ],
)
async def test_invalid_channels_are_422(
    server: RunningServer, workspace: NewWorkspace, body: dict[str, Any]
) -> None:
    alice, _, _ = await _users(server, workspace, "alice", "bob", "carol")
    async with user_client(server, alice) as http:
        response = await http.post("/v1/channels", json=body)
    assert response.status_code == 422, response.text
    assert _code(response) == "VALIDATION_FAILED"
    if body.get("members") == ["ghost", "bob", "phantom"]:
        assert "ghost" in response.text and "phantom" in response.text


async def test_malformed_json_is_422(server: RunningServer, workspace: NewWorkspace) -> None:
    (alice,) = await _users(server, workspace, "alice")
    async with user_client(server, alice) as http:
        response = await http.post(
            "/v1/channels", content=b"{nope", headers={"content-type": "application/json"}
        )
    assert response.status_code == 422 and _code(response) == "VALIDATION_FAILED"


async def test_dm_is_one_channel_per_pair(server: RunningServer, workspace: NewWorkspace) -> None:
    alice, bob = await _users(server, workspace, "alice", "bob")
    async with user_client(server, alice) as http:
        first = await _create(http, type="dm", members=["bob"])
        again = await http.post("/v1/channels", json={"type": "dm", "members": ["bob", "alice"]})
    async with user_client(server, bob) as http:
        reverse = await http.post("/v1/channels", json={"type": "dm", "members": ["alice"]})
        assert len(await _events(http, "channel.created", 1)) == 1
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert reverse.status_code == 200 and reverse.json()["id"] == first["id"]
    assert {m["role"] for m in first["members"]} == {"member"}


async def test_concurrent_dm_creates_make_one_channel(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    alice, bob = await _users(server, workspace, "alice", "bob")
    async with user_client(server, alice) as a, user_client(server, bob) as b:
        responses = await asyncio.gather(
            *(a.post("/v1/channels", json={"type": "dm", "members": ["bob"]}) for _ in range(4)),
            *(b.post("/v1/channels", json={"type": "dm", "members": ["alice"]}) for _ in range(4)),
        )
        listed = (await a.get("/v1/channels")).json()["channels"]
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201], [
        r.text for r in responses
    ]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(listed) == 1


async def test_deleted_dm_frees_the_pair(server: RunningServer, workspace: NewWorkspace) -> None:
    alice, _ = await _users(server, workspace, "alice", "bob")
    async with user_client(server, alice) as http:
        first = await _create(http, type="dm", members=["bob"])
    async with backend_client(server, workspace) as http:
        assert (await http.delete(f"/v1/channels/{first['id']}")).status_code == 204
    async with user_client(server, alice) as http:
        second = await _create(http, type="dm", members=["bob"])
    assert second["id"] != first["id"]


# --- listing ----------------------------------------------------------------------------------


async def test_listing_pages_newest_activity_first(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    alice, bob = await _users(server, workspace, "alice", "bob")
    async with user_client(server, alice) as http:
        ids = [(await _create(http, id=f"c{i}", type="group"))["id"] for i in range(7)]
    async with user_client(server, bob) as http:
        await _create(http, id="not-alice", type="group")
    await _post_message(server, workspace, "c2", "bob", "bump")
    expected = ["c2", *reversed([i for i in ids if i != "c2"])]
    seen: list[str] = []
    cursor = None
    async with user_client(server, alice) as http:
        for _ in range(5):
            params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
            response = await http.get("/v1/channels", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["channels"]) <= 3
            seen += [c["id"] for c in page["channels"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        whole = (await http.get("/v1/channels")).json()
    assert seen == expected
    assert [c["id"] for c in whole["channels"]] == expected and whole["next_cursor"] is None
    top = whole["channels"][0]
    assert top["last_message"]["text"] == "bump" and top["last_message"]["user_id"] == "bob"
    assert top["last_message_at"] is not None and top["member_count"] == 1
    assert top["last_message"]["reactions"] == {} and top["last_message"]["own_reactions"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "garbage!!"},
        {"cursor": "bm90IGpzb24"},
        {"cursor": "WzEsMl0"},
        {"cursor": "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwiYSBiIl0"},
        {"cursor": "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwiYSJd"},
        {"limit": 0},
        {"limit": 101},
        {"limit": "many"},
        {"public": "perhaps"},
    ],
)
async def test_bad_listing_parameters_are_422(
    server: RunningServer, workspace: NewWorkspace, params: dict[str, Any]
) -> None:
    (alice,) = await _users(server, workspace, "alice")
    async with user_client(server, alice) as http:
        response = await http.get("/v1/channels", params=params)
    assert response.status_code == 422, response.text
    assert _code(response) == "VALIDATION_FAILED"


async def test_public_channels_and_the_backend_view(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    alice, bob = await _users(server, workspace, "alice", "bob")
    async with user_client(server, alice) as http:
        await _create(http, id="open", type="public")
        await _create(http, id="closed", type="group")
    async with user_client(server, bob) as http:
        mine = (await http.get("/v1/channels")).json()["channels"]
        public = (await http.get("/v1/channels", params={"public": "true"})).json()["channels"]
    async with backend_client(server, workspace) as http:
        everything = (await http.get("/v1/channels")).json()["channels"]
    assert mine == []
    assert [c["id"] for c in public] == ["open"] and public[0]["unread_count"] == 0
    assert {c["id"] for c in everything} == {"open", "closed"}


async def test_other_workspace_sees_nothing(
    server: RunningServer, workspace: NewWorkspace, other_workspace: NewWorkspace
) -> None:
    (alice,) = await _users(server, workspace, "alice")
    async with user_client(server, alice) as http:
        await _create(http, id="team", type="public")
    async with backend_client(server, other_workspace) as http:
        listed = await http.get("/v1/channels", params={"public": "true"})
        fetched = await http.get("/v1/channels/team")
        deleted = await http.delete("/v1/channels/team")
        acting = await http.get("/v1/channels", params={"user_id": "alice"})
    assert listed.json()["channels"] == []
    assert fetched.status_code == 404 and deleted.status_code == 404
    assert acting.status_code == 404


# --- one channel: read, change, delete ---------------------------------------------------------


async def test_outsiders_get_not_found_everywhere(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    alice, eve = await _users(server, workspace, "alice", "eve")
    async with user_client(server, alice) as http:
        await _create(http, id="team", type="group")
    async with user_client(server, eve) as http:
        responses = [
            await http.get("/v1/channels/team"),
            await http.patch("/v1/channels/team", json={"name": "mine"}),
            await http.delete("/v1/channels/team"),
            await http.post("/v1/channels/team/members", json={"user_ids": ["eve"]}),
            await http.delete("/v1/channels/team/members/alice"),
            await http.post("/v1/channels/team/read", json={}),
            await http.post("/v1/channels/team/typing", json={"state": "start"}),
            await http.get("/v1/channels/nothing-here"),
        ]
    assert [r.status_code for r in responses] == [404] * len(responses)
    assert {_code(r) for r in responses} == {"NOT_FOUND"}


async def test_members_who_do_not_own_get_forbidden(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    alice, bob = await _users(server, workspace, "alice", "bob")
    await make_user(server, workspace, "carol")
    async with user_client(server, alice) as http:
        await _create(http, id="team", type="public", members=["bob"])
    async with user_client(server, bob) as http:
        responses = [
            await http.patch("/v1/channels/team", json={"name": "mine"}),
            await http.delete("/v1/channels/team"),
            await http.post("/v1/channels/team/members", json={"user_ids": ["carol"]}),
            await http.delete("/v1/channels/team/members/alice"),
        ]
        still = await http.get("/v1/channels/team")
    assert [r.status_code for r in responses] == [403] * 4
    assert {_code(r) for r in responses} == {"FORBIDDEN"}
    assert still.json()["name"] is None and still.json()["member_count"] == 2


async def test_get_patch_and_delete(server: RunningServer, workspace: NewWorkspace) -> None:
    alice, bob = await _users(server, workspace, "alice", "bob")
    async with user_client(server, alice) as http:
        await _create(http, id="team", type="group", name="Old", members=["bob"])
        fetched = (await http.get("/v1/channels/team")).json()
        patched = await http.patch("/v1/channels/team", json={"data": {"topic": "x"}})
        renamed = await http.patch("/v1/channels/team", json={"name": None})
        bad = await http.patch("/v1/channels/team", json={"data": [1]})
    assert [m["user_id"] for m in fetched["members"]] == ["alice", "bob"]
    assert set(fetched["members"][0]) == {"user_id", "role", "joined_at"}
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "Old" and patched.json()["data"] == {"topic": "x"}
    assert renamed.json()["name"] is None and renamed.json()["data"] == {"topic": "x"}
    assert bad.status_code == 422
    async with user_client(server, bob) as http:
        updates = await _events(http, "channel.updated", 2)
        assert [e["channel"]["data"] for e in updates] == [{"topic": "x"}, {"topic": "x"}]
    async with user_client(server, alice) as http:
        assert (await http.delete("/v1/channels/team")).status_code == 204
        gone = [
            await http.get("/v1/channels/team"),
            await http.patch("/v1/channels/team", json={"name": "again"}),
            await http.delete("/v1/channels/team"),
            await http.post("/v1/channels/team/read", json={}),
        ]
        listed = (await http.get("/v1/channels")).json()["channels"]
    assert [r.status_code for r in gone] == [404] * 4 and listed == []
    async with user_client(server, bob) as http:
        (deleted,) = await _events(http, "channel.deleted", 1)
    assert deleted["channel_id"] == "team" and deleted["channel"]["deleted_at"] is not None


async def test_admin_user_manages_channels_it_is_not_in(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    (alice,) = await _users(server, workspace, "alice")
    admin = await make_user(server, workspace, "root", role="admin")
    async with user_client(server, alice) as http:
        await _create(http, id="team", type="group")
    async with user_client(server, admin) as http:
        assert (await http.get("/v1/channels/team")).status_code == 404
        patched = await http.patch("/v1/channels/team", json={"name": "Moderated"})
        assert patched.status_code == 200 and patched.json()["name"] == "Moderated"
        assert (await http.delete("/v1/channels/team")).status_code == 204


# --- members ----------------------------------------------------------------------------------


async def test_add_members_is_idempotent_and_evented(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    alice, _, carol = await _users(server, workspace, "alice", "bob", "carol")
    async with user_client(server, alice) as http:
        await _create(http, id="team", type="group")
        added = await http.post("/v1/channels/team/members", json={"user_ids": ["bob", "carol"]})
        again = await http.post("/v1/channels/team/members", json={"user_ids": ["bob", "alice"]})
        unknown = await http.post("/v1/channels/team/members", json={"user_ids": ["ghost"]})
        empty = await http.post("/v1/channels/team/members", json={"user_ids": []})
        events = await _events(http, "member.added", 2)
    assert added.status_code == 200, added.text
    assert added.json()["member_count"] == 3 and again.json()["member_count"] == 3
    assert unknown.status_code == 422 and "ghost" in unknown.text
    assert empty.status_code == 422
    assert sorted(e["user_id"] for e in events) == ["bob", "carol"]
    assert all(e["channel_id"] == "team" and e["member"]["role"] == "member" for e in events)
    async with user_client(server, carol) as http:
        assert len(await _events(http, "member.added", 2)) == 2


async def test_self_join_public_but_not_private(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    alice, bob = await _users(server, workspace, "alice", "bob")
    async with user_client(server, alice) as http:
        await _create(http, id="open", type="public")
        await _create(http, id="closed", type="group")
    async with user_client(server, bob) as http:
        joined = await http.post("/v1/channels/open/members", json={"user_ids": ["bob"]})
        refused = await http.post("/v1/channels/closed/members", json={"user_ids": ["bob"]})
        listed = (await http.get("/v1/channels")).json()["channels"]
    assert joined.status_code == 200, joined.text
    assert {m["user_id"]: m["role"] for m in joined.json()["members"]}["bob"] == "member"
    assert refused.status_code == 404
    assert [c["id"] for c in listed] == ["open"]


async def test_dm_members_cannot_change(server: RunningServer, workspace: NewWorkspace) -> None:
    alice, _ = await _users(server, workspace, "alice", "bob")
    await make_user(server, workspace, "carol")
    async with user_client(server, alice) as http:
        dm = await _create(http, type="dm", members=["bob"])
    async with backend_client(server, workspace) as http:
        add = await http.post(f"/v1/channels/{dm['id']}/members", json={"user_ids": ["carol"]})
        remove = await http.delete(f"/v1/channels/{dm['id']}/members/bob")
    assert add.status_code == 403 and remove.status_code == 403


async def test_leave_and_remove(server: RunningServer, workspace: NewWorkspace) -> None:
    alice, bob, carol = await _users(server, workspace, "alice", "bob", "carol")
    async with user_client(server, alice) as http:
        await _create(http, id="team", type="group", members=["bob", "carol"])
    async with user_client(server, bob) as http:
        assert (await http.delete("/v1/channels/team/members/bob")).status_code == 204
        assert (await http.get("/v1/channels/team")).status_code == 404
        (removed,) = await _events(http, "member.removed", 1)
    assert removed["user_id"] == "bob" and removed["channel_id"] == "team"
    async with user_client(server, alice) as http:
        assert (await http.delete("/v1/channels/team/members/carol")).status_code == 204
        missing = await http.delete("/v1/channels/team/members/bob")
        channel = (await http.get("/v1/channels/team")).json()
    assert missing.status_code == 404
    assert [m["user_id"] for m in channel["members"]] == ["alice"]
    async with user_client(server, carol) as http:
        # Out of the channel, carol sees her own removal (named on it), no longer the others'.
        assert [e["user_id"] for e in await _events(http, "member.removed", 1)] == ["carol"]


# --- read state, me, typing -------------------------------------------------------------------


async def test_unread_counts_go_down_after_read(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    alice, bob = await _users(server, workspace, "alice", "bob")
    async with user_client(server, alice) as http:
        await _create(http, id="team", type="group", members=["bob"])
        await _create(http, id="side", type="group", members=["bob"])
    first = await _post_message(server, workspace, "team", "bob", "one")
    second = await _post_message(server, workspace, "team", "bob", "two")
    await _post_message(server, workspace, "team", "bob", "three")
    await _post_message(server, workspace, "team", "alice", "mine: never unread for me")
    other = await _post_message(server, workspace, "side", "bob", "elsewhere")
    async with user_client(server, alice) as http:
        listed = {
            c["id"]: c["unread_count"] for c in (await http.get("/v1/channels")).json()["channels"]
        }
        assert listed == {"team": 3, "side": 1}
        me = (await http.get("/v1/me")).json()
        assert me["user"]["id"] == "alice" and me["total_unread"] == 4
        partial = await http.post("/v1/channels/team/read", json={"message_id": second})
        assert partial.status_code == 200 and partial.json() == {"unread_count": 1}
        assert (await http.get("/v1/channels/team")).json()["unread_count"] == 1
        wrong = await http.post("/v1/channels/team/read", json={"message_id": other})
        garbage = await http.post("/v1/channels/team/read", json={"message_id": "nope"})
        assert wrong.status_code == 422 and garbage.status_code == 422
        back = await http.post("/v1/channels/team/read", json={"message_id": first})
        assert back.json() == {"unread_count": 2}
        everything = await http.post("/v1/channels/team/read")
        assert everything.json() == {"unread_count": 0}
        assert (await http.get("/v1/me")).json()["total_unread"] == 1
        reads = await _events(http, "read.updated", 3)
    assert [e["unread_count"] for e in reads] == [1, 2, 0]
    assert reads[-1]["user_id"] == "alice" and reads[-1]["channel_id"] == "team"
    assert reads[0]["last_read_message_id"] == second
    await _post_message(server, workspace, "team", "bob", "four")
    async with user_client(server, alice) as http:
        assert (await http.get("/v1/me")).json()["total_unread"] == 2
    async with user_client(server, bob) as http:
        # Bob never read: alice's one message is unread for him, his own never are.
        assert (await http.get("/v1/me")).json()["total_unread"] == 1


async def test_read_of_an_empty_channel_then_new_messages(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    alice, _ = await _users(server, workspace, "alice", "bob")
    async with user_client(server, alice) as http:
        await _create(http, id="team", type="group", members=["bob"])
        assert (await http.post("/v1/channels/team/read", json={})).json() == {"unread_count": 0}
    await _post_message(server, workspace, "team", "bob", "hello")
    async with user_client(server, alice) as http:
        assert (await http.get("/v1/channels/team")).json()["unread_count"] == 1


async def test_me_and_read_need_a_user(server: RunningServer, workspace: NewWorkspace) -> None:
    alice, _ = await _users(server, workspace, "alice", "bob")
    async with user_client(server, alice) as http:
        await _create(http, id="team", type="group", members=["bob"])
    async with backend_client(server, workspace) as http:
        assert (await http.get("/v1/me")).status_code == 422
        assert (await http.post("/v1/channels/team/read", json={})).status_code == 422
        as_bob = await http.get("/v1/me", params={"user_id": "bob"})
        read = await http.post("/v1/channels/team/read", json={"user_id": "bob"})
    assert as_bob.json()["user"]["id"] == "bob" and as_bob.json()["total_unread"] == 0
    assert read.status_code == 200 and read.json() == {"unread_count": 0}


async def test_typing_checks_membership_only(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    (alice,) = await _users(server, workspace, "alice")
    async with user_client(server, alice) as http:
        await _create(http, id="team", type="group")
        start = await http.post("/v1/channels/team/typing", json={"state": "start"})
        stop = await http.post("/v1/channels/team/typing", json={"state": "stop"})
        bad = await http.post("/v1/channels/team/typing", json={"state": "dancing"})
    assert (start.status_code, stop.status_code) == (204, 204)
    assert bad.status_code == 422
