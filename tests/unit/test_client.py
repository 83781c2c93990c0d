"""The SDK against a fake server (`httpx.MockTransport`): errors, auth, retries, paths, decoding."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import msgspec
import pytest

import cariosan_client._http as http_module
import cariosan_client.live as live_module
from cariosan_client import (
    CariosanError,
    Channel,
    ChatClient,
    Conflict,
    Forbidden,
    Internal,
    MessageNew,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RetryPolicy,
    ServerClient,
    TransportError,
    TypingStop,
    Unauthorized,
    Unavailable,
    UnknownEvent,
    ValidationFailed,
    decode_event,
    error_from_response,
)

BASE = "http://chat.test"
NOW = "2025-01-02T03:04:05Z"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeServer:
    """Answers every request with `handler` and remembers the requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def reply(status: int = 200, body: Any = None, **headers: str) -> Handler:
    return lambda request: httpx.Response(status, json=body, headers=headers)


def error(code: str, status: int, message: str = "nope", **headers: str) -> httpx.Response:
    envelope = {"error": {"code": code, "message": message, "request_id": "req-1"}}
    return httpx.Response(status, json=envelope, headers=headers)


def user_json(**extra: Any) -> dict[str, Any]:
    return {
        "id": "alice",
        "name": "Alice",
        "image_url": None,
        "role": "user",
        "data": {},
        "created_at": NOW,
        "updated_at": NOW,
        "last_active_at": None,
        **extra,
    }


def message_json(**extra: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "channel_id": "general",
        "user_id": "alice",
        "text": "hi",
        "parent_id": None,
        "reply_count": 0,
        "attachments": [],
        "mentions": [],
        "reactions": {},
        "own_reactions": [],
        "data": {},
        "created_at": NOW,
        "edited_at": None,
        "deleted_at": None,
        **extra,
    }


def echo_message(request: httpx.Request) -> httpx.Response:
    sent = json.loads(request.content)
    return httpx.Response(201, json=message_json(id=sent["id"], text=sent["text"]))


def chat_client(server: FakeServer, token: str | None = "jwt-1", **kwargs: Any) -> ChatClient:
    return ChatClient(BASE, token, transport=server.transport, **kwargs)


@pytest.fixture(autouse=True)
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses the SDK takes before retrying, taken instantly."""
    taken: list[float] = []

    async def pause(seconds: float) -> None:
        taken.append(seconds)

    monkeypatch.setattr(http_module, "sleep", pause)
    return taken


# -- errors --------------------------------------------------------------------------------------

ERRORS = [
    ("UNAUTHORIZED", 401, Unauthorized),
    ("FORBIDDEN", 403, Forbidden),
    ("NOT_FOUND", 404, NotFound),
    ("METHOD_NOT_ALLOWED", 405, MethodNotAllowed),
    ("CONFLICT", 409, Conflict),
    ("PAYLOAD_TOO_LARGE", 413, PayloadTooLarge),
    ("VALIDATION_FAILED", 422, ValidationFailed),
    ("RATE_LIMITED", 429, RateLimited),
    ("INTERNAL", 500, Internal),
    ("UNAVAILABLE", 503, Unavailable),
]


@pytest.mark.parametrize(("code", "status", "cls"), ERRORS)
async def test_each_error_code_raises_its_class(
    code: str, status: int, cls: type[CariosanError]
) -> None:
    server = FakeServer(lambda request: error(code, status, "it went wrong"))
    async with chat_client(server) as chat:
        with pytest.raises(cls) as caught:
            await chat.get_channel("general")
    err = caught.value
    assert isinstance(err, CariosanError)
    assert (err.code, err.status, err.message) == (code, status, "it went wrong")
    assert err.request_id == "req-1"
    assert str(err) == "it went wrong"


@pytest.mark.parametrize(
    ("status", "cls", "code"),
    [
        (400, ValidationFailed, "VALIDATION_FAILED"),
        (404, NotFound, "NOT_FOUND"),
        (502, Unavailable, "UNAVAILABLE"),
        (599, Internal, "INTERNAL"),
        (418, CariosanError, "HTTP_418"),
    ],
)
def test_a_body_without_envelope_is_mapped_by_status(
    status: int, cls: type[CariosanError], code: str
) -> None:
    response = httpx.Response(
        status, text="<html>bad gateway</html>", headers={"X-Request-Id": "r9"}
    )
    err = error_from_response(response)
    assert type(err) is cls
    assert (err.code, err.status, err.request_id) == (code, status, "r9")
    assert str(status) in err.message


def test_an_unknown_code_keeps_the_servers_code_and_picks_the_class_by_status() -> None:
    err = error_from_response(error("CHANNEL_ARCHIVED", 409))
    assert type(err) is Conflict
    assert err.code == "CHANNEL_ARCHIVED"


def test_retry_after_is_parsed_from_seconds_or_date() -> None:
    assert error_from_response(error("RATE_LIMITED", 429, **{"Retry-After": "7"})).retry_after == 7
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    later = error_from_response(error("RATE_LIMITED", 429, **{"Retry-After": in_a_minute}))
    assert later.retry_after is not None and 55 <= later.retry_after <= 60
    assert (
        error_from_response(error("RATE_LIMITED", 429, **{"Retry-After": "soon"})).retry_after
        is None
    )
    assert error_from_response(error("RATE_LIMITED", 429)).retry_after is None


async def test_rate_limited_carries_retry_after() -> None:
    server = FakeServer(lambda request: error("RATE_LIMITED", 429, **{"Retry-After": "3"}))
    async with chat_client(server, retry=RetryPolicy.never()) as chat:
        with pytest.raises(RateLimited) as caught:
            await chat.me()
    assert caught.value.retry_after == 3.0
    assert len(server.requests) == 1


async def test_connection_failure_is_a_transport_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with chat_client(FakeServer(refuse)) as chat:
        with pytest.raises(TransportError) as caught:
            await chat.me()
    assert caught.value.code == "UNAVAILABLE"
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_a_2xx_body_that_does_not_fit_is_internal() -> None:
    async with chat_client(FakeServer(reply(200, {"user": "not an object"}))) as chat:
        with pytest.raises(Internal, match="unexpected response"):
            await chat.me()


# -- tokens --------------------------------------------------------------------------------------


class Provider:
    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        await asyncio.sleep(0)
        return self.tokens.pop(0)


def accept_only(token: str) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] != f"Bearer {token}":
            return error("UNAUTHORIZED", 401, "token expired")
        return httpx.Response(200, json={"user": user_json(), "total_unread": 2})

    return handle


async def test_on_401_the_provider_is_called_once_and_the_request_retried() -> None:
    server = FakeServer(accept_only("fresh"))
    provider = Provider("fresh")
    async with chat_client(server, "stale", token_provider=provider) as chat:
        me = await chat.me()
        await chat.me()
    assert me.total_unread == 2
    assert provider.calls == 1
    assert [r.headers["authorization"] for r in server.requests] == [
        "Bearer stale",
        "Bearer fresh",
        "Bearer fresh",
    ]


async def test_a_second_401_raises_unauthorized() -> None:
    server = FakeServer(accept_only("never"))
    provider = Provider("fresh", "fresher")
    async with chat_client(server, "stale", token_provider=provider) as chat:
        with pytest.raises(Unauthorized):
            await chat.me()
    assert provider.calls == 1
    assert len(server.requests) == 2


async def test_without_a_provider_a_401_raises_at_once() -> None:
    server = FakeServer(accept_only("never"))
    async with chat_client(server, "stale") as chat:
        with pytest.raises(Unauthorized):
            await chat.me()
    assert len(server.requests) == 1


async def test_without_a_token_the_provider_is_called_before_the_first_request() -> None:
    server = FakeServer(accept_only("first"))
    provider = Provider("first")
    async with chat_client(server, None, token_provider=provider) as chat:
        await asyncio.gather(chat.me(), chat.me(), chat.me())
    assert provider.calls == 1
    assert {r.headers["authorization"] for r in server.requests} == {"Bearer first"}
    assert len(server.requests) == 3


def test_a_chat_client_needs_a_token_or_a_provider() -> None:
    with pytest.raises(ValueError, match="token"):
        ChatClient(BASE)


# -- acting as a user ----------------------------------------------------------------------------


async def test_as_user_adds_user_id_to_every_request_and_shares_the_connection() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return echo_message(request)
        return httpx.Response(200, json={"channels": [], "next_cursor": None})

    server = FakeServer(handle)
    async with ServerClient(BASE, "sk_secret", transport=server.transport) as backend:
        async with backend.as_user("bob@example.com") as bob:
            assert bob.user_id == "bob@example.com"
            await bob.list_channels(limit=5)
            await bob.send("general", "hello")
        await backend.as_user("carol").list_channels()  # the shared connection is still open
    for request in server.requests:
        assert request.headers["authorization"] == "Bearer sk_secret"
    assert [r.url.params.get("user_id") for r in server.requests] == [
        "bob@example.com",
        "bob@example.com",
        "carol",
    ]
    assert server.requests[0].url.params["limit"] == "5"
    assert "user_id" not in server.body(1)


# -- send ----------------------------------------------------------------------------------------


async def test_send_generates_a_time_ordered_id() -> None:
    server = FakeServer(echo_message)
    async with chat_client(server) as chat:
        message = await chat.send("general", "hi", mentions=["bob"], data={"k": 1})
    sent = server.body()
    assert uuid.UUID(sent["id"]).version == 7
    assert message.id == sent["id"]
    assert sent == {"id": sent["id"], "text": "hi", "mentions": ["bob"], "data": {"k": 1}}


async def test_send_retries_on_503_with_the_same_id() -> None:
    answers = [error("UNAVAILABLE", 503)]

    def handle(request: httpx.Request) -> httpx.Response:
        return answers.pop(0) if answers else echo_message(request)

    server = FakeServer(handle)
    async with chat_client(server) as chat:
        message = await chat.send("general", "hi")
    first, second = (json.loads(r.content)["id"] for r in server.requests)
    assert first == second == message.id


async def test_send_retries_after_a_network_error_keeping_a_given_id() -> None:
    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        return echo_message(request)

    server = FakeServer(handle)
    async with chat_client(server) as chat:
        message = await chat.send("general", "hi", id="my-id")
    assert message.id == "my-id"
    assert [json.loads(r.content)["id"] for r in server.requests] == ["my-id", "my-id"]


async def test_send_gives_up_after_max_retries() -> None:
    server = FakeServer(lambda request: error("UNAVAILABLE", 503))
    async with chat_client(server, retry=RetryPolicy(max_retries=2)) as chat:
        with pytest.raises(Unavailable):
            await chat.send("general", "hi")
    assert len(server.requests) == 3
    assert len({json.loads(r.content)["id"] for r in server.requests}) == 1


async def test_send_does_not_retry_other_errors() -> None:
    server = FakeServer(lambda request: error("FORBIDDEN", 403))
    async with chat_client(server) as chat:
        with pytest.raises(Forbidden):
            await chat.send("general", "hi")
    assert len(server.requests) == 1


# -- retry policy --------------------------------------------------------------------------------


def rate_limited_then(answer: Handler, retry_after: str, times: int = 1) -> Handler:
    left = times

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal left
        if left:
            left -= 1
            return error("RATE_LIMITED", 429, **{"Retry-After": retry_after})
        return answer(request)

    return handle


def channel_json(request: httpx.Request) -> httpx.Response:
    return httpx.Response(201, json={"id": "general", "type": "group"})


async def test_a_429_is_sent_again_after_retry_after_even_when_not_idempotent(
    pauses: list[float],
) -> None:
    server = FakeServer(rate_limited_then(channel_json, "2", times=2))
    async with chat_client(server) as chat:
        channel = await chat.create_channel("group", ["bob"])
    assert channel.id == "general"
    assert [r.method for r in server.requests] == ["POST", "POST", "POST"]
    assert pauses == [2.0, 2.0]


async def test_a_429_asking_for_longer_than_the_cap_is_raised_at_once(pauses: list[float]) -> None:
    server = FakeServer(rate_limited_then(channel_json, "120"))
    async with chat_client(server, retry=RetryPolicy(max_retry_after=60)) as chat:
        with pytest.raises(RateLimited) as caught:
            await chat.create_channel("group", ["bob"])
    assert caught.value.retry_after == 120
    assert len(server.requests) == 1 and pauses == []


async def test_retries_stop_at_max_retries(pauses: list[float]) -> None:
    server = FakeServer(rate_limited_then(channel_json, "1", times=10))
    async with ServerClient(BASE, "secret", transport=server.transport) as backend:
        backend_chat = backend.as_user("alice")
        with pytest.raises(RateLimited):
            await backend_chat.create_channel("group", [])
    assert len(server.requests) == 4 and pauses == [1.0, 1.0, 1.0]


def refuse_first(answer: Handler) -> Handler:
    """Each distinct request fails to connect the first time, then is answered."""
    seen: set[tuple[str, str]] = set()

    def handle(request: httpx.Request) -> httpx.Response:
        key = (request.method, str(request.url))
        if key not in seen:
            seen.add(key)
            raise httpx.ConnectError("connection refused", request=request)
        return answer(request)

    return handle


def message_for(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=message_json(id="m1"))


@pytest.mark.parametrize(
    ("call", "method", "retried"),
    [
        (lambda chat: chat.get_channel("general"), "GET", True),
        (lambda chat: chat.add_reaction("m1", "heart"), "PUT", True),
        (lambda chat: chat.delete_message("m1"), "DELETE", True),
        (lambda chat: chat.edit_message("m1", "new"), "PATCH", False),
        (lambda chat: chat.mark_read("general"), "POST", False),
    ],
)
async def test_connection_errors_are_retried_for_idempotent_requests_only(
    call: Callable[[ChatClient], Any], method: str, retried: bool, pauses: list[float]
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"id": "general", "type": "group"})
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.method == "POST":
            return httpx.Response(200, json={"unread_count": 0})
        return message_for(request)

    server = FakeServer(refuse_first(answer))
    async with chat_client(server, retry=RetryPolicy(first_backoff=0.2, max_backoff=1)) as chat:
        if retried:
            await call(chat)
        else:
            with pytest.raises(TransportError):
                await call(chat)
    assert [r.method for r in server.requests] == [method] * (2 if retried else 1)
    assert len(pauses) == (1 if retried else 0)
    assert all(0.1 <= p <= 0.2 for p in pauses)


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    policy = RetryPolicy(max_retries=6, first_backoff=1, max_backoff=4)
    lost = TransportError("cannot reach")
    for attempt, full in enumerate([1, 2, 4, 4, 4, 4]):
        for _ in range(20):
            delay = policy.delay(attempt, lost, idempotent=True)
            assert delay is not None and full / 2 <= delay <= full
    assert policy.delay(6, lost, idempotent=True) is None
    assert policy.delay(0, lost, idempotent=False) is None
    assert policy.delay(0, Forbidden("no"), idempotent=True) is None
    assert RetryPolicy.never().delay(0, lost, idempotent=True) is None
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(max_retries=-1)


# -- paths ---------------------------------------------------------------------------------------


async def test_path_segments_are_quoted() -> None:
    server = FakeServer(lambda request: httpx.Response(204))
    async with chat_client(server) as chat:
        await chat.remove_member("team.eng@acme", "bob@example.com")
        await chat.delete_channel("..")
        await chat.delete_channel("a/b?c#d%")
        await chat.delete_message("m 1")
    server.handler = reply(200, message_json())
    async with chat_client(server) as chat:
        await chat.add_reaction("m1", "👍")
    assert [r.url.raw_path.decode() for r in server.requests] == [
        "/v1/channels/team.eng%40acme/members/bob%40example.com",
        "/v1/channels/%2E%2E",
        "/v1/channels/a%2Fb%3Fc%23d%25",
        "/v1/messages/m%201",
        "/v1/messages/m1/reactions/%F0%9F%91%8D",
    ]


async def test_an_empty_id_is_refused_before_any_request() -> None:
    server = FakeServer(reply(200, {}))
    async with chat_client(server) as chat:
        with pytest.raises(ValueError, match="non-empty"):
            await chat.get_channel("")
    assert server.requests == []


async def test_a_base_url_with_a_path_prefix_is_kept() -> None:
    server = FakeServer(reply(200, {"user": user_json(), "total_unread": 0}))
    async with ChatClient(f"{BASE}/chat/", "t", transport=server.transport) as chat:
        await chat.me()
    assert str(server.requests[0].url) == f"{BASE}/chat/v1/me"


# -- server client -------------------------------------------------------------------------------


async def test_server_client_reads_url_and_secret_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARIOS_API_URL", "http://env.test")
    monkeypatch.setenv("CARIOS_API_SECRET", "sk_env")
    server = FakeServer(reply(200, user_json()))
    async with ServerClient(transport=server.transport) as backend:
        await backend.get_user("alice")
    async with ServerClient("http://arg.test", "sk_arg", transport=server.transport) as backend:
        await backend.get_user("alice")
    assert [str(r.url) for r in server.requests] == [
        "http://env.test/v1/users/alice",
        "http://arg.test/v1/users/alice",
    ]
    assert [r.headers["authorization"] for r in server.requests] == [
        "Bearer sk_env",
        "Bearer sk_arg",
    ]


@pytest.mark.parametrize("missing", ["CARIOS_API_URL", "CARIOS_API_SECRET"])
def test_server_client_without_url_or_secret_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setenv("CARIOS_API_URL", "http://env.test")
    monkeypatch.setenv("CARIOS_API_SECRET", "sk_env")
    monkeypatch.delenv(missing)
    with pytest.raises(ValueError, match=missing):
        ServerClient()


async def test_server_endpoints_send_what_api_md_says() -> None:
    webhook = {"id": "w1", "url": "https://hooks.test/x", "events": ["*"]}
    delivery = {
        "id": "d1",
        "event_type": "message.new",
        "seq": 4,
        "status": "failed",
        "attempts": 3,
        "last_status_code": 500,
        "last_error": "boom",
        "next_attempt_at": None,
        "created_at": NOW,
    }
    answers = [
        httpx.Response(200, json=user_json(name="Al", role="admin")),
        httpx.Response(204),
        httpx.Response(200, json={"token": "jwt", "expires_at": NOW}),
        httpx.Response(201, json={**webhook, "secret": "whsec_1"}),
        httpx.Response(200, json={"webhooks": [webhook]}),
        httpx.Response(200, json={"deliveries": [delivery], "next_cursor": "c2"}),
        httpx.Response(202),
        httpx.Response(204),
    ]
    server = FakeServer(lambda request: answers.pop(0))
    async with ServerClient(BASE, "sk", transport=server.transport) as backend:
        user = await backend.upsert_user("al", name="Al", role="admin")
        await backend.delete_user("al", mode="hard")
        token = await backend.create_token("al", ttl_seconds=60)
        created = await backend.create_webhook("https://hooks.test/x", ["*"])
        listed = await backend.list_webhooks()
        page = await backend.list_deliveries("w1", status="failed", limit=10)
        await backend.replay_delivery("w1", "d1")
        await backend.delete_webhook("w1")
    assert (user.name, user.role) == ("Al", "admin")
    assert token.expires_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert created.secret == "whsec_1" and listed[0].secret is None
    assert page.next_cursor == "c2" and page.deliveries[0].last_status_code == 500
    assert [f"{r.method} {r.url.path}?{r.url.query.decode()}" for r in server.requests] == [
        "PUT /v1/users/al?",
        "DELETE /v1/users/al?mode=hard",
        "POST /v1/users/al/token?",
        "POST /v1/webhooks?",
        "GET /v1/webhooks?",
        "GET /v1/webhooks/w1/deliveries?status=failed&limit=10",
        "POST /v1/webhooks/w1/deliveries/d1/replay?",
        "DELETE /v1/webhooks/w1?",
    ]
    assert server.body(0) == {"name": "Al", "role": "admin"}
    assert server.body(2) == {"ttl_seconds": 60}
    assert server.body(3) == {"url": "https://hooks.test/x", "events": ["*"]}


# -- chat endpoints and decoding -----------------------------------------------------------------


async def test_unknown_fields_are_ignored_and_absent_ones_default() -> None:
    channel = {
        "id": "general",
        "type": "group",
        "name": "General",
        "member_count": 2,
        "brand_new_field": {"x": 1},
        "last_message": message_json(text="hey", future=True),
        "members": [{"user_id": "alice", "role": "owner", "joined_at": NOW, "x": 1}],
    }
    server = FakeServer(reply(200, channel))
    async with chat_client(server) as chat:
        got = await chat.get_channel("general")
    assert isinstance(got, Channel)
    assert got.last_message is not None and got.last_message.text == "hey"
    assert got.members is not None and got.members[0].role == "owner"
    assert got.unread_count == 0 and got.data == {} and got.created_at is None
    assert got.last_message.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


async def test_chat_endpoints_send_what_api_md_says() -> None:
    answers = [
        httpx.Response(201, json={"id": "g", "type": "group", "members": []}),
        httpx.Response(200, json={"channels": [], "next_cursor": None}),
        httpx.Response(200, json={"messages": [message_json()], "has_more": True}),
        httpx.Response(200, json={"unread_count": 4}),
        httpx.Response(204),
        httpx.Response(200, json={"messages": [message_json(), message_json()]}),
        httpx.Response(200, json={"events": [{"type": "message.new", "seq": 9}], "latest_seq": 9}),
        httpx.Response(
            201,
            json={
                "attachment_id": "a1",
                "upload_url": "https://s3/put",
                "upload_method": "PUT",
                "upload_headers": {"x-amz": "1"},
                "expires_at": NOW,
            },
        ),
        httpx.Response(200, json=message_json(text="edited", edited_at=NOW)),
    ]
    server = FakeServer(lambda request: answers.pop(0))
    async with chat_client(server) as chat:
        await chat.create_channel("group", ["alice", "bob"], id="g", name="G")
        await chat.list_channels(cursor="c1", public=True)
        page = await chat.list_messages("g", limit=50, before="m9")
        unread = await chat.mark_read("g")
        await chat.typing("g", "start")
        found = await chat.search("hello world", channel_id="g")
        events = await chat.events(after_seq=8)
        upload = await chat.create_upload("g", "a.png", "image/png", 10)
        edited = await chat.edit_message("m1", "edited")
    assert page.has_more and len(page.messages) == 1
    assert unread == 4 and len(found) == 2
    assert events.latest_seq == 9 and events.events[0].type == "message.new"
    assert upload.upload_headers == {"x-amz": "1"}
    assert edited.edited_at is not None
    assert [f"{r.method} {r.url.path}?{r.url.query.decode()}" for r in server.requests] == [
        "POST /v1/channels?",
        "GET /v1/channels?cursor=c1&public=true",
        "GET /v1/channels/g/messages?limit=50&before=m9",
        "POST /v1/channels/g/read?",
        "POST /v1/channels/g/typing?",
        "GET /v1/search?q=hello+world&channel_id=g",
        "GET /v1/events?after_seq=8",
        "POST /v1/attachments?",
        "PATCH /v1/messages/m1?",
    ]
    assert server.body(0) == {"id": "g", "type": "group", "name": "G", "members": ["alice", "bob"]}
    assert server.body(3) == {}
    assert server.body(4) == {"state": "start"}
    assert server.body(8) == {"text": "edited"}


# -- events --------------------------------------------------------------------------------------


def test_events_decode_to_the_class_of_their_type() -> None:
    frame = {"type": "message.new", "seq": 7, "channel_id": "general", "created_at": NOW}
    event = decode_event(json.dumps({**frame, "message": message_json(text="hi")}))
    assert isinstance(event, MessageNew)
    assert (event.seq, event.channel_id, event.message.text) == (7, "general", "hi")
    typing = decode_event(b'{"type": "typing.stop", "channel_id": "general", "user_id": "bob"}')
    assert typing == TypingStop(channel_id="general", user_id="bob")


def test_an_unknown_or_unreadable_event_is_kept_whole_rather_than_failing() -> None:
    future = {"type": "user.banned", "seq": 9, "user_id": "bob", "created_at": NOW}
    event = decode_event(json.dumps(future))
    assert isinstance(event, UnknownEvent)
    assert (event.type, event.seq, event.data) == ("user.banned", 9, future)
    # A known type in a shape this SDK cannot read (here: no message) is not an error either.
    odd = decode_event(b'{"type": "message.new", "seq": "not a number"}')
    assert isinstance(odd, UnknownEvent) and odd.seq is None and odd.data["seq"] == "not a number"
    with pytest.raises(msgspec.DecodeError):
        decode_event(b'{"no": "type"}')


class Stop(Exception):
    """Ends a reconnect loop from inside a pause."""


async def test_live_events_back_off_doubling_to_a_cap_while_the_server_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken: list[float] = []

    async def pause(seconds: float) -> None:
        taken.append(seconds)
        if len(taken) == 10:
            raise Stop

    async def token() -> str:
        return "jwt"

    monkeypatch.setattr(live_module, "sleep", pause)
    # Port 1 on loopback: the connection is refused at once, every time.
    events = live_module.LiveEvents("ws://127.0.0.1:1/v1/ws", token, None)
    with pytest.raises(Stop):
        await anext(events)
    full = [min(live_module.FIRST_DELAY * 2**n, live_module.MAX_DELAY) for n in range(10)]
    assert all(f / 2 <= t <= f for t, f in zip(taken, full, strict=True)), taken
    assert full[-1] == live_module.MAX_DELAY

    # A first failure would pause at most FIRST_DELAY, except after close 4008 (rate limited).
    taken.clear()
    fresh = live_module.LiveEvents("ws://127.0.0.1:1/v1/ws", token, None)
    await fresh._lost(live_module.RATE_LIMITED)
    assert taken == [live_module.RATE_LIMITED_DELAY]


# -- upload --------------------------------------------------------------------------------------


async def test_upload_puts_with_the_signed_headers_and_never_the_token() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/attachments":
            return httpx.Response(
                201,
                json={
                    "attachment_id": "a1",
                    "upload_url": "https://store.test/bucket/a1/notes.txt?X-Amz-Signature=s",
                    "upload_method": "PUT",
                    "upload_headers": {"Content-Type": "text/plain", "Content-Length": "5"},
                    "expires_at": NOW,
                },
            )
        return httpx.Response(200)

    server = FakeServer(handle)
    async with chat_client(server) as chat:
        upload = await chat.upload("general", b"hello", filename="notes.txt")
    assert upload.attachment_id == "a1"
    reserve, put = server.requests
    assert json.loads(reserve.content) == {
        "channel_id": "general",
        "filename": "notes.txt",
        "content_type": "text/plain",
        "size": 5,
    }
    assert (put.method, put.url.host, put.content) == ("PUT", "store.test", b"hello")
    assert put.url.params["X-Amz-Signature"] == "s"
    assert put.headers["content-type"] == "text/plain" and put.headers["content-length"] == "5"
    # The presigned URL is the credential: the user's token must not travel to the store.
    assert "authorization" not in put.headers
    assert reserve.headers["authorization"] == "Bearer jwt-1"
