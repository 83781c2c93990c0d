"""Property-based fuzzing of WebSocket frames (hypothesis): whatever a client sends, the socket
answers with an error frame or carries on, and still answers a ping; never a dead socket or a
1011. The budget is small here; `make fuzz` runs it with a large one (CARIOS_FUZZ_EXAMPLES)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cariosan.domain.workspaces import NewWorkspace
from cariosan.realtime import gateway
from tests.support.chat import bearer, make_user
from tests.support.live import LiveClient, ws_url
from tests.support.server import RunningServer

EXAMPLES = int(os.environ.get("CARIOS_FUZZ_EXAMPLES", "40"))

JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
KINDS = st.sampled_from(["ping", "resume", "typing.start", "typing.stop"]) | st.text(max_size=12)
FIELDS = st.dictionaries(
    st.sampled_from(["after_seq", "channel_id", "type", "x"]) | st.text(max_size=6),
    JSON,
    max_size=3,
)
FRAMES = st.one_of(
    st.builds(lambda kind, rest: json.dumps({"type": kind, **rest}), KINDS, FIELDS),
    st.builds(lambda n: json.dumps({"type": "resume", "after_seq": n}), st.integers()),
    st.builds(lambda c: json.dumps({"type": "typing.start", "channel_id": c}), st.text()),
    JSON.map(json.dumps),
    st.text(max_size=300),
    st.binary(max_size=300),
)


@pytest.fixture
async def token(server: RunningServer, workspace: NewWorkspace) -> str:
    alice = await make_user(server, workspace, "alice")
    await make_user(server, workspace, "bob")
    async with server.client(headers=bearer(alice)) as http:
        made = await http.post(
            "/v1/channels", json={"id": "c", "type": "group", "members": ["bob"]}
        )
        assert made.status_code == 201
    return alice


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frame=FRAMES)
async def test_any_frame_leaves_a_socket_that_answers(
    server: RunningServer, token: str, frame: str | bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Many frames in a row: the per-socket frame rate limit is not what is fuzzed here.
    monkeypatch.setattr(gateway, "FRAME_BURST", 10_000)
    async with websockets.connect(ws_url(server.url, token)) as socket:
        client = LiveClient(socket)
        assert (await client.next())["type"] == "connection.ready"
        await socket.send(frame)
        await client.send({"type": "ping"})
        while True:
            reply = await client.next()
            if reply["type"] == "pong":
                break
            assert (
                reply["type"] == "error"
                or "seq" in reply
                or reply["type"].startswith(("typing.", "presence."))
            ), reply
            if reply["type"] == "error":
                assert reply["code"] in ("VALIDATION_FAILED", "NOT_FOUND", "FORBIDDEN"), reply
