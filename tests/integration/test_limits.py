"""What one user may send is bounded: `data` size, WebSocket frame size, open sockets per user,
and the time a request may take to arrive. Each test sends exactly the input of the attack."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from cariosan.config import Limits, Settings
from cariosan.domain.workspaces import NewWorkspace, create_workspace
from tests.support.chat import bearer, make_user
from tests.support.live import LiveClient, live, ws_url
from tests.support.server import RunningServer, start_server

SMALL = Limits(max_sockets_per_user=3, request_read_seconds=1.0, http_keepalive_seconds=3)


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """The tests on default limits work in a workspace of their own: one server serves them all.
    Those on SMALL limits have a server (and database) of their own, `small_server`."""
    return shared_server


@pytest.fixture
async def small_server(settings: Settings) -> AsyncIterator[RunningServer]:
    async with start_server(settings.with_overrides(limits=SMALL)) as running:
        yield running


async def test_data_over_5_kib_is_refused_everywhere(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    limit = server.services.settings.limits.max_data_bytes
    assert limit == 5 * 1024
    big = {"blob": "x" * limit}  # the key and quotes make it a little over the limit
    fits = {"blob": "x" * (limit - 20)}
    token = await make_user(server, workspace, "alice")
    async with server.client(headers=bearer(workspace.api_secret)) as backend:
        refused = await backend.put("/v1/users/alice", json={"data": big})
        assert refused.status_code == 422, refused.text
        assert f"at most {limit} bytes" in refused.json()["error"]["message"]
        assert (await backend.put("/v1/users/alice", json={"data": fits})).status_code == 200
    async with server.client(headers=bearer(token)) as http:
        body = {"type": "group", "members": [], "data": big}
        refused = await http.post("/v1/channels", json=body)
        assert refused.status_code == 422, refused.text
        created = await http.post("/v1/channels", json={"id": "c", "type": "group", "members": []})
        assert created.status_code == 201, created.text
        refused = await http.patch("/v1/channels/c", json={"data": big})
        assert refused.status_code == 422, refused.text
        refused = await http.post("/v1/channels/c/messages", json={"text": "hi", "data": big})
        assert refused.status_code == 422, refused.text
        sent = await http.post("/v1/channels/c/messages", json={"text": "hi", "data": fits})
        assert sent.status_code == 201, sent.text


async def test_a_frame_over_the_limit_is_refused_by_the_protocol_layer(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    token = await make_user(server, workspace, "alice")
    limit = server.services.settings.limits.ws_max_frame_bytes
    async with live(server.url, token, max_size=None) as client:
        await client.socket.send("x" * (limit + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await client.next()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    # A frame header announcing 15 MiB is refused without the payload being sent at all.
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    writer.write(
        (
            f"GET /v1/ws?token={token} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    mask = os.urandom(4)
    writer.write(bytes([0x81, 0x80 | 127]) + (15 * 2**20).to_bytes(8, "big") + mask + b"x" * 64)
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), 10)  # until the server closes
    writer.close()
    close_frames = [i for i in range(len(received) - 3) if received[i] == 0x88]
    assert any(received[i + 2 : i + 4] == (1009).to_bytes(2, "big") for i in close_frames)


async def test_one_user_cannot_open_more_sockets_than_the_limit(
    small_server: RunningServer,
) -> None:
    workspace = await create_workspace(small_server.services.db, "limits")
    token = await make_user(small_server, workspace, "alice")
    other = await make_user(small_server, workspace, "bob")
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(SMALL.max_sockets_per_user):
            await stack.enter_async_context(live(small_server.url, token))
        async with websockets.connect(ws_url(small_server.url, token)) as socket:
            refused = LiveClient(socket)
            assert await refused.close_code() == 4029
        # Other users are not affected.
        async with live(small_server.url, other):
            pass
    # Closed sockets free their places.
    async with live(small_server.url, token):
        pass


async def test_a_half_sent_request_is_dropped(small_server: RunningServer) -> None:
    host, port = small_server.url.removeprefix("http://").split(":")
    # A head that never ends, a body that never comes, and a connection that says nothing.
    heads = [
        b"GET /v1/me HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        b"POST /v1/channels HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
        b"",
    ]
    for head in heads:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(head)
        await writer.drain()
        # The server closes the connection (EOF) instead of holding it for ever.
        await asyncio.wait_for(reader.read(), 30)
        assert reader.at_eof()
        writer.close()
    # Normal requests are not affected.
    async with small_server.client() as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_a_kept_alive_connection_outlives_the_read_deadline_then_closes_when_idle(
    small_server: RunningServer,
) -> None:
    host, port = small_server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(2):
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        # Idle for longer than a request may take to arrive, shorter than keep-alive: the
        # connection is still there for the next request (the read deadline is per request).
        await asyncio.sleep(SMALL.request_read_seconds * 1.5)
    # Left idle, the server closes it once keep-alive ends.
    assert await asyncio.wait_for(reader.read(), 30) == b""
    writer.close()
