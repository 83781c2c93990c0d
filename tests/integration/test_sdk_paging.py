"""The SDK's `async for` iterators walk every page of a list endpoint, against a real server:
each list is longer than a page, and what they yield equals one page big enough for all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest

from cariosan.config import Settings
from cariosan.domain.workspaces import NewWorkspace
from cariosan_client import AnyEvent, ChannelCreated, ChatClient, MessageNew, ServerClient
from tests.support.server import RunningServer, start_server

T = TypeVar("T")


@pytest.fixture
async def own_server(settings: Settings) -> AsyncIterator[RunningServer]:
    # Webhooks to a loopback port nobody listens on: deliveries stay in the list, pending.
    async with start_server(settings.with_overrides(webhook_allow_private=True)) as running:
        yield running


@pytest.fixture
def server(shared_or_own_server: RunningServer) -> RunningServer:
    """The server this process's tests share (each works in a workspace of its own), or one of
    the test's own for those marked `own_server`."""
    return shared_or_own_server


async def collect(items: AsyncIterator[T]) -> list[T]:
    return [item async for item in items]


@pytest.fixture
async def backend(server: RunningServer, workspace: NewWorkspace) -> AsyncIterator[ServerClient]:
    async with ServerClient(server.url, workspace.api_secret) as client:
        for user_id in ("alice", "bob"):
            await client.upsert_user(user_id)
        yield client


@pytest.fixture
async def alice(backend: ServerClient) -> AsyncIterator[ChatClient]:
    token = (await backend.create_token("alice")).token
    async with ChatClient(backend.base_url, token) as client:
        yield client


async def test_channels_follow_the_cursor(alice: ChatClient) -> None:
    for n in range(5):
        channel = await alice.create_channel("group", ["bob"], id=f"c{n}")
        await alice.send(channel.id, "activity")
    walked = await collect(alice.iter_channels(page_size=2))
    everything = (await alice.list_channels(limit=100)).channels
    assert [c.id for c in walked] == [c.id for c in everything]
    assert sorted(c.id for c in walked) == [f"c{n}" for n in range(5)]


async def test_messages_and_replies_walk_back_and_forward(alice: ChatClient) -> None:
    channel = await alice.create_channel("group", ["bob"])
    sent = [(await alice.send(channel.id, f"m{n}")).id for n in range(7)]
    replies = [(await alice.send(channel.id, f"r{n}", parent_id=sent[0])).id for n in range(5)]

    back = await collect(alice.iter_messages(channel.id, page_size=3))
    assert [m.id for m in back] == sent[::-1], "newest first, every page, no reply"
    forward = await collect(alice.iter_messages(channel.id, after=sent[1], page_size=3))
    assert [m.id for m in forward] == sent[2:]
    older = await collect(alice.iter_messages(channel.id, before=sent[4], page_size=2))
    assert [m.id for m in older] == sent[3::-1]

    assert [m.id for m in await collect(alice.iter_replies(sent[0], page_size=2))] == replies[::-1]
    thread = await collect(alice.iter_replies(sent[0], after=replies[0], page_size=2))
    assert [m.id for m in thread] == replies[1:]
    with pytest.raises(ValueError, match="not both"):
        await collect(alice.iter_messages(channel.id, before=sent[1], after=sent[0]))


async def until(check: Any) -> Any:
    """Events and deliveries appear once the server's sequencer has numbered them: poll."""
    for _ in range(150):
        if result := await check():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_events_are_walked_until_caught_up(alice: ChatClient) -> None:
    channel = await alice.create_channel("group", ["bob"])
    for n in range(6):
        await alice.send(channel.id, f"e{n}")

    async def all_numbered() -> list[AnyEvent] | None:
        page = await alice.events(limit=100)
        return page.events if len(page.events) == 7 else None

    everything = await until(all_numbered)
    walked = await collect(alice.iter_events(page_size=2))
    assert [e.seq for e in walked] == [e.seq for e in everything]
    assert [type(e) for e in walked] == [ChannelCreated] + [MessageNew] * 6
    later = await collect(alice.iter_events(everything[2].seq, page_size=2))
    assert [e.seq for e in later] == [e.seq for e in everything[3:]]


@pytest.mark.own_server
async def test_webhook_deliveries_follow_the_cursor(
    backend: ServerClient, alice: ChatClient
) -> None:
    hook = await backend.create_webhook("http://127.0.0.1:9/hook", ["message.new"])
    channel = await alice.create_channel("group", ["bob"])
    for n in range(5):
        await alice.send(channel.id, f"d{n}")

    async def all_written() -> list[str] | None:
        page = await backend.list_deliveries(hook.id, limit=100)
        return [d.id for d in page.deliveries] if len(page.deliveries) == 5 else None

    everything = await until(all_written)
    walked = await collect(backend.iter_deliveries(hook.id, page_size=2))
    assert [d.id for d in walked] == everything
    assert {d.event_type for d in walked} == {"message.new"}
