"""The SDK's `ChatClient.connect()`: reconnects and resumes by itself, refreshes its token."""

from __future__ import annotations

import asyncio

import pytest

from cariosan.config import Limits, Settings
from cariosan.domain.workspaces import NewWorkspace
from cariosan.realtime.connection import TOO_SLOW
from cariosan_client import (
    AnyEvent,
    ChannelCreated,
    ChannelDeleted,
    ChannelUpdated,
    ChatClient,
    Event,
    LiveEvents,
    MemberAdded,
    MemberRemoved,
    MessageDeleted,
    MessageNew,
    MessageUpdated,
    PresenceChanged,
    ReactionDeleted,
    ReactionNew,
    ReadUpdated,
    TypingStart,
    TypingStop,
    UnknownEvent,
)
from tests.support.chat import backend_client, make_user
from tests.support.server import RunningServer


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Room for bursts of messages (for the test on a server of its own)."""
    return settings.with_overrides(
        limits=Limits(user_messages_per_second=10_000, user_requests_per_minute=1_000_000)
    )


@pytest.fixture
def server(shared_or_own_server: RunningServer) -> RunningServer:
    """The server this process's tests share (each works in a workspace of its own), or one of
    the test's own for those marked `own_server`."""
    return shared_or_own_server


async def _collect(events: LiveEvents, count: int, into: list[MessageNew]) -> None:
    async for event in events:
        if isinstance(event, MessageNew):
            into.append(event)
            if len(into) == count:
                return


async def _drop(server: RunningServer, user_id: str) -> None:
    """Close the user's live connection, then wait until the SDK has reconnected."""
    hub = server.services.hub
    for _ in range(200):
        current = [c for c in hub.connections if c.user_id == user_id]
        if current:
            break
        await asyncio.sleep(0.05)
    for connection in current:
        connection.close(TOO_SLOW, "test")
    for _ in range(200):
        if any(c.user_id == user_id and c not in current for c in hub.connections):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{user_id} did not reconnect")


@pytest.mark.own_server  # a burst of 60 messages needs the room above
async def test_connect_survives_dropped_connections_without_loss_or_duplicate(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    alice_token = await make_user(server, workspace, "alice")
    bob_token = await make_user(server, workspace, "bob")
    async with (
        ChatClient(server.url, alice_token) as alice,
        ChatClient(server.url, bob_token) as bob,
    ):
        channel = await alice.create_channel("group", ["bob"])
        received: list[MessageNew] = []
        start = (await bob.events()).latest_seq  # however late the stream connects
        async with bob.connect(after_seq=start) as events:
            reading = asyncio.create_task(_collect(events, 60, received))
            for i in range(60):
                await alice.send(channel.id, f"s{i}")
                if i % 15 == 7:
                    # The server drops bob's socket ("too slow"): the SDK resumes by itself.
                    await _drop(server, "bob")
            await asyncio.wait_for(reading, 30)
            assert events.reconnects == 4
    assert [e.message.text for e in received] == [f"s{i}" for i in range(60)]
    seqs = [e.seq for e in received]
    assert seqs == sorted(set(seqs))


async def test_connect_refreshes_an_expired_token_through_the_provider(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    alice_token = await make_user(server, workspace, "alice")
    await make_user(server, workspace, "bob")
    minted: list[str] = []

    async def short_lived_token() -> str:
        async with backend_client(server, workspace) as backend:
            made = await backend.post("/v1/users/bob/token", json={"ttl_seconds": 2})
        token: str = made.json()["token"]
        minted.append(token)
        return token

    async with (
        ChatClient(server.url, alice_token) as alice,
        ChatClient(server.url, token_provider=short_lived_token) as bob,
    ):
        channel = await alice.create_channel("group", ["bob"])
        received: list[MessageNew] = []
        # From the position before the first send: the stream connects in the reading task,
        # and on a busy machine that can come after t0 (which "from now" would then skip).
        start = (await bob.events()).latest_seq
        async with bob.connect(after_seq=start) as events:
            reading = asyncio.create_task(_collect(events, 6, received))
            for i in range(6):
                await alice.send(channel.id, f"t{i}")
                await asyncio.sleep(1.0)  # outlives several tokens
            await asyncio.wait_for(reading, 30)
    assert [e.message.text for e in received] == [f"t{i}" for i in range(6)]
    assert len(minted) >= 2


async def test_every_event_type_arrives_as_its_own_class(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    alice_token = await make_user(server, workspace, "alice")
    bob_token = await make_user(server, workspace, "bob")
    await make_user(server, workspace, "carol")
    received: list[AnyEvent] = []

    async def until(kind: type[Event]) -> Event:
        for _ in range(300):
            found = [e for e in received if isinstance(e, kind)]
            if found:
                return found[-1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind.__name__} in {[e.type for e in received]}")

    async def read(events: LiveEvents) -> None:
        async for event in events:
            received.append(event)

    async with (
        ChatClient(server.url, alice_token) as alice,
        ChatClient(server.url, bob_token) as bob,
        bob.connect(after_seq=0) as events,
    ):
        reading = asyncio.create_task(read(events))
        channel = await alice.create_channel("group", ["bob"], name="Team")
        await until(ChannelCreated)  # bob is live from here on: ephemeral events reach him
        message = await alice.send(channel.id, "hello")
        await alice.edit_message(message.id, "hello, Bob")
        await bob.add_reaction(message.id, "heart")
        await bob.remove_reaction(message.id, "heart")
        await alice.add_members(channel.id, ["carol"])
        await alice.remove_member(channel.id, "carol")
        await alice.update_channel(channel.id, name="Team 2")
        await bob.mark_read(channel.id)
        await alice.typing(channel.id, "start")
        await until(TypingStart)
        await alice.typing(channel.id, "stop")
        await alice.delete_message(message.id)
        async with alice.connect() as alice_events:
            # Alice's first socket makes her present for those who share a channel with her.
            alice_reading = asyncio.create_task(anext(aiter(alice_events)))
            presence = await until(PresenceChanged)
            alice_reading.cancel()
        await alice.delete_channel(channel.id)
        await until(ChannelDeleted)
        reading.cancel()

    kinds = {type(e) for e in received}
    assert UnknownEvent not in kinds, [e for e in received if isinstance(e, UnknownEvent)]
    assert kinds >= {
        ChannelCreated,
        MessageNew,
        MessageUpdated,
        ReactionNew,
        ReactionDeleted,
        MemberAdded,
        MemberRemoved,
        ChannelUpdated,
        ReadUpdated,
        TypingStart,
        TypingStop,
        MessageDeleted,
        PresenceChanged,
        ChannelDeleted,
    }
    by_kind = {type(e): e for e in received}
    updated = by_kind[MessageUpdated]
    assert isinstance(updated, MessageUpdated) and updated.message.text == "hello, Bob"
    reaction = by_kind[ReactionNew]
    assert isinstance(reaction, ReactionNew)
    assert (reaction.reaction.user_id, reaction.reaction.type) == ("bob", "heart")
    added = by_kind[MemberAdded]
    assert isinstance(added, MemberAdded) and added.member.user_id == "carol"
    renamed = by_kind[ChannelUpdated]
    assert isinstance(renamed, ChannelUpdated) and renamed.channel.name == "Team 2"
    read_up = by_kind[ReadUpdated]
    assert isinstance(read_up, ReadUpdated) and read_up.unread_count == 0
    typing = by_kind[TypingStart]
    assert isinstance(typing, TypingStart) and typing.user_id == "alice"
    assert typing.channel_id == channel.id and typing.seq is None
    assert isinstance(presence, PresenceChanged) and presence.user_id == "alice" and presence.online
    persisted = [e.seq for e in received if e.seq is not None]
    assert persisted == sorted(set(persisted))
