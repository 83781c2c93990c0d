"""Bans in the Python SDK (issue 14, point 2): `ban_user`, `unban_user`, `list_bans`,
`iter_bans` on the async and the blocking clients, the `Banned` error, typed `UserBanned`
events, and a live stream that ends with `Banned` on close code 4003."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from cariosan.config import Settings
from cariosan.domain.workspaces import NewWorkspace
from cariosan_client import (
    Ban,
    Banned,
    ChatClient,
    Forbidden,
    NotFound,
    ServerClient,
    UserBanned,
    UserUnbanned,
)
from cariosan_client import sync as blocking
from tests.support.server import RunningServer


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(revocation_check_seconds=3600.0)


@pytest.fixture
def server(shared_or_own_server: RunningServer) -> RunningServer:
    """The server this process's tests share (each works in a workspace of its own), or one of
    the test's own for those marked `own_server`."""
    return shared_or_own_server


@pytest.mark.own_server  # its stream must end by the ban, not by a periodic check
async def test_the_async_sdk_bans_lists_and_unbans(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    async with ServerClient(server.url, workspace.api_secret) as backend:
        for user_id in ("alice", "bob", "mia"):
            await backend.upsert_user(user_id)
        await backend.upsert_user("mod", role="admin")
        alice = backend.as_user("alice")
        channel = await alice.create_channel("group", ["bob"])
        token = (await backend.create_token("alice")).token
        async with ChatClient(server.url, token=token) as chat:
            until = datetime.now(UTC) + timedelta(hours=1)
            mod = backend.as_user("mod")
            ban = await mod.ban_user("alice", reason="sdk spam", expires_at=until)
            assert isinstance(ban, Ban)
            assert (ban.user_id, ban.channel_id, ban.created_by) == ("alice", None, "mod")
            assert ban.expires_at is not None and abs(ban.expires_at - until).total_seconds() < 1
            with pytest.raises(Banned) as refused:
                await chat.send(channel.id, "hi")
            assert refused.value.code == "BANNED" and refused.value.status == 403
            assert "sdk spam" in refused.value.message
            assert isinstance(refused.value, Forbidden)  # code catching Forbidden still works
            # A live stream of the banned user ends with Banned (4003), not an endless retry.
            with pytest.raises(Banned):
                await _drain(chat)
        # The backend itself, a channel ban, paging and the async iterator.
        await backend.ban_user("bob", channel_id=channel.id, shadow=True)
        await backend.ban_user("mia")
        page = await backend.list_bans(limit=2)
        assert [b.user_id for b in page.bans] == ["mia", "bob"] and page.next_cursor
        assert [b.user_id async for b in backend.iter_bans(page_size=1)] == ["mia", "bob", "alice"]
        in_channel = [b.user_id async for b in backend.iter_bans(channel.id)]
        assert in_channel == ["bob"]
        await backend.unban_user("bob", channel.id)
        await backend.unban_user("alice")
        with pytest.raises(NotFound):
            await backend.unban_user("alice")
        assert [b.user_id async for b in backend.iter_bans()] == ["mia"]
        # Typed events, in catch-up.
        bob_token = (await backend.create_token("bob")).token
        async with ChatClient(server.url, token=bob_token) as bob:
            await mod.ban_user("alice", channel_id=channel.id, reason="typed")
            await mod.unban_user("alice", channel_id=channel.id)
            found = [e async for e in bob.iter_events() if isinstance(e, UserBanned | UserUnbanned)]
            assert [(type(e), e.channel_id, e.ban.reason) for e in found] == [
                (UserBanned, channel.id, "typed"),
                (UserUnbanned, channel.id, "typed"),
            ]


async def _drain(chat: ChatClient) -> None:
    async with chat.connect() as events:
        async for _ in events:
            pass


def _blocking_bans(url: str, api_secret: str) -> list[str]:
    """In a plain thread, as a script would."""
    with blocking.ServerClient(url, api_secret) as backend:
        backend.upsert_user("carol")
        backend.upsert_user("dave")
        channel = backend.as_user("dave").create_channel("group", ["carol"])
        backend.ban_user("carol", reason="sync")
        token = backend.create_token("carol").token
        with blocking.ChatClient(url, token=token) as carol:
            with pytest.raises(Banned):
                carol.send(channel.id, "x")
        dave = backend.as_user("dave")
        dave.ban_user("carol", channel_id=channel.id)
        assert [b.user_id for b in dave.list_bans(channel.id).bans] == ["carol"]
        dave.unban_user("carol", channel.id)
        backend.unban_user("carol")
        return [b.user_id for b in backend.iter_bans()]


async def test_the_blocking_sdk_bans_lists_and_unbans(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    left = await asyncio.to_thread(_blocking_bans, server.url, workspace.api_secret)
    assert left == []
