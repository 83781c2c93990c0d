"""Pins, slow mode and freeze (issue 14 point 5) over real HTTP: who may pin, what members see,
the events, the cooldown's 429 and the freeze's 403, and the moderators' exemption."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from cariosan.domain import pins
from cariosan.domain.workspaces import NewWorkspace
from tests.support.chat import backend_client, make_user, user_client
from tests.support.server import RunningServer


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here works in a workspace of its own: one server serves them all."""
    return shared_server


# alice owns `general`; cmod is its channel moderator; bob and dave are plain members; wmod and
# adm are workspace moderator and admin (not members); carol is not in the channel.
PEOPLE = {
    "alice": "user",
    "cmod": "user",
    "bob": "user",
    "dave": "user",
    "carol": "user",
    "wmod": "moderator",
    "adm": "admin",
}


@dataclass
class Room:
    http: dict[str, httpx.AsyncClient]
    backend: httpx.AsyncClient

    def __getitem__(self, name: str) -> httpx.AsyncClient:
        return self.http[name]


@pytest.fixture
async def room(server: RunningServer, workspace: NewWorkspace) -> Any:
    tokens = {name: await make_user(server, workspace, name, role=r) for name, r in PEOPLE.items()}
    clients = {name: user_client(server, token) for name, token in tokens.items()}
    async with backend_client(server, workspace) as backend:
        try:
            created = await clients["alice"].post(
                "/v1/channels",
                json={"id": "general", "type": "group", "members": ["cmod", "bob", "dave"]},
            )
            assert created.status_code == 201, created.text
            promoted = await backend.patch(
                "/v1/channels/general/members/cmod", json={"role": "moderator"}
            )
            assert promoted.status_code == 200, promoted.text
            yield Room(clients, backend)
        finally:
            for client in clients.values():
                await client.aclose()


async def send(http: httpx.AsyncClient, text: str, **fields: Any) -> dict[str, Any]:
    response = await http.post("/v1/channels/general/messages", json={"text": text, **fields})
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    return message


async def patch(http: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    return await http.patch("/v1/channels/general", json=fields)


async def events_of(http: httpx.AsyncClient, *types: str) -> list[dict[str, Any]]:
    response = await http.get("/v1/events", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return [e for e in response.json()["events"] if e["type"] in types]


def code(response: httpx.Response) -> str:
    value: str = response.json()["error"]["code"]
    return value


# ---- pins ----------------------------------------------------------------------------------


async def test_every_kind_of_moderator_pins_and_unpins_and_members_cannot(room: Room) -> None:
    message = await send(room["bob"], "pin me")
    assert message["pinned_at"] is None and message["pinned_by"] is None
    path = f"/v1/messages/{message['id']}/pin"
    for name in ("alice", "cmod", "wmod", "adm"):
        pinned = await room[name].put(path)
        assert pinned.status_code == 200, (name, pinned.text)
        assert pinned.json()["pinned_by"] == name and pinned.json()["pinned_at"] is not None
        unpinned = await room[name].delete(path)
        assert unpinned.status_code == 200, (name, unpinned.text)
        assert unpinned.json()["pinned_at"] is None and unpinned.json()["pinned_by"] is None
    # The backend, as itself (pinned_by null) and acting as a user.
    as_itself = await room.backend.put(path)
    assert as_itself.status_code == 200, as_itself.text
    assert as_itself.json()["pinned_at"] is not None and as_itself.json()["pinned_by"] is None
    assert (await room.backend.delete(path)).status_code == 200
    as_bob = await room.backend.put(path, params={"user_id": "bob"})
    assert as_bob.status_code == 200 and as_bob.json()["pinned_by"] == "bob"
    assert (await room.backend.delete(path)).status_code == 200

    refused = await room["bob"].put(path)  # its author, a plain member
    assert refused.status_code == 403 and code(refused) == "FORBIDDEN"
    assert "pin or unpin a message" in refused.json()["error"]["message"]
    assert (await room["dave"].put(path)).status_code == 403
    assert (await room["carol"].put(path)).status_code == 404  # cannot see the channel
    assert (await room["alice"].put(path)).status_code == 200
    assert (await room["dave"].delete(path)).status_code == 403
    still = await room["bob"].get("/v1/channels/general/pins")
    assert [m["id"] for m in still.json()["messages"]] == [message["id"]]


async def test_pins_list_newest_pin_first_for_members_only(room: Room) -> None:
    first, second, third = [await send(room["bob"], f"m{i}") for i in range(3)]
    for message in (second, first, third):
        assert (await room["alice"].put(f"/v1/messages/{message['id']}/pin")).status_code == 200
    # Pinning again changes nothing: its place in the list stays.
    again = await room["cmod"].put(f"/v1/messages/{second['id']}/pin")
    assert again.status_code == 200 and again.json()["pinned_by"] == "alice"

    listed = await room["dave"].get("/v1/channels/general/pins")
    assert listed.status_code == 200, listed.text
    order = [m["id"] for m in listed.json()["messages"]]
    assert order == [third["id"], first["id"], second["id"]]
    assert all(m["pinned_by"] == "alice" for m in listed.json()["messages"])
    outsider = await room["carol"].get("/v1/channels/general/pins")
    assert outsider.status_code == 404 and code(outsider) == "NOT_FOUND"
    assert (await room.backend.get("/v1/channels/general/pins")).status_code == 200

    # Every read of the message carries the pin: history, the channel list, reactions.
    history = (await room["bob"].get("/v1/channels/general/messages")).json()["messages"]
    by_id = {m["id"]: m for m in history}
    assert by_id[first["id"]]["pinned_by"] == "alice" and by_id[first["id"]]["pinned_at"]
    channels = (await room["bob"].get("/v1/channels")).json()["channels"]
    [general] = [c for c in channels if c["id"] == "general"]
    assert general["last_message"]["id"] == third["id"]
    assert general["last_message"]["pinned_by"] == "alice"
    reacted = await room["bob"].put(f"/v1/messages/{third['id']}/reactions/like")
    assert reacted.json()["pinned_by"] == "alice"

    # Unpinned, it leaves the list; deleting a pinned message unpins it.
    assert (await room["cmod"].delete(f"/v1/messages/{first['id']}/pin")).status_code == 200
    assert (await room["bob"].delete(f"/v1/messages/{third['id']}")).status_code == 204
    left = (await room["dave"].get("/v1/channels/general/pins")).json()["messages"]
    assert [m["id"] for m in left] == [second["id"]]


async def test_replies_deleted_messages_and_a_full_channel_are_refused(
    room: Room, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = await send(room["bob"], "parent")
    reply = await send(room["bob"], "reply", parent_id=parent["id"])
    refused = await room["alice"].put(f"/v1/messages/{reply['id']}/pin")
    assert refused.status_code == 422 and code(refused) == "VALIDATION_FAILED"
    assert "top-level" in refused.json()["error"]["message"]

    gone = await send(room["bob"], "gone")
    assert (await room["bob"].delete(f"/v1/messages/{gone['id']}")).status_code == 204
    deleted = await room["alice"].put(f"/v1/messages/{gone['id']}/pin")
    assert deleted.status_code == 404 and code(deleted) == "NOT_FOUND"

    for bad in ("not-a-uuid", str(uuid.uuid4())):
        missing = await room["alice"].put(f"/v1/messages/{bad}/pin")
        assert missing.status_code in (404, 422) and "error" in missing.json()
    assert (await room["alice"].get("/v1/channels/nope/pins")).status_code == 404
    assert (await room["alice"].get("/v1/channels/bad%20id/pins")).status_code == 422

    monkeypatch.setattr(pins, "MAX_PINS", 2)
    messages = [await send(room["bob"], f"p{i}") for i in range(3)]
    for message in messages[:2]:
        assert (await room["alice"].put(f"/v1/messages/{message['id']}/pin")).status_code == 200
    full = await room["alice"].put(f"/v1/messages/{messages[2]['id']}/pin")
    assert full.status_code == 409 and code(full) == "CONFLICT"
    assert "unpin one first" in full.json()["error"]["message"]
    # Re-pinning a pinned one is no new pin; after an unpin there is room again.
    assert (await room["alice"].put(f"/v1/messages/{messages[0]['id']}/pin")).status_code == 200
    assert (await room["alice"].delete(f"/v1/messages/{messages[0]['id']}/pin")).status_code == 200
    assert (await room["alice"].put(f"/v1/messages/{messages[2]['id']}/pin")).status_code == 200


async def test_pin_events_reach_the_channel_members_only(room: Room) -> None:
    message = await send(room["bob"], "pinned news")
    path = f"/v1/messages/{message['id']}/pin"
    assert (await room["cmod"].put(path)).status_code == 200
    assert (await room["cmod"].put(path)).status_code == 200  # no change: no second event
    assert (await room["alice"].delete(path)).status_code == 200
    assert (await room["alice"].delete(path)).status_code == 200

    for member in ("bob", "dave", "alice"):
        seen = await events_of(room[member], "message.pinned", "message.unpinned")
        assert [e["type"] for e in seen] == ["message.pinned", "message.unpinned"], member
        assert all(e["channel_id"] == "general" for e in seen)
        assert all(e["message"]["id"] == message["id"] for e in seen)
        # Events show the message as it is now (unpinned), like every message event.
        assert seen[0]["message"]["pinned_at"] is None
    assert await events_of(room["carol"], "message.pinned", "message.unpinned") == []
    assert await events_of(room["wmod"], "message.pinned", "message.unpinned") == []

    audit = await room.backend.get("/v1/audit", params={"action": "message.pinned"})
    [entry] = audit.json()["entries"]
    assert entry["actor"] == "cmod" and entry["target"] == f"message:{message['id']}"


# ---- slow mode -----------------------------------------------------------------------------


async def test_cooldown_refuses_a_second_send_until_the_window_ends(room: Room) -> None:
    changed = await patch(room["cmod"], cooldown_seconds=1)
    assert changed.status_code == 200, changed.text
    assert changed.json()["cooldown_seconds"] == 1 and changed.json()["frozen"] is False

    first = await send(room["bob"], "one")
    refused = await room["bob"].post("/v1/channels/general/messages", json={"text": "two"})
    assert refused.status_code == 429 and code(refused) == "RATE_LIMITED"
    assert refused.headers["Retry-After"] == "1"
    text = refused.json()["error"]["message"]
    assert "slow mode" in text and "next message is allowed in 1 s (at " in text

    # A retry of the message just sent is the same message, not a new send.
    retried = await room["bob"].post(
        "/v1/channels/general/messages", json={"text": "one", "id": first["id"]}
    )
    assert retried.status_code == 200 and retried.json()["id"] == first["id"]
    # Each member has its own window; the refused send did not start a new one.
    await send(room["dave"], "dave's turn")
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        again = await room["bob"].post("/v1/channels/general/messages", json={"text": "two"})
        if again.status_code == 201:
            break
        assert again.status_code == 429, again.text
        assert asyncio.get_running_loop().time() < deadline, "the cooldown never ended"
        await asyncio.sleep(0.1)
    history = (await room["bob"].get("/v1/channels/general/messages")).json()["messages"]
    assert [m["text"] for m in history] == ["one", "dave's turn", "two"]


async def test_concurrent_sends_of_one_member_get_one_slot(room: Room) -> None:
    assert (await patch(room["alice"], cooldown_seconds=3600)).status_code == 200
    attempts = await asyncio.gather(
        *(
            room["bob"].post("/v1/channels/general/messages", json={"text": f"race {n}"})
            for n in range(5)
        )
    )
    assert sorted(r.status_code for r in attempts) == [201, 429, 429, 429, 429]


async def test_moderators_are_exempt_from_the_cooldown(room: Room) -> None:
    assert (await patch(room["alice"], cooldown_seconds=3600)).status_code == 200
    for _ in range(3):
        await send(room["alice"], "owner")
        await send(room["cmod"], "channel moderator")
        await send(room.backend, "backend as dave", user_id="dave")
    await send(room["bob"], "once")
    refused = await room["bob"].post("/v1/channels/general/messages", json={"text": "twice"})
    assert refused.status_code == 429
    assert 3500 <= int(refused.headers["Retry-After"]) <= 3600
    # Turning slow mode off (null or 0) lets the member send at once.
    assert (await patch(room["alice"], cooldown_seconds=None)).json()["cooldown_seconds"] == 0
    await send(room["bob"], "free again")


# ---- freeze --------------------------------------------------------------------------------


async def test_a_frozen_channel_refuses_members_but_not_moderators(room: Room) -> None:
    message = await send(room["bob"], "before the freeze")
    frozen = await patch(room["cmod"], frozen=True)
    assert frozen.status_code == 200 and frozen.json()["frozen"] is True

    refused = await room["bob"].post("/v1/channels/general/messages", json={"text": "hello?"})
    assert refused.status_code == 403 and code(refused) == "FORBIDDEN"
    assert "frozen" in refused.json()["error"]["message"]
    react = await room["dave"].put(f"/v1/messages/{message['id']}/reactions/like")
    assert react.status_code == 403 and "frozen" in react.json()["error"]["message"]
    await send(room["alice"], "owner speaks")
    await send(room["cmod"], "moderator speaks")
    await send(room.backend, "backend speaks", user_id="bob")
    assert (await room["alice"].put(f"/v1/messages/{message['id']}/reactions/ok")).is_success
    listed = (await room["bob"].get("/v1/channels")).json()["channels"]
    assert [c["frozen"] for c in listed if c["id"] == "general"] == [True]

    thawed = await patch(room["alice"], frozen=False)
    assert thawed.status_code == 200 and thawed.json()["frozen"] is False
    await send(room["bob"], "thawed")
    assert (await room["dave"].put(f"/v1/messages/{message['id']}/reactions/like")).is_success


async def test_only_moderators_change_slow_mode_and_freeze_and_it_is_audited(room: Room) -> None:
    for body in ({"cooldown_seconds": 5}, {"frozen": True}):
        refused = await patch(room["bob"], **body)
        assert refused.status_code == 403 and code(refused) == "FORBIDDEN", body
    assert (await patch(room["carol"], frozen=True)).status_code == 404
    assert (await patch(room["wmod"], cooldown_seconds=30, frozen=True)).status_code == 200
    assert (await patch(room["wmod"], name="renamed")).status_code == 200  # no moderation change

    updates = await events_of(room["dave"], "channel.updated")
    assert [(e["channel"]["cooldown_seconds"], e["channel"]["frozen"]) for e in updates] == [
        (30, True),
        (30, True),
    ]
    audit = await room.backend.get("/v1/audit", params={"action": "channel.moderated"})
    [entry] = audit.json()["entries"]
    assert entry["actor"] == "wmod" and entry["target"] == "channel:general"
    assert entry["data"]["cooldown_seconds"] == {"from": 0, "to": 30}
    assert entry["data"]["frozen"] == {"from": False, "to": True}
    fetched = (await room["bob"].get("/v1/channels/general")).json()
    assert fetched["cooldown_seconds"] == 30 and fetched["frozen"] is True


@pytest.mark.parametrize(
    "body",
    [
        {"cooldown_seconds": -1},
        {"cooldown_seconds": 21601},
        {"cooldown_seconds": 1.5},
        {"cooldown_seconds": True},
        {"cooldown_seconds": 2**63},
        {"frozen": None},
        {"frozen": "yes"},
    ],
)
async def test_bad_slow_mode_and_freeze_values_are_422(room: Room, body: dict[str, Any]) -> None:
    # (Like every body, numbers and booleans given as "10" or 1 are coerced, not refused.)
    response = await patch(room["alice"], **body)
    assert response.status_code == 422, (body, response.text)
    assert code(response) == "VALIDATION_FAILED"
    fetched = (await room["alice"].get("/v1/channels/general")).json()
    assert fetched["cooldown_seconds"] == 0 and fetched["frozen"] is False
