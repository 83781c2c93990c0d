"""Messages, threads, reactions and search over real HTTP (raw httpx: the wire format is the
contract)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from cariosan.domain.workspaces import NewWorkspace
from tests.support.chat import backend_client, make_user, user_client
from tests.support.server import RunningServer


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here works in a workspace of its own: one server serves them all."""
    return shared_server


MESSAGE_FIELDS = {
    "id",
    "channel_id",
    "user_id",
    "text",
    "parent_id",
    "reply_count",
    "attachments",
    "mentions",
    "reactions",
    "own_reactions",
    "data",
    "created_at",
    "edited_at",
    "deleted_at",
    # Mutes and blocks (issue 14.3): true only for a reader who mutes the author.
    "muted",
    "pinned_at",
    "pinned_by",
}


@dataclass
class Chat:
    """alice owns `general` with bob; carol is in the workspace but not in the channel."""

    alice: httpx.AsyncClient
    bob: httpx.AsyncClient
    carol: httpx.AsyncClient
    backend: httpx.AsyncClient


@pytest.fixture
async def chat(server: RunningServer, workspace: NewWorkspace) -> Any:
    tokens = {name: await make_user(server, workspace, name) for name in ("alice", "bob", "carol")}
    async with (
        user_client(server, tokens["alice"]) as alice,
        user_client(server, tokens["bob"]) as bob,
        user_client(server, tokens["carol"]) as carol,
        backend_client(server, workspace) as backend,
    ):
        await create_channel(alice, "general", ["bob"])
        yield Chat(alice, bob, carol, backend)


async def create_channel(http: httpx.AsyncClient, channel_id: str, members: list[str]) -> None:
    response = await http.post(
        "/v1/channels", json={"id": channel_id, "type": "group", "members": members}
    )
    assert response.status_code == 201, response.text


async def send(
    http: httpx.AsyncClient, text: str, channel: str = "general", **fields: Any
) -> dict[str, Any]:
    response = await http.post(f"/v1/channels/{channel}/messages", json={"text": text, **fields})
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    return message


async def history(
    http: httpx.AsyncClient, channel: str = "general", **params: Any
) -> dict[str, Any]:
    response = await http.get(f"/v1/channels/{channel}/messages", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def events_of(http: httpx.AsyncClient, type: str) -> list[dict[str, Any]]:
    """The events of `type` the user sees. A write is acknowledged once its events are in the
    log, so everything written so far is there: no waiting."""
    response = await http.get("/v1/events", params={"limit": 1000})
    assert response.status_code == 200, response.text
    assert response.json()["has_more"] is False
    events: list[dict[str, Any]] = response.json()["events"]
    return [e for e in events if e["type"] == type]


def code(response: httpx.Response) -> str:
    value: str = response.json()["error"]["code"]
    return value


# ---- send ----------------------------------------------------------------------------------


async def test_send_and_read_back(chat: Chat) -> None:
    sent = await send(chat.alice, "hello bob", mentions=["bob", "bob"], data={"kind": "greeting"})
    assert set(sent) == MESSAGE_FIELDS
    assert uuid.UUID(sent["id"]).version == 7  # made by the server: time-ordered
    assert sent["channel_id"] == "general" and sent["user_id"] == "alice"
    assert sent["text"] == "hello bob" and sent["mentions"] == ["bob"], "mentions deduplicated"
    assert sent["parent_id"] is None and sent["reply_count"] == 0
    assert sent["attachments"] == [] and sent["reactions"] == {} and sent["own_reactions"] == []
    assert sent["data"] == {"kind": "greeting"}
    assert sent["edited_at"] is None and sent["deleted_at"] is None

    page = await history(chat.bob)
    assert page == {"messages": [sent], "has_more": False}

    channel = (await chat.bob.get("/v1/channels/general")).json()
    assert channel["last_message"]["id"] == sent["id"]
    assert channel["last_message_at"] == sent["created_at"]

    [event] = await events_of(chat.bob, "message.new")
    assert event["channel_id"] == "general" and event["message"] == sent


async def test_backend_sends_as_a_named_user(chat: Chat) -> None:
    response = await chat.backend.post(
        "/v1/channels/general/messages", json={"text": "from the backend", "user_id": "bob"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["user_id"] == "bob"
    itself = await chat.backend.post("/v1/channels/general/messages", json={"text": "who am i"})
    assert itself.status_code == 422 and code(itself) == "VALIDATION_FAILED"
    outsider = await chat.backend.post(
        "/v1/channels/general/messages", json={"text": "let me in", "user_id": "carol"}
    )
    assert outsider.status_code == 404 and code(outsider) == "NOT_FOUND"


async def test_text_limits(chat: Chat) -> None:
    longest = await send(chat.alice, "x" * 10_000)
    assert len(longest["text"]) == 10_000
    emoji = await send(chat.alice, "🙂" * 10_000)
    assert len(emoji["text"]) == 10_000, "characters, not bytes"
    too_long = await chat.alice.post("/v1/channels/general/messages", json={"text": "x" * 10_001})
    assert too_long.status_code == 422 and code(too_long) == "VALIDATION_FAILED"


def _nested(depth: int) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for _ in range(depth):
        data = {"a": data}
    return data


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"text": ""},
        {"text": "   \n"},
        {"text": 42},
        {"text": "nul \u0000 inside"},
        {"text": "x", "id": "not-a-uuid"},
        {"text": "x", "parent_id": "not-a-uuid"},
        {"text": "x", "parent_id": str(uuid.uuid4())},
        {"text": "x", "attachment_ids": [str(uuid.uuid4())]},
        {"text": "", "attachment_ids": [str(uuid.uuid4())]},
        {"text": "x", "mentions": ["carol"]},
        {"text": "x", "mentions": ["nobody"]},
        {"text": "x", "mentions": ["not valid!"]},
        {"text": "x", "mentions": "bob"},
        {"text": "x", "data": "not an object"},
        {"text": "x", "data": [1, 2]},
        {"text": "x", "data": {"k": "nul \u0000"}},
        {"text": "x", "data": _nested(100)},
        ["not", "an", "object"],
    ],
)
async def test_invalid_messages_are_422(chat: Chat, body: Any) -> None:
    response = await chat.alice.post("/v1/channels/general/messages", json=body)
    assert response.status_code == 422, response.text
    assert code(response) == "VALIDATION_FAILED"
    assert (await history(chat.alice))["messages"] == [], "nothing stored"


async def test_malformed_json_is_422(chat: Chat) -> None:
    response = await chat.alice.post(
        "/v1/channels/general/messages",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422 and code(response) == "VALIDATION_FAILED"


async def test_absurdly_nested_json_is_422(chat: Chat) -> None:
    response = await chat.alice.post(
        "/v1/channels/general/messages",
        content=b'{"text": "x", "data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text


async def test_only_members_send_and_read(
    server: RunningServer, chat: Chat, other_workspace: NewWorkspace
) -> None:
    for response in [
        await chat.carol.post("/v1/channels/general/messages", json={"text": "hi"}),
        await chat.carol.get("/v1/channels/general/messages"),
        await chat.alice.post("/v1/channels/nowhere/messages", json={"text": "hi"}),
        await chat.alice.get("/v1/channels/nowhere/messages"),
    ]:
        assert response.status_code == 404 and code(response) == "NOT_FOUND"
    stranger = await make_user(server, other_workspace, "alice")
    async with user_client(server, stranger) as http:
        response = await http.get("/v1/channels/general/messages")
        assert response.status_code == 404
        response = await http.post("/v1/channels/general/messages", json={"text": "hi"})
        assert response.status_code == 404


# ---- idempotency ---------------------------------------------------------------------------


async def test_same_id_ten_times_at_once_stores_one_message(chat: Chat) -> None:
    message_id = str(uuid.uuid4())
    body = {"id": message_id, "text": "exactly once", "data": {"b": 1, "a": [1, 2]}}
    responses = await asyncio.gather(
        *(chat.alice.post("/v1/channels/general/messages", json=body) for _ in range(10))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 9 + [201], [r.text for r in responses]
    bodies = [r.json() for r in responses]
    assert all(b == bodies[0] for b in bodies)
    assert bodies[0]["id"] == message_id

    assert [m["id"] for m in (await history(chat.alice))["messages"]] == [message_id]
    events = await events_of(chat.alice, "message.new")
    assert [e["message"]["id"] for e in events] == [message_id]

    again = await chat.alice.post("/v1/channels/general/messages", json=body)
    assert again.status_code == 200 and again.json() == bodies[0]
    elsewhere = await chat.bob.post("/v1/channels/general/messages", json=body)
    assert elsewhere.status_code == 409 and code(elsewhere) == "CONFLICT"
    await create_channel(chat.alice, "other", ["bob"])
    other_channel = await chat.alice.post("/v1/channels/other/messages", json=body)
    assert other_channel.status_code == 409


# ---- history -------------------------------------------------------------------------------


async def test_before_and_after_walk_every_message_once(chat: Chat) -> None:
    sent = []
    for n in range(25):
        sender = chat.alice if n % 2 == 0 else chat.bob
        sent.append((await send(sender, f"message {n}"))["id"])
    await send(chat.alice, "a reply", parent_id=sent[3])

    latest = await history(chat.alice, limit=10)
    assert [m["id"] for m in latest["messages"]] == sent[-10:] and latest["has_more"] is True
    everything = await history(chat.alice, limit=200)
    assert [m["id"] for m in everything["messages"]] == sent and everything["has_more"] is False

    seen = latest["messages"]
    page = latest
    while page["has_more"]:
        page = await history(chat.alice, limit=7, before=seen[0]["id"])
        seen = page["messages"] + seen
    assert [m["id"] for m in seen] == sent, "walking back: no duplicate, no gap, replies excluded"

    forward = [sent[0]]
    while True:
        page = await history(chat.alice, limit=7, after=forward[-1])
        forward += [m["id"] for m in page["messages"]]
        if not page["has_more"]:
            break
    assert forward == sent
    last = await history(chat.alice, after=sent[-1])
    assert last == {"messages": [], "has_more": False}


async def test_paging_parameters_are_checked(chat: Chat) -> None:
    first = await send(chat.alice, "first")
    await create_channel(chat.alice, "other", ["bob"])
    elsewhere = await send(chat.alice, "elsewhere", channel="other")
    reply = await send(chat.alice, "reply", parent_id=first["id"])
    cases: list[dict[str, str | int]] = [
        {"limit": 0},
        {"limit": 201},
        {"limit": "many"},
        {"before": first["id"], "after": first["id"]},
        {"before": "not-a-uuid"},
        {"after": str(uuid.uuid4())},
        {"before": elsewhere["id"]},
        {"before": reply["id"]},
    ]
    for params in cases:
        response = await chat.alice.get("/v1/channels/general/messages", params=params)
        assert response.status_code == 422, (params, response.text)
        assert code(response) == "VALIDATION_FAILED"
    assert (await history(chat.alice, limit=200))["messages"][0]["id"] == first["id"]


# ---- threads -------------------------------------------------------------------------------


async def test_thread_replies_and_reply_count(chat: Chat) -> None:
    parent = await send(chat.alice, "start a thread")
    replies = [
        (await send(chat.bob if n % 2 else chat.alice, f"reply {n}", parent_id=parent["id"]))["id"]
        for n in range(5)
    ]
    [shown] = (await history(chat.bob))["messages"]
    assert shown["id"] == parent["id"] and shown["reply_count"] == 5

    thread = (await chat.bob.get(f"/v1/messages/{parent['id']}/replies")).json()
    assert [m["id"] for m in thread["messages"]] == replies and thread["has_more"] is False
    assert all(m["parent_id"] == parent["id"] for m in thread["messages"])
    newest = (await chat.bob.get(f"/v1/messages/{parent['id']}/replies?limit=2")).json()
    assert [m["id"] for m in newest["messages"]] == replies[-2:] and newest["has_more"] is True
    older = (
        await chat.bob.get(
            f"/v1/messages/{parent['id']}/replies", params={"limit": 10, "before": replies[-2]}
        )
    ).json()
    assert [m["id"] for m in older["messages"]] == replies[:-2] and older["has_more"] is False

    channel = (await chat.bob.get("/v1/channels/general")).json()
    assert channel["last_message"]["id"] == parent["id"], "replies stay in the thread"

    nested = await chat.alice.post(
        "/v1/channels/general/messages", json={"text": "deeper", "parent_id": replies[0]}
    )
    assert nested.status_code == 422
    await create_channel(chat.alice, "other", ["bob"])
    across = await chat.alice.post(
        "/v1/channels/other/messages", json={"text": "across", "parent_id": parent["id"]}
    )
    assert across.status_code == 422
    hidden = await chat.carol.get(f"/v1/messages/{parent['id']}/replies")
    assert hidden.status_code == 404


# ---- edit and delete -----------------------------------------------------------------------


async def test_edit_and_delete_permissions(
    server: RunningServer, workspace: NewWorkspace, chat: Chat
) -> None:
    mine = await send(chat.alice, "original")
    url = f"/v1/messages/{mine['id']}"
    assert (await chat.bob.patch(url, json={"text": "hijack"})).status_code == 403
    assert code(await chat.bob.delete(url)) == "FORBIDDEN"
    assert (await chat.carol.patch(url, json={"text": "hijack"})).status_code == 404
    assert code(await chat.carol.delete(url)) == "NOT_FOUND"

    edited = await chat.alice.patch(url, json={"text": "edited by alice"})
    assert edited.status_code == 200, edited.text
    assert edited.json()["text"] == "edited by alice" and edited.json()["edited_at"] is not None
    assert (await chat.alice.patch(url, json={"text": ""})).status_code == 422
    assert (await chat.alice.patch(url, json={"text": "x" * 10_001})).status_code == 422

    admin_token = await make_user(server, workspace, "dave", role="admin")
    async with user_client(server, admin_token) as dave:
        moderated = await dave.patch(url, json={"text": "moderated"})
        assert moderated.status_code == 200 and moderated.json()["text"] == "moderated"
    backend = await chat.backend.patch(url, json={"text": "by the backend"})
    assert backend.status_code == 200 and backend.json()["user_id"] == "alice"
    assert (await history(chat.bob))["messages"][0]["text"] == "by the backend"

    # Events show the message as it is now: every edit's event carries the latest text.
    updates = await events_of(chat.bob, "message.updated")
    assert [u["message"]["text"] for u in updates] == ["by the backend"] * 3

    theirs = await send(chat.bob, "bob's message")
    owner_deletes = await chat.alice.delete(f"/v1/messages/{theirs['id']}")
    assert owner_deletes.status_code == 204, "the channel's owner moderates it"
    assert (await chat.backend.delete(url)).status_code == 204
    [deleted, *_] = await events_of(chat.bob, "message.deleted")
    assert deleted["message"]["id"] == theirs["id"] and deleted["message"]["text"] == ""

    own = await send(chat.bob, "my own")
    assert (await chat.bob.delete(f"/v1/messages/{own['id']}")).status_code == 204
    async with user_client(server, admin_token) as dave:
        other = await send(chat.bob, "another")
        assert (await dave.delete(f"/v1/messages/{other['id']}")).status_code == 204


async def test_deleted_messages_keep_their_place_without_content(chat: Chat) -> None:
    before = await send(chat.alice, "before")
    doomed = await send(chat.alice, "secret words", data={"keep": True})
    url = f"/v1/messages/{doomed['id']}"
    assert (await chat.alice.put(f"{url}/reactions/like")).status_code == 200
    assert (await chat.alice.delete(url)).status_code == 204
    assert (await chat.alice.delete(url)).status_code == 204, "deleting again changes nothing"
    assert len(await events_of(chat.alice, "message.deleted")) == 1

    [first, gone] = (await history(chat.bob))["messages"]
    assert first["id"] == before["id"]
    assert gone["id"] == doomed["id"] and gone["deleted_at"] is not None
    assert gone["text"] == "" and gone["attachments"] == []

    edit = await chat.alice.patch(url, json={"text": "too late"})
    assert edit.status_code == 404 and code(edit) == "NOT_FOUND"
    assert (await chat.bob.put(f"{url}/reactions/like")).status_code == 404
    reply = await chat.bob.post(
        "/v1/channels/general/messages", json={"text": "re", "parent_id": doomed["id"]}
    )
    assert reply.status_code == 422
    found = (await chat.alice.get("/v1/search", params={"q": "secret"})).json()
    assert found == {"messages": []}


# ---- reactions -----------------------------------------------------------------------------


async def test_reactions_of_two_users(chat: Chat) -> None:
    message = await send(chat.alice, "react to me")
    url = f"/v1/messages/{message['id']}/reactions"

    first = await chat.alice.put(f"{url}/like")
    assert first.status_code == 200, first.text
    assert first.json()["reactions"] == {"like": 1} and first.json()["own_reactions"] == ["like"]
    again = await chat.alice.put(f"{url}/like")
    assert again.json()["reactions"] == {"like": 1}, "idempotent"
    by_bob = (await chat.bob.put(f"{url}/like")).json()
    assert by_bob["reactions"] == {"like": 2} and by_bob["own_reactions"] == ["like"]
    by_bob = (await chat.bob.put(f"{url}/%2B1")).json()
    assert by_bob["reactions"] == {"like": 2, "+1": 1}
    assert by_bob["own_reactions"] == ["like", "+1"]

    [seen] = (await history(chat.alice))["messages"]
    assert seen["reactions"] == {"like": 2, "+1": 1} and seen["own_reactions"] == ["like"]

    removed = (await chat.alice.delete(f"{url}/like")).json()
    assert removed["reactions"] == {"like": 1, "+1": 1} and removed["own_reactions"] == []
    removed_again = await chat.alice.delete(f"{url}/like")
    assert removed_again.status_code == 200 and removed_again.json() == removed

    assert len(await events_of(chat.bob, "reaction.new")) == 3
    [gone] = await events_of(chat.bob, "reaction.deleted")
    assert gone["reaction"] == {"message_id": message["id"], "user_id": "alice", "type": "like"}
    assert gone["message"]["reactions"] == {"like": 1, "+1": 1}

    for bad in ["bad%20type", "x" * 33, "smile!"]:
        response = await chat.alice.put(f"{url}/{bad}")
        assert response.status_code == 422, (bad, response.text)
    assert (await chat.carol.put(f"{url}/like")).status_code == 404
    backend = await chat.backend.put(f"{url}/wave", params={"user_id": "bob"})
    assert backend.status_code == 200 and backend.json()["own_reactions"] == ["like", "+1", "wave"]


async def test_channel_last_message_shows_what_history_shows(chat: Chat) -> None:
    message = await send(chat.alice, "react to me")
    url = f"/v1/messages/{message['id']}/reactions"
    assert (await chat.alice.put(f"{url}/like")).status_code == 200
    assert (await chat.bob.put(f"{url}/like")).status_code == 200
    assert (await chat.bob.put(f"{url}/wow")).status_code == 200

    for http, own in ((chat.alice, ["like"]), (chat.bob, ["like", "wow"])):
        [latest] = (await history(http))["messages"]
        assert latest["reactions"] == {"like": 2, "wow": 1} and latest["own_reactions"] == own
        listed = (await http.get("/v1/channels")).json()["channels"]
        [general] = [c for c in listed if c["id"] == "general"]
        assert general["last_message"] == latest
        single = (await http.get("/v1/channels/general")).json()
        assert single["last_message"] == latest


# ---- search --------------------------------------------------------------------------------


async def test_search_sees_only_the_callers_channels(
    server: RunningServer, workspace: NewWorkspace, other_workspace: NewWorkspace, chat: Chat
) -> None:
    older = await send(chat.alice, "Pineapple pizza tonight")
    newer = await send(chat.bob, "no pineapple on pizza please")
    await send(chat.bob, "unrelated words")
    await create_channel(chat.carol, "secret", [])
    hidden = await send(chat.carol, "pineapple pizza in secret", channel="secret")

    found = (await chat.alice.get("/v1/search", params={"q": "pizza pineapple"})).json()
    assert [m["id"] for m in found["messages"]] == [newer["id"], older["id"]], "newest first"
    only = (await chat.carol.get("/v1/search", params={"q": "pineapple"})).json()
    assert [m["id"] for m in only["messages"]] == [hidden["id"]]

    filtered = await chat.alice.get(
        "/v1/search", params={"q": "pineapple", "channel_id": "general", "limit": 1}
    )
    assert [m["id"] for m in filtered.json()["messages"]] == [newer["id"]]
    other_channel = await chat.alice.get(
        "/v1/search", params={"q": "pineapple", "channel_id": "secret"}
    )
    assert other_channel.status_code == 404

    everything = (await chat.backend.get("/v1/search", params={"q": "pineapple"})).json()
    assert len(everything["messages"]) == 3
    as_bob = (
        await chat.backend.get("/v1/search", params={"q": "pineapple", "user_id": "bob"})
    ).json()
    assert len(as_bob["messages"]) == 2

    stranger = await make_user(server, other_workspace, "alice")
    async with user_client(server, stranger) as http:
        assert (await http.get("/v1/search", params={"q": "pineapple"})).json() == {"messages": []}
    async with backend_client(server, other_workspace) as http:
        assert (await http.get("/v1/search", params={"q": "pineapple"})).json() == {"messages": []}

    invalid: list[dict[str, str | int]] = [
        {"q": ""},
        {"q": "   "},
        {},
        {"q": "x", "limit": 101},
        {"q": "x", "limit": 0},
    ]
    for params in invalid:
        response = await chat.alice.get("/v1/search", params=params)
        assert response.status_code == 422, (params, response.text)
    punctuation = await chat.alice.get("/v1/search", params={"q": "!!! &&& |"})
    assert punctuation.status_code == 200 and punctuation.json() == {"messages": []}


# ---- robustness and limits -----------------------------------------------------------------


async def test_malformed_ids_in_paths_are_404(chat: Chat) -> None:
    for method, path in [
        ("PATCH", "/v1/messages/not-a-uuid"),
        ("DELETE", "/v1/messages/not-a-uuid"),
        ("GET", "/v1/messages/not-a-uuid/replies"),
        ("PUT", "/v1/messages/not-a-uuid/reactions/like"),
        ("DELETE", "/v1/messages/not-a-uuid/reactions/like"),
        ("PATCH", f"/v1/messages/{uuid.uuid4()}"),
        ("GET", f"/v1/messages/{uuid.uuid4()}/replies"),
    ]:
        body = {"text": "x"} if method == "PATCH" else None
        response = await chat.alice.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert code(response) == "NOT_FOUND"


async def test_sending_is_rate_limited_per_user(
    chat: Chat, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2 per second: 50 sends at once reach it even when a busy machine spreads them over
    # several seconds (the limit counts in 1 s windows).
    settings = server.services.settings
    limits = dataclasses.replace(settings.limits, user_messages_per_second=2)
    monkeypatch.setattr(server.services, "settings", settings.with_overrides(limits=limits))
    responses = await asyncio.gather(
        *(
            chat.alice.post("/v1/channels/general/messages", json={"text": f"flood {n}"})
            for n in range(50)
        )
    )
    limited = [r for r in responses if r.status_code == 429]
    created = [r for r in responses if r.status_code == 201]
    assert limited and len(created) + len(limited) == 50
    assert code(limited[0]) == "RATE_LIMITED" and int(limited[0].headers["retry-after"]) >= 1
    stored = await history(chat.alice, limit=200)
    assert len(stored["messages"]) == len(created)
    assert (await chat.bob.post("/v1/channels/general/messages", json={"text": "me"})).is_success


async def test_only_sends_count_against_the_message_burst_limit(
    chat: Chat, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The burst limit is counted with the request (one round trip to the store): reads and
    # other writes of the same second leave it whole.
    settings = server.services.settings
    limits = dataclasses.replace(settings.limits, user_messages_per_second=2)
    monkeypatch.setattr(server.services, "settings", settings.with_overrides(limits=limits))
    for _ in range(6):
        assert (await history(chat.alice, limit=1)) is not None
        read = await chat.alice.post("/v1/channels/general/read", json={})
        assert read.status_code < 300, read.text
    sends = [
        await chat.alice.post("/v1/channels/general/messages", json={"text": f"after {n}"})
        for n in range(2)
    ]
    assert [r.status_code for r in sends] == [201, 201], [r.text for r in sends]
