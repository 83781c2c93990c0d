"""Pins, slow mode and freeze through both Python SDKs (async and blocking), as an app and a
moderation tool would use them."""

from __future__ import annotations

import asyncio

import pytest

from cariosan.domain.workspaces import NewWorkspace
from cariosan_client import (
    ChatClient,
    Forbidden,
    MessagePinned,
    MessageUnpinned,
    RateLimited,
    RetryPolicy,
    ServerClient,
    decode_event,
)
from cariosan_client import sync as blocking
from tests.support.server import RunningServer


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here works in a workspace of its own: one server serves them all."""
    return shared_server


async def test_async_sdk_pins_and_moderates_a_channel(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    async with ServerClient(server.url, workspace.api_secret) as backend:
        for user_id in ("alice", "bob"):
            await backend.upsert_user(user_id)
        alice = ChatClient(server.url, token=(await backend.create_token("alice")).token)
        # Never retried: the test sees the 429 itself.
        bob = ChatClient(
            server.url,
            token=(await backend.create_token("bob")).token,
            retry=RetryPolicy.never(),
        )
        async with alice, bob:
            channel = await alice.create_channel("group", ["bob"])
            first = await bob.send(channel.id, "first")
            second = await bob.send(channel.id, "second")
            assert first.pinned_at is None and first.pinned_by is None

            pinned = await alice.pin_message(first.id)
            assert pinned.pinned_by == "alice" and pinned.pinned_at is not None
            await alice.pin_message(second.id)
            assert [m.id for m in await bob.list_pins(channel.id)] == [second.id, first.id]
            with pytest.raises(Forbidden):
                await bob.pin_message(first.id)
            unpinned = await alice.unpin_message(second.id)
            assert unpinned.pinned_at is None
            assert [m.id for m in await bob.list_pins(channel.id)] == [first.id]

            page = await bob.events(after_seq=0)
            typed = [e for e in page.events if isinstance(e, MessagePinned | MessageUnpinned)]
            assert [type(e) for e in typed] == [MessagePinned, MessagePinned, MessageUnpinned]
            assert typed[0].message.id == first.id and typed[0].message.pinned_by == "alice"

            slow = await alice.update_channel(channel.id, cooldown_seconds=1)
            assert slow.cooldown_seconds == 1 and slow.frozen is False
            await bob.send(channel.id, "in slow mode")
            with pytest.raises(RateLimited) as limited:
                await bob.send(channel.id, "too soon")
            assert limited.value.retry_after == 1
            assert "next message is allowed" in str(limited.value)

            frozen = await alice.update_channel(channel.id, frozen=True, cooldown_seconds=0)
            assert frozen.frozen is True and frozen.cooldown_seconds == 0
            with pytest.raises(Forbidden):
                await bob.send(channel.id, "frozen out")
            await alice.send(channel.id, "the owner still speaks")
            thawed = await alice.update_channel(channel.id, frozen=False)
            assert not thawed.frozen
            await bob.send(channel.id, "thawed")
            listed = await bob.get_channel(channel.id)
            assert listed.cooldown_seconds == 0 and listed.frozen is False


def test_events_decode_as_typed_pin_events() -> None:
    raw = (
        b'{"type":"message.unpinned","seq":7,"channel_id":"c","created_at":"2026-01-01T00:00:00Z",'
        b'"message":{"id":"m","channel_id":"c","user_id":"u","created_at":"2026-01-01T00:00:00Z",'
        b'"pinned_at":null,"pinned_by":null}}'
    )
    event = decode_event(raw)
    assert isinstance(event, MessageUnpinned) and event.message.pinned_at is None


def _moderate(url: str, api_secret: str) -> list[str]:
    """In a plain thread, blocking calls only: a moderation tool pins and freezes as a user."""
    with blocking.ServerClient(url, api_secret) as backend:
        for user_id in ("mia", "ned"):
            backend.upsert_user(user_id)
        mia = backend.as_user("mia")
        channel = mia.create_channel("group", ["ned"])
        message = mia.send(channel.id, "rules: be kind")
        assert mia.pin_message(message.id).pinned_by == "mia"
        pinned = [m.text for m in mia.list_pins(channel.id)]
        changed = mia.update_channel(channel.id, cooldown_seconds=30, frozen=True)
        assert changed.cooldown_seconds == 30 and changed.frozen
        # Acting as a user, the backend keeps its own rights: ned pins with his own token.
        with blocking.ChatClient(url, token=backend.create_token("ned").token) as ned:
            with pytest.raises(Forbidden):
                ned.pin_message(message.id)
            assert mia.unpin_message(message.id).pinned_at is None
            assert ned.list_pins(channel.id) == []
        return pinned


async def test_blocking_sdk_pins_and_moderates(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    pinned = await asyncio.to_thread(_moderate, server.url, workspace.api_secret)
    assert pinned == ["rules: be kind"]
