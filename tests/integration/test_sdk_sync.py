"""The blocking facade (`cariosan_client.sync`) against a real server, called from a plain thread
as a Flask view or a script would: the same API, errors, paging and live events as the async one,
and nothing left running once closed."""

from __future__ import annotations

import asyncio
import inspect
import threading

import pytest

from cariosan.domain.workspaces import NewWorkspace
from cariosan_client import ChannelCreated, MessageNew, NotFound
from cariosan_client import ChatClient as AsyncChatClient
from cariosan_client import ServerClient as AsyncServerClient
from cariosan_client.sync import ChatClient, ServerClient
from tests.support.server import RunningServer


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here works in a workspace of its own: one server serves them all."""
    return shared_server


def _loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cariosan-client"]


def conversation(url: str, api_secret: str) -> list[str]:
    """Runs in a worker thread: no event loop of its own, blocking calls only."""
    with ServerClient(url, api_secret) as server:
        for user_id in ("alice", "bob"):
            server.upsert_user(user_id, name=user_id.title())
        minted: list[str] = []

        def bob_token() -> str:
            token = server.create_token("bob").token
            minted.append(token)
            return token

        alice = server.as_user("alice")
        channel = alice.create_channel("group", ["bob"], name="Sync")
        sent = [alice.send(channel.id, f"m{n}").id for n in range(5)]
        with ChatClient(server.base_url, token_provider=bob_token) as bob:
            assert [m.id for m in bob.iter_messages(channel.id, page_size=2)] == sent[::-1]
            # Left after one item: the rest is never fetched, and the iterator closes cleanly.
            assert next(bob.iter_messages(channel.id, page_size=2)).id == sent[-1]
            assert [c.id for c in bob.iter_channels(page_size=1)] == [channel.id]
            upload = bob.upload(channel.id, b"sync bytes", filename="s.txt")
            with_file = bob.send(channel.id, "file", attachment_ids=[upload.attachment_id])
            assert with_file.attachments[0].size == len(b"sync bytes")
            with pytest.raises(NotFound) as missing:
                bob.get_channel("no-such-channel")
            assert missing.value.code == "NOT_FOUND" and missing.value.request_id
            texts: list[str] = []
            with bob.connect(after_seq=0) as live:
                assert isinstance(next(live), ChannelCreated)
                for event in live:
                    if isinstance(event, MessageNew):
                        texts.append(event.message.text)
                    if len(texts) == 6:
                        break
            assert len(minted) == 1, "the sync provider was asked for the first token"
        with pytest.raises(RuntimeError, match="closed"):
            bob.me()
        deliveries = list(server.iter_deliveries(server.create_webhook("https://x.test", ["*"]).id))
        assert deliveries == []
    return texts


async def test_the_sync_client_runs_a_conversation_from_a_thread(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    # The server runs on this test's event loop: the blocking calls must come from elsewhere.
    texts = await asyncio.to_thread(conversation, server.url, workspace.api_secret)
    assert texts == ["m0", "m1", "m2", "m3", "m4", "file"]
    assert _loop_threads() == [], "a closed client left its event loop thread running"


@pytest.mark.parametrize(
    ("blocking", "original"),
    [(ChatClient, AsyncChatClient), (ServerClient, AsyncServerClient)],
)
def test_every_async_method_has_a_blocking_twin_with_the_same_parameters(
    blocking: type, original: type
) -> None:
    public = {
        name
        for name, member in inspect.getmembers(original)
        if not name.startswith("_") and callable(member) and name != "aclose"
    }
    assert public, original
    for name in public:
        twin = getattr(blocking, name, None)
        assert twin is not None, f"{blocking.__module__}.{blocking.__name__} lacks {name}"
        if name not in ("connect", "as_user"):
            assert inspect.signature(twin) == inspect.signature(getattr(original, name)), name
