"""The SDK's `ChatClient.connect()`: reconnects and resumes by itself, refreshes its token."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cariosan.config import Limits, Settings
from cariosan.domain.workspaces import NewWorkspace
from cariosan.realtime.connection import TOO_SLOW
from cariosan_client import ChatClient
from tests.support.chat import backend_client, make_user
from tests.support.server import RunningServer


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(
        limits=Limits(user_messages_per_second=10_000, user_requests_per_minute=1_000_000)
    )


async def _collect(events: Any, count: int, into: list[dict[str, Any]]) -> None:
    async for event in events:
        if event["type"] == "message.new":
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
        received: list[dict[str, Any]] = []
        async with bob.connect() as events:
            reading = asyncio.create_task(_collect(events, 60, received))
            await asyncio.sleep(0.5)
            for i in range(60):
                await alice.send(channel.id, f"s{i}")
                if i % 15 == 7:
                    # The server drops bob's socket ("too slow"): the SDK resumes by itself.
                    await _drop(server, "bob")
            await asyncio.wait_for(reading, 30)
            assert events.reconnects == 4
    assert [e["message"]["text"] for e in received] == [f"s{i}" for i in range(60)]
    seqs = [e["seq"] for e in received]
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
        received: list[dict[str, Any]] = []
        async with bob.connect() as events:
            reading = asyncio.create_task(_collect(events, 6, received))
            for i in range(6):
                await alice.send(channel.id, f"t{i}")
                await asyncio.sleep(1.0)  # outlives several tokens
            await asyncio.wait_for(reading, 30)
    assert [e["message"]["text"] for e in received] == [f"t{i}" for i in range(6)]
    assert len(minted) >= 2
