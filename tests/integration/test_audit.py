"""The audit log: every moderation and admin action is one entry (who, what, to whom, when,
why), readable by the backend and admin users, and a webhook event nobody's socket gets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from cariosan.config import Settings
from cariosan.domain.workspaces import NewWorkspace, create_workspace, rotate_secret
from tests.support.chat import bearer, make_user
from tests.support.server import RunningServer
from tests.support.webhook_receiver import Receiver


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(webhook_allow_private=True, webhook_schedule=(0.0, 0.2))


@pytest.fixture
def server(shared_or_own_server: RunningServer) -> RunningServer:
    """The server this process's tests share (each works in a workspace of its own), or one of
    the test's own for those marked `own_server`."""
    return shared_or_own_server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
async def backend(
    server: RunningServer, workspace: NewWorkspace
) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client(headers=bearer(workspace.api_secret)) as http:
        yield http


async def entries(http: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await http.get("/v1/audit", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["entries"]
    return found


async def test_each_admin_action_is_one_entry_with_actor_target_and_reason(
    server: RunningServer, workspace: NewWorkspace, backend: httpx.AsyncClient
) -> None:
    await make_user(server, workspace, "alice")
    bob = await make_user(server, workspace, "bob")
    # A workspace role change, by the backend.
    assert (await backend.put("/v1/users/bob", json={"role": "moderator"})).status_code == 200
    # Setting the same role again changes nothing and records nothing.
    assert (await backend.put("/v1/users/bob", json={"role": "moderator"})).status_code == 200
    # A channel role change, by the owner.
    created = await backend.post(
        "/v1/channels",
        json={"type": "group", "id": "g", "members": ["bob"], "user_id": "alice"},
    )
    assert created.status_code == 201, created.text
    changed = await backend.patch(
        "/v1/channels/g/members/bob", json={"role": "moderator", "user_id": "alice"}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["role"] == "moderator"
    # A message deleted by its author is not moderation; one deleted by a moderator is.
    own = await backend.post("/v1/channels/g/messages", json={"text": "a", "user_id": "alice"})
    other = await backend.post("/v1/channels/g/messages", json={"text": "b", "user_id": "alice"})
    deleted = await backend.delete(f"/v1/messages/{own.json()['id']}", params={"user_id": "alice"})
    assert deleted.status_code == 204
    async with server.client(headers=bearer(bob)) as as_bob:
        assert (await as_bob.delete(f"/v1/messages/{other.json()['id']}")).status_code == 204
    # Token revocation, a webhook secret rotation, an API secret rotation, a hard delete.
    assert (await backend.post("/v1/users/bob/revoke-tokens")).status_code == 204
    hook = await backend.post(
        "/v1/webhooks", json={"url": "https://example.com/h", "events": ["*"]}
    )
    assert (
        await backend.post(f"/v1/webhooks/{hook.json()['id']}/rotate-secret")
    ).status_code == 200
    await rotate_secret(server.services.db, workspace.id, 60)
    assert (await backend.delete("/v1/users/alice", params={"mode": "hard"})).status_code == 204

    found = await entries(backend)
    summary = [(e["actor"], e["action"], e["target"]) for e in reversed(found)]
    assert summary == [
        ("backend", "user.role_changed", "user:bob"),
        # Alice was hard-deleted last: entries by her name a deleted user now.
        ("deleted-user", "member.role_changed", "user:bob"),
        ("bob", "message.deleted", f"message:{other.json()['id']}"),
        ("backend", "user.tokens_revoked", "user:bob"),
        ("backend", "secret.rotated", f"webhook:{hook.json()['id']}"),
        ("operator", "secret.rotated", f"workspace:{workspace.id}"),
        ("backend", "user.deleted", "user:alice"),
    ]
    by_action = {e["action"]: e for e in found}
    assert by_action["user.role_changed"]["data"] == {"from": "user", "to": "moderator"}
    assert by_action["member.role_changed"]["data"] == {
        "channel_id": "g",
        "from": "member",
        "to": "moderator",
    }
    assert by_action["message.deleted"]["data"] == {"channel_id": "g", "author": None}
    assert by_action["user.deleted"]["data"]["mode"] == "hard"
    assert all(e["created_at"].endswith("Z") and e["id"] for e in found)


async def test_the_log_pages_and_filters_and_refuses_what_it_did_not_make(
    server: RunningServer, workspace: NewWorkspace, backend: httpx.AsyncClient
) -> None:
    for n in range(5):
        await make_user(server, workspace, f"u{n}")
        role = await backend.put(f"/v1/users/u{n}", json={"role": "moderator"})
        assert role.status_code == 200
    assert (await backend.post("/v1/users/u0/revoke-tokens")).status_code == 204
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "action": "user.role_changed"}
        if cursor:
            params["cursor"] = cursor
        page = (await backend.get("/v1/audit", params=params)).json()
        seen += [e["target"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"user:u{n}" for n in reversed(range(5))]
    assert [e["action"] for e in await entries(backend, actor="backend", limit=1)] == [
        "user.tokens_revoked"
    ]
    assert await entries(backend, actor="nobody") == []
    for bad in ({"cursor": "nope"}, {"limit": 0}, {"limit": 201}, {"actor": "no spaces"}):
        refused = await backend.get("/v1/audit", params=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["error"]["code"] == "VALIDATION_FAILED"


async def test_admins_read_the_log_and_nobody_else_and_no_other_tenant(
    server: RunningServer, workspace: NewWorkspace, backend: httpx.AsyncClient
) -> None:
    admin = await make_user(server, workspace, "root", role="admin")
    moderator = await make_user(server, workspace, "mod", role="moderator")
    user = await make_user(server, workspace, "plain")
    async with server.client(headers=bearer(admin)) as http:
        assert [e["target"] for e in await entries(http)] == ["user:mod", "user:root"]
    for token in (moderator, user):
        async with server.client(headers=bearer(token)) as http:
            refused = await http.get("/v1/audit")
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "FORBIDDEN"
    other = await create_workspace(server.services.db, "other")
    async with server.client(headers=bearer(other.api_secret)) as http:
        assert await entries(http) == []


@pytest.mark.own_server  # its webhook receiver is on loopback (webhook_allow_private)
async def test_entries_are_webhook_events_that_no_user_receives(
    server: RunningServer,
    workspace: NewWorkspace,
    backend: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    hook = await backend.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["audit.recorded"]}
    )
    assert hook.status_code == 201, hook.text
    admin = await make_user(server, workspace, "root", role="admin")
    await receiver.wait_for_async(lambda got: len(got) == 1)
    body = json.loads(receiver.requests()[0].body)
    assert body["type"] == "audit.recorded"
    assert body["entry"]["action"] == "user.role_changed"
    assert body["entry"]["target"] == "user:root"
    # Not even the admin it is about, nor an admin reading events, gets it as an event.
    async with server.client(headers=bearer(admin)) as http:
        events = (await http.get("/v1/events")).json()["events"]
    assert [e for e in events if e["type"] == "audit.recorded"] == []
    # The backend reading the workspace's events does.
    events = (await backend.get("/v1/events")).json()["events"]
    assert [e["entry"]["target"] for e in events if e["type"] == "audit.recorded"] == ["user:root"]


async def test_a_member_role_change_is_an_event_for_the_channel(
    server: RunningServer, workspace: NewWorkspace, backend: httpx.AsyncClient
) -> None:
    carol = await make_user(server, workspace, "carol")
    await make_user(server, workspace, "dan")
    outsider = await make_user(server, workspace, "eve")
    created = await backend.post(
        "/v1/channels", json={"type": "group", "id": "g", "members": ["dan"], "user_id": "carol"}
    )
    assert created.status_code == 201
    for role in ("moderator", "owner", "member"):
        changed = await backend.patch("/v1/channels/g/members/dan", json={"role": role})
        assert changed.status_code == 200, changed.text
        assert changed.json()["user_id"] == "dan" and changed.json()["role"] == role
    async with server.client(headers=bearer(carol)) as http:
        events = (await http.get("/v1/events")).json()["events"]
        members = (await http.get("/v1/channels/g")).json()["members"]
    updated = [e for e in events if e["type"] == "member.updated"]
    assert [(e["channel_id"], e["user_id"], e["member"]["role"]) for e in updated] == [
        ("g", "dan", "moderator"),
        ("g", "dan", "owner"),
        ("g", "dan", "member"),
    ]
    assert {m["user_id"]: m["role"] for m in members} == {"carol": "owner", "dan": "member"}
    async with server.client(headers=bearer(outsider)) as http:
        events = (await http.get("/v1/events")).json()["events"]
    assert [e for e in events if e["type"] == "member.updated"] == []
    # Bad roles and non-members are 4xx.
    for body, status in (({"role": "king"}, 422), ({}, 422)):
        refused = await backend.patch("/v1/channels/g/members/dan", json=body)
        assert refused.status_code == status, refused.text
    missing = await backend.patch("/v1/channels/g/members/eve", json={"role": "member"})
    assert missing.status_code == 404


async def test_the_python_sdk_changes_roles_and_pages_the_log(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    from cariosan_client import ChatClient, Forbidden, ServerClient

    owner = await make_user(server, workspace, "owner")
    member = await make_user(server, workspace, "member")
    async with ChatClient(server.url, token=owner) as as_owner:
        await as_owner.create_channel("group", ["member"], id="g")
        promoted = await as_owner.set_member_role("g", "member", "moderator")
        assert (promoted.user_id, promoted.role) == ("member", "moderator")
        await as_owner.set_member_role("g", "member", "member")
    async with ChatClient(server.url, token=member) as as_member:
        with pytest.raises(Forbidden):
            await as_member.set_member_role("g", "member", "moderator")
    async with ServerClient(server.url, workspace.api_secret) as backend:
        page = await backend.list_audit(action="member.role_changed", limit=1)
        assert [e.data["to"] for e in page.entries] == ["member"]
        assert page.next_cursor is not None
        walked = [e.data["to"] async for e in backend.iter_audit(page_size=1)]
    assert walked == ["member", "moderator"]
