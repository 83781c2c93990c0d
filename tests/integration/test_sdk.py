"""The Python SDK against a real server, used the way a customer's backend and app use it."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import msgspec
import pytest

from cariosan.config import Limits, Settings
from cariosan.domain.workspaces import NewWorkspace, create_workspace
from cariosan_client import (
    ChatClient,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerClient,
    TransportError,
    Unauthorized,
    ValidationFailed,
)
from tests.conftest import JWT_SECRET
from tests.integration.test_attachments import BUCKET, s3_settings
from tests.services.provision import S3Service
from tests.support.server import RunningServer, start_server


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here works in a workspace of its own: one server serves them all."""
    return shared_server


@pytest.fixture
async def backend(server: RunningServer, workspace: NewWorkspace) -> ServerClient:
    client = ServerClient(server.url, workspace.api_secret)
    for user_id in ("alice", "bob", "carol"):
        await client.upsert_user(user_id, name=user_id.title())
    return client


async def _chat(backend: ServerClient, user_id: str) -> ChatClient:
    return ChatClient(backend.base_url, token=(await backend.create_token(user_id)).token)


async def test_a_conversation_end_to_end(backend: ServerClient) -> None:
    async with backend, await _chat(backend, "alice") as alice, await _chat(backend, "bob") as bob:
        channel = await alice.create_channel("group", ["bob"], name="Team")
        assert {m.user_id for m in channel.members or []} == {"alice", "bob"}
        first = await alice.send(channel.id, "hello @bob", mentions=["bob"])
        again = await alice.send(channel.id, "hello @bob", id=first.id)
        assert again.id == first.id and again.created_at == first.created_at
        reply = await bob.send(channel.id, "hi!", parent_id=first.id)
        assert (await bob.replies(first.id)).messages[0].id == reply.id
        reacted = await bob.add_reaction(first.id, "heart")
        assert reacted.reactions == {"heart": 1} and reacted.own_reactions == ["heart"]
        edited = await alice.edit_message(first.id, "hello, Bob")
        assert edited.edited_at is not None

        page = await bob.list_channels()
        assert [(c.id, c.unread_count) for c in page.channels] == [(channel.id, 1)]
        assert (await bob.me()).total_unread == 1
        assert await bob.mark_read(channel.id) == 0
        history = await bob.list_messages(channel.id)
        assert [m.text for m in history.messages] == ["hello, Bob"]
        assert history.messages[0].reply_count == 1
        found = await bob.search("Bob")
        assert [m.id for m in found] == [first.id]

        # Events become visible once every older transaction on the server has finished;
        # poll as a client would rather than assume that has already happened.
        for _ in range(100):
            events = await bob.events(after_seq=0)
            types = [e.type for e in events.events]
            if "message.updated" in types:
                break
            await asyncio.sleep(0.1)
        assert types[:2] == ["channel.created", "message.new"]
        assert "reaction.new" in types and "message.updated" in types
        last_seq = events.events[-1].seq
        assert last_seq is not None and events.latest_seq >= last_seq

        await alice.delete_message(first.id)
        gone = (await bob.list_messages(channel.id)).messages[0]
        assert gone.deleted_at is not None and gone.text == ""


async def test_errors_are_typed_with_the_api_code(backend: ServerClient) -> None:
    async with (
        backend,
        await _chat(backend, "alice") as alice,
        await _chat(backend, "carol") as carol,
    ):
        channel = await alice.create_channel("group", ["bob"], id="private")
        message = await alice.send(channel.id, "secret")
        with pytest.raises(NotFound) as not_found:
            await carol.list_messages(channel.id)
        assert not_found.value.code == "NOT_FOUND" and not_found.value.request_id
        with pytest.raises(ValidationFailed):
            await alice.send(channel.id, "x" * 10_001)
        with pytest.raises(Conflict):
            await alice.create_channel("group", ["bob"], id="private")
        bob = await _chat(backend, "bob")
        async with bob:
            with pytest.raises(Forbidden):
                await bob.edit_message(message.id, "not mine")
        with pytest.raises(NotFound):
            await backend.get_user("nobody")


async def test_token_provider_is_asked_again_on_unauthorized(
    server: RunningServer, backend: ServerClient, workspace: NewWorkspace
) -> None:
    now = int(time.time())
    expired = jwt.encode(
        {"sub": "alice", "ws": str(workspace.id), "iat": now - 120, "exp": now - 60},
        JWT_SECRET,
        algorithm="HS256",
    )
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        return (await backend.create_token("alice")).token

    async with backend, ChatClient(server.url, token=expired, token_provider=provider) as alice:
        assert (await alice.me()).user.id == "alice"
        assert calls == 1
    async with ChatClient(server.url, token=expired) as stale:
        with pytest.raises(Unauthorized):
            await stale.me()


async def test_backend_acts_as_a_user(backend: ServerClient) -> None:
    async with backend:
        async with backend.as_user("alice") as alice:
            channel = await alice.create_channel("dm", ["bob"])
            sent = await alice.send(channel.id, "from the backend")
        assert sent.user_id == "alice"
        async with await _chat(backend, "bob") as bob:
            same = await bob.create_channel("dm", ["alice"])
            assert same.id == channel.id, "one dm per pair"


async def test_rate_limited_is_raised_with_retry_after(settings: Settings) -> None:
    tight = settings.with_overrides(limits=Limits(user_messages_per_second=3))
    async with start_server(tight) as running:
        ws = await create_workspace(running.services.db, "limited")
        async with ServerClient(running.url, ws.api_secret) as backend:
            await backend.upsert_user("alice")
            token = (await backend.create_token("alice")).token
            async with ChatClient(running.url, token, retry=RetryPolicy.never()) as alice:
                channel = await alice.create_channel("group", [])
                with pytest.raises(RateLimited) as limited:
                    await asyncio.gather(*(alice.send(channel.id, f"m{n}") for n in range(10)))
    assert limited.value.retry_after is not None and limited.value.retry_after >= 1


class Attempt(msgspec.Struct):
    sent_at: float
    answered_at: float
    status: int
    retry_after: float | None


class Timeline(httpx.AsyncBaseTransport):
    """The real network, noting each attempt at sending a message: when, and how it was answered."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.attempts: dict[str, list[Attempt]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent_at = time.monotonic()
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path.endswith("/messages"):
            message_id = msgspec.json.decode(request.content)["id"]
            retry_after = response.headers.get("retry-after")
            self.attempts.setdefault(message_id, []).append(
                Attempt(
                    sent_at,
                    time.monotonic(),
                    response.status_code,
                    None if retry_after is None else float(retry_after),
                )
            )
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_rate_limited_sends_are_sent_again_after_retry_after(settings: Settings) -> None:
    # TESTING.md: 2 per second, so that a loaded machine cannot spread the burst over windows.
    tight = settings.with_overrides(limits=Limits(user_messages_per_second=2))
    timeline = Timeline()
    async with start_server(tight) as running:
        ws = await create_workspace(running.services.db, "limited")
        async with ServerClient(running.url, ws.api_secret) as backend:
            await backend.upsert_user("alice")
            token = (await backend.create_token("alice")).token
            patient = RetryPolicy(max_retries=10)
            async with ChatClient(running.url, token, transport=timeline, retry=patient) as alice:
                channel = await alice.create_channel("group", [])
                sent = await asyncio.gather(*(alice.send(channel.id, f"m{n}") for n in range(6)))
                history = await alice.list_messages(channel.id)
    assert sorted(m.text for m in history.messages) == [f"m{n}" for n in range(6)]
    assert {m.id for m in sent} == {m.id for m in history.messages}
    limited = [a for attempts in timeline.attempts.values() for a in attempts if a.status == 429]
    assert len(limited) >= 2, "the burst was not rate limited: the test proves nothing"
    for attempts in timeline.attempts.values():
        assert attempts[-1].status == 201
        for before, after in itertools.pairwise(attempts):
            assert before.status == 429 and before.retry_after is not None
            # Never earlier than the server asked (later is fine: the machine may be busy).
            assert after.sent_at - before.answered_at >= before.retry_after - 0.01


class LossyNetwork(httpx.AsyncBaseTransport):
    """The real network, except that the first answer to each distinct request is lost after the
    server has acted on it, as when a connection drops at the worst moment."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.attempts: list[tuple[str, str]] = []
        self._answered: set[tuple[str, str, bytes]] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts.append((request.method, request.url.path))
        response = await self.inner.handle_async_request(request)
        key = (request.method, str(request.url), request.content)
        if key in self._answered:
            return response
        self._answered.add(key)
        await response.aclose()
        raise httpx.ReadError("connection reset before the answer arrived", request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_lost_answers_are_sent_again_only_for_idempotent_requests(
    backend: ServerClient,
) -> None:
    network = LossyNetwork()
    token = (await backend.create_token("alice")).token
    quick = RetryPolicy(first_backoff=0.05)
    async with (
        backend,
        await _chat(backend, "alice") as steady,
        ChatClient(backend.base_url, token, transport=network, retry=quick) as alice,
    ):
        channel = await steady.create_channel("group", ["bob"])
        assert (await alice.me()).user.id == "alice"
        message_id = str(uuid.uuid4())
        sent = await alice.send(channel.id, "once", id=message_id)
        with pytest.raises(TransportError):
            await alice.edit_message(message_id, "edited")
        history = await steady.list_messages(channel.id)
    messages = f"/v1/channels/{channel.id}/messages"
    assert network.attempts == [
        ("GET", "/v1/me"),
        ("GET", "/v1/me"),
        ("POST", messages),
        ("POST", messages),
        ("PATCH", f"/v1/messages/{message_id}"),
    ]
    # The send reached the server twice and stored one message; the edit was applied once.
    assert sent.id == message_id
    assert [(m.id, m.text) for m in history.messages] == [(message_id, "edited")]


async def test_replies_page_forward_with_after(backend: ServerClient) -> None:
    async with backend, await _chat(backend, "alice") as alice:
        channel = await alice.create_channel("group", [])
        parent = await alice.send(channel.id, "thread")
        replies = [
            (await alice.send(channel.id, f"r{n}", parent_id=parent.id)).id for n in range(5)
        ]
        first = await alice.replies(parent.id, limit=2, after=replies[0])
        assert [m.id for m in first.messages] == replies[1:3] and first.has_more
        last = await alice.replies(parent.id, limit=2, after=replies[2])
        assert [m.id for m in last.messages] == replies[3:5] and not last.has_more
        back = await alice.replies(parent.id, limit=2, before=replies[2])
        assert [m.id for m in back.messages] == replies[0:2] and not back.has_more


@pytest.fixture(params=["local folder", "S3"])
async def attachment_server(
    request: pytest.FixtureRequest, settings: Settings, s3_service: S3Service
) -> AsyncIterator[RunningServer]:
    """A server keeping attachments in each of the two stores (dev mode's, and production's)."""
    if request.param == "S3":
        settings = s3_settings(settings, s3_service, BUCKET)
    async with start_server(settings) as running:
        yield running


async def test_upload_puts_the_bytes_where_the_server_signed(
    attachment_server: RunningServer, tmp_path: Path
) -> None:
    ws = await create_workspace(attachment_server.services.db, "uploads")
    async with ServerClient(attachment_server.url, ws.api_secret) as backend:
        for user_id in ("alice", "bob"):
            await backend.upsert_user(user_id)
        async with await _chat(backend, "alice") as alice, await _chat(backend, "bob") as bob:
            channel = await alice.create_channel("group", ["bob"])
            # Larger than the 1 MiB limit of API bodies: the bytes go to the store, not the API.
            body = os.urandom(1024 * 1024 + 3)
            clip = await alice.upload(channel.id, body, filename="clip.mp4")
            notes = tmp_path / "notes.txt"
            notes.write_text("from a file")
            text = await alice.upload(channel.id, notes)
            sent = await alice.send(
                channel.id, "files", attachment_ids=[clip.attachment_id, text.attachment_id]
            )
            assert [(a.filename, a.content_type, a.size) for a in sent.attachments] == [
                ("clip.mp4", "video/mp4", len(body)),
                ("notes.txt", "text/plain", len("from a file")),
            ]
            async with httpx.AsyncClient(timeout=10) as plain:
                for upload, expected in ((clip, body), (text, b"from a file")):
                    download = await bob.get_attachment(upload.attachment_id)
                    assert (await plain.get(download.url)).content == expected
            with pytest.raises(ValueError, match="filename"):
                await alice.upload(channel.id, b"no name")
