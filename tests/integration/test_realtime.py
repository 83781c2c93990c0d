"""`/v1/ws` on one node: live events in order, resume without gap or duplicate, membership on
live connections, close codes, slow consumers, typing and presence."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from cariosan.config import Limits, Settings
from cariosan.domain.workspaces import NewWorkspace, create_workspace
from tests.support.chat import backend_client, make_user, user_client
from tests.support.live import StuckClient, live
from tests.support.server import RunningServer, start_server


async def _channel(
    server: RunningServer, token: str, members: list[str], type: str = "group"
) -> str:
    async with user_client(server, token) as http:
        created = await http.post("/v1/channels", json={"type": type, "members": members})
        assert created.status_code == 201, created.text
        channel_id: str = created.json()["id"]
        return channel_id


async def _send(http: httpx.AsyncClient, channel_id: str, text: str) -> dict[str, Any]:
    sent = await http.post(f"/v1/channels/{channel_id}/messages", json={"text": text})
    assert sent.status_code == 201, sent.text
    body: dict[str, Any] = sent.json()
    return body


def _texts(events: list[dict[str, Any]]) -> list[str]:
    return [e["message"]["text"] for e in events]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The default test settings, with room for bursts of messages from one user (for the
    tests on a server of their own: the others send within the default limits)."""
    return settings.with_overrides(
        limits=Limits(user_messages_per_second=10_000, user_requests_per_minute=1_000_000)
    )


@pytest.fixture
def server(shared_or_own_server: RunningServer) -> RunningServer:
    """The server this process's tests share (each works in a workspace of its own), or one of
    the test's own for those marked `own_server`."""
    return shared_or_own_server


@pytest.fixture
async def people(server: RunningServer, workspace: NewWorkspace) -> dict[str, str]:
    return {name: await make_user(server, workspace, name) for name in ("alice", "bob", "carol")}


async def test_messages_sent_over_rest_arrive_live_in_order(
    server: RunningServer, people: dict[str, str]
) -> None:
    channel = await _channel(server, people["alice"], ["bob"])
    async with live(server.url, people["bob"]) as bob:
        assert bob.ready["user_id"] == "bob"
        assert isinstance(bob.ready["latest_seq"], int)
        async with user_client(server, people["alice"]) as alice:
            started = time.monotonic()
            for i in range(10):
                await _send(alice, channel, f"m{i}")
        events = await bob.events(10, types=("message.new",))
        elapsed = time.monotonic() - started
    assert _texts(events) == [f"m{i}" for i in range(10)]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 10
    assert all(e["channel_id"] == channel for e in events)
    # Woken by the commit, not by the 1 s poll.
    assert elapsed < 3.0


async def test_resume_replays_exactly_the_missed_events_then_continues_live(
    server: RunningServer, people: dict[str, str]
) -> None:
    channel = await _channel(server, people["alice"], ["bob"])
    async with user_client(server, people["alice"]) as alice:
        async with live(server.url, people["bob"]) as bob:
            await _send(alice, channel, "before")
            [seen] = await bob.events(1, types=("message.new",))
        last = seen["seq"]
        for i in range(5):
            await _send(alice, channel, f"missed{i}")
        async with live(server.url, people["bob"], resume_from=last) as bob:
            missed = await bob.events(5)
            await _send(alice, channel, "after")
            [after] = await bob.events(1)
            assert await bob.silent(0.5) == []
    assert _texts(missed) == [f"missed{i}" for i in range(5)]
    assert after["message"]["text"] == "after"
    seqs = [e["seq"] for e in [*missed, after]]
    assert seqs == sorted(seqs) and seqs[0] > last and len(set(seqs)) == 6


@pytest.mark.own_server  # a burst of 60 messages needs the room above
async def test_resume_while_messages_keep_flowing_has_no_gap_and_no_duplicate(
    server: RunningServer, people: dict[str, str]
) -> None:
    channel = await _channel(server, people["alice"], ["bob"])
    total = 60
    async with user_client(server, people["alice"]) as alice:

        async def keep_sending() -> None:
            for i in range(total):
                await _send(alice, channel, f"n{i}")

        sending = asyncio.create_task(keep_sending())
        got: list[dict[str, Any]] = []
        last = 0
        while not sending.done() or len(got) < total:
            # Read a few events, drop the connection, resume from the last seq seen.
            async with live(server.url, people["bob"], resume_from=last) as bob:
                for _ in range(7):
                    try:
                        frame = await bob.next(timeout=2)
                    except TimeoutError:
                        break
                    if "seq" in frame:
                        got.append(frame)
                        last = frame["seq"]
            if sending.done() and len([g for g in got if g["type"] == "message.new"]) >= total:
                break
        await sending
    texts = [e["message"]["text"] for e in got if e["type"] == "message.new"]
    assert texts == [f"n{i}" for i in range(total)]


async def test_a_non_member_receives_nothing(server: RunningServer, people: dict[str, str]) -> None:
    channel = await _channel(server, people["alice"], ["bob"])
    async with live(server.url, people["carol"]) as carol, live(server.url, people["bob"]) as bob:
        async with user_client(server, people["alice"]) as alice:
            await _send(alice, channel, "private")
        await bob.events(1, types=("message.new",))
        assert await carol.silent(1.5) == []


async def test_membership_changes_take_effect_on_live_connections(
    server: RunningServer, people: dict[str, str]
) -> None:
    channel = await _channel(server, people["alice"], ["bob"])
    async with (
        live(server.url, people["bob"]) as bob,
        live(server.url, people["carol"]) as carol,
        user_client(server, people["alice"]) as alice,
    ):
        added = await alice.post(f"/v1/channels/{channel}/members", json={"user_ids": ["carol"]})
        assert added.status_code == 200, added.text
        [joined] = await carol.events(1)
        assert joined["type"] == "member.added" and joined["channel_id"] == channel
        await _send(alice, channel, "hello carol")
        [message] = await carol.events(1)
        assert message["message"]["text"] == "hello carol"

        removed = await alice.delete(f"/v1/channels/{channel}/members/bob")
        assert removed.status_code == 204, removed.text
        await _send(alice, channel, "bob is gone")
        bob_events = await bob.events(3)
        assert [e["type"] for e in bob_events] == ["member.added", "message.new", "member.removed"]
        assert bob_events[2]["member"]["user_id"] == "bob"
        # Removed: the next message of the channel does not reach bob, it reaches carol.
        assert (await carol.events(2))[1]["message"]["text"] == "bob is gone"
        assert await bob.silent(1.0) == []


async def test_bad_and_expired_tokens_close_with_4001(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    import websockets

    from tests.support.live import ws_url

    async with websockets.connect(ws_url(server.url, "not-a-token")) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001

    await make_user(server, workspace, "dora")
    async with backend_client(server, workspace) as backend:
        minted = await backend.post("/v1/users/dora/token", json={"ttl_seconds": 2})
        short = minted.json()["token"]
    async with live(server.url, short) as dora:
        assert await dora.close_code() == 4001


async def test_a_flooding_client_is_closed_with_4008(
    server: RunningServer, people: dict[str, str]
) -> None:
    async with live(server.url, people["bob"]) as bob:
        for _ in range(200):
            await bob.send({"type": "ping"})
        assert await bob.close_code() == 4008


@pytest.mark.own_server  # resizes the hub's queue and reads a process-wide metric total
async def test_a_slow_consumer_is_closed_without_delaying_the_others(
    server: RunningServer, people: dict[str, str]
) -> None:
    server.services.hub.send_queue_size = 100
    server.services.hub.page_size = 20
    channel = await _channel(server, people["alice"], ["bob", "carol"])
    big = "x" * 9000
    # ~11 MB: more than the server's socket send buffer (up to 4 MB here) and the queue.
    count = 1200
    senders = 8
    carol = await StuckClient.open(server.url, people["carol"])
    async with (
        live(server.url, people["bob"], max_size=None) as bob,
        user_client(server, people["alice"]) as alice,
    ):
        reading = asyncio.create_task(bob.events(count, timeout=120, types=("message.new",)))

        async def carol_closed() -> int | None:
            # Once the server dropped her, carol reads again: what is left, then the close frame
            # (the server waits a few seconds for it to get through).
            dropped = "cariosan_ws_slow_consumers_dropped_total 1.0"
            while dropped not in server.services.metrics.render().decode():
                await asyncio.sleep(0.05)
            return await carol.close_code()

        closing = asyncio.create_task(carol_closed())

        async def sender(n: int) -> None:
            # Each sender's messages go one after the other; the senders run side by side.
            for i in range(n, count, senders):
                await _send(alice, channel, f"{i}:{big}")

        await asyncio.gather(*(sender(n) for n in range(senders)))
        # Bob gets every message, once, in seq order, while carol never reads a byte.
        got = await reading
        seqs = [e["seq"] for e in got]
        assert seqs == sorted(set(seqs))
        sent = [int(e["message"]["text"].split(":")[0]) for e in got]
        assert sorted(sent) == list(range(count))
        for n in range(senders):
            assert [i for i in sent if i % senders == n] == list(range(n, count, senders))
        # The stuck reader was dropped with "too slow, resume" once its queue overflowed.
        assert await asyncio.wait_for(closing, 60) == 4009


async def test_typing_is_relayed_and_stops_by_itself(
    server: RunningServer, people: dict[str, str]
) -> None:
    channel = await _channel(server, people["alice"], ["bob"])
    async with live(server.url, people["bob"]) as bob, live(server.url, people["alice"]) as alice:
        await alice.send({"type": "typing.start", "channel_id": channel})
        start = await _next_of(bob, "typing.start")
        assert start == {"type": "typing.start", "channel_id": channel, "user_id": "alice"}
        began = time.monotonic()
        stop = await _next_of(bob, "typing.stop", timeout=10)
        assert stop["user_id"] == "alice" and 3.5 < time.monotonic() - began < 9
        # The REST route reaches the same relay.
        async with user_client(server, people["alice"]) as http:
            sent = await http.post(f"/v1/channels/{channel}/typing", json={"state": "start"})
            assert sent.status_code == 204
            relayed = await _next_of(bob, "typing.start")
            assert relayed["user_id"] == "alice"
            stopped = await http.post(f"/v1/channels/{channel}/typing", json={"state": "stop"})
            assert stopped.status_code == 204
            assert (await _next_of(bob, "typing.stop"))["user_id"] == "alice"


async def test_presence_changes_when_a_user_comes_and_goes(
    server: RunningServer, people: dict[str, str]
) -> None:
    await _channel(server, people["alice"], ["bob"])
    async with live(server.url, people["bob"]) as bob:
        async with live(server.url, people["alice"]):
            online = await _next_of(bob, "presence.changed")
            assert online["user_id"] == "alice" and online["online"] is True
        offline = await _next_of(bob, "presence.changed")
        assert offline["user_id"] == "alice" and offline["online"] is False
    # `last_active_at` is persisted (in batches, every couple of seconds).
    async with user_client(server, people["alice"]) as http:
        for _ in range(50):
            me = await http.get("/v1/me")
            if me.json()["user"].get("last_active_at"):
                break
            await asyncio.sleep(0.2)
    assert me.json()["user"].get("last_active_at")


async def _next_of(client: Any, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        frame: dict[str, Any] = await client.next(timeout=max(0.01, deadline - time.monotonic()))
        if frame["type"] == kind:
            return frame


@pytest.fixture
async def redis_server(
    settings: Settings, redis_url: str, redis_prefix: str
) -> AsyncIterator[RunningServer]:
    async with start_server(
        settings.with_overrides(redis_url=redis_url, redis_prefix=redis_prefix)
    ) as running:
        yield running


async def test_with_redis_events_typing_and_presence_flow(redis_server: RunningServer) -> None:
    workspace = await create_workspace(redis_server.services.db, "redis")
    alice_token = await make_user(redis_server, workspace, "alice")
    bob_token = await make_user(redis_server, workspace, "bob")
    channel = await _channel(redis_server, alice_token, ["bob"])
    async with live(redis_server.url, bob_token) as bob:
        async with live(redis_server.url, alice_token) as alice_live:
            assert (await _next_of(bob, "presence.changed"))["online"] is True
            await alice_live.send({"type": "typing.start", "channel_id": channel})
            await _next_of(bob, "typing.start")
            async with user_client(redis_server, alice_token) as alice:
                for i in range(5):
                    await _send(alice, channel, f"r{i}")
            assert _texts(await bob.events(5, types=("message.new",))) == [
                f"r{i}" for i in range(5)
            ]
        assert (await _next_of(bob, "presence.changed"))["online"] is False


async def test_concurrent_writers_committing_out_of_order_reach_a_live_client_exactly_once(
    server: RunningServer, workspace: NewWorkspace, people: dict[str, str]
) -> None:
    import random

    from cariosan.db.events import append_event

    channel = await _channel(server, people["alice"], ["bob"])
    rng = random.Random(11)
    writers, per_writer = 8, 30

    async def writer(n: int) -> None:
        for i in range(per_writer):
            # Transactions stay open for a random while: they commit out of seq order.
            async with server.services.db.transaction() as conn:
                await append_event(
                    conn, workspace.id, "test.event", {"w": n, "i": i}, channel_id=channel
                )
                await asyncio.sleep(rng.random() * 0.01)

    async with live(server.url, people["bob"]) as bob:
        reading = asyncio.create_task(
            bob.events(writers * per_writer, timeout=60, types=("test.event",))
        )
        await asyncio.gather(*(writer(n) for n in range(writers)))
        got = await reading
        assert await bob.silent(1.0) == []
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(set(seqs))
    assert sorted((e["w"], e["i"]) for e in got) == [
        (n, i) for n in range(writers) for i in range(per_writer)
    ]


@pytest.mark.parametrize("compression", [False, True])
async def test_deflate_is_agreed_only_when_the_server_allows_it(
    settings: Settings, compression: bool
) -> None:
    """Browsers ask for permessage-deflate. By default the server declines it, and every socket
    gets the frames the gateway builds once per event; with CARIOS_WS_COMPRESSION each socket
    compresses its own. Either way the client gets the same events, pongs and typing."""
    async with start_server(settings.with_overrides(ws_compression=compression)) as running:
        workspace = await create_workspace(running.services.db, "deflate")
        tokens = {name: await make_user(running, workspace, name) for name in ("alice", "bob")}
        channel = await _channel(running, tokens["alice"], ["bob"])
        big = "y" * 3000  # a frame with a 16-bit length, and worth compressing
        async with (
            live(running.url, tokens["bob"], compression="deflate") as bob,
            live(running.url, tokens["alice"], compression="deflate") as alice,
            user_client(running, tokens["alice"]) as http,
        ):
            assert bob.socket.response is not None
            agreed = bob.socket.response.headers.get("Sec-WebSocket-Extensions", "")
            assert ("permessage-deflate" in agreed) is compression
            # Shared frames (realtime/wire.py) exactly for the sockets without compression.
            writers = {c.user_id: c.writer is not None for c in running.services.hub.connections}
            assert writers == {"alice": not compression, "bob": not compression}
            for i in range(5):
                await _send(http, channel, f"{i} {big}")
            events = await bob.events(5, types=("message.new",))
            await alice.send({"type": "typing.start", "channel_id": channel})
            typing = await _next_of(bob, "typing.start")
            await bob.send({"type": "ping"})
            pong = await _next_of(bob, "pong")
    assert _texts(events) == [f"{i} {big}" for i in range(5)]
    assert typing["user_id"] == "alice"
    assert pong == {"type": "pong"}


async def test_an_unexpected_failure_before_ready_closes_with_1011_and_is_logged(
    server: RunningServer,
    people: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import websockets

    from cariosan.domain import live as live_rules
    from tests.support.live import ws_url

    async def broken(*_: Any) -> Any:
        raise AttributeError("a bug")

    monkeypatch.setattr(live_rules, "authenticate_live", broken)
    async with websockets.connect(ws_url(server.url, people["bob"])) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)
    # Not Litestar's bare 4500: the client's usual "reconnect and resume".
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    assert "ws_failed" in capsys.readouterr().out
