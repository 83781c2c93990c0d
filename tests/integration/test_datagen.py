"""bench/datagen.py writes in bulk exactly what the API writes one message at a time: read back
through the public API, generated messages look like sent ones, in history, catch-up, channel
lists, unread counts and search."""

from __future__ import annotations

from typing import Any

import pytest
from bench import datagen

from cariosan.config import Limits, Settings
from cariosan.domain.workspaces import NewWorkspace
from tests.support.chat import make_user, user_client
from tests.support.server import RunningServer


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(limits=Limits(user_requests_per_minute=1_000_000))


def shape_of(value: Any) -> Any:
    """The keys (recursively) and the null-ness of a JSON value: what must match."""
    if isinstance(value, dict):
        return {k: shape_of(v) for k, v in value.items() if k not in ("seq",)}
    return value is None


async def test_generated_history_reads_like_sent_messages(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    authors = [f"w{i}" for i in range(datagen.AUTHORS)]
    tokens = {n: await make_user(server, workspace, n) for n in [*authors, "reader"]}
    shape = datagen.Shape(messages=60, channels=3)
    dsn = server.services.settings.database_url
    assert dsn
    channels = await datagen.make_channels(
        server.url, workspace.api_secret, shape, ["reader", *authors], []
    )
    await server.services.sequencer.drain()
    await datagen.fill_messages(dsn, workspace.id, shape)
    async with user_client(server, tokens["w1"]) as w1:
        sent = await w1.post(f"/v1/channels/{channels[1]}/messages", json={"text": "by the api"})
        assert sent.status_code == 201
    await server.services.sequencer.drain()
    async with user_client(server, tokens["reader"]) as reader:
        events: list[dict[str, Any]] = []
        after = 0
        while True:
            page = (await reader.get("/v1/events", params={"after_seq": after})).json()
            events += page["events"]
            after = page["latest_seq"]
            if not page["has_more"]:
                break
        hot = (await reader.get("/v1/channels/c0000/messages", params={"limit": 200})).json()
        listed = (await reader.get("/v1/channels")).json()["channels"]
        found = (await reader.get("/v1/search", params={"q": "alpha"})).json()["messages"]
    new = [e for e in events if e["type"] == "message.new"]
    assert len(new) == 61
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))
    generated, api = new[0], new[-1]
    assert api["message"]["text"] == "by the api"
    assert shape_of(generated) == shape_of(api), "a generated event differs from a sent one"
    assert [e["message"]["text"] for e in new[:60]] == [
        f"message {i} {datagen.WORDS[i % 8]} {datagen.WORDS[(i // 7) % 8]}" for i in range(1, 61)
    ]
    hot_ids = [m["id"] for m in hot["messages"]]
    assert hot_ids == [e["message"]["id"] for e in new[:60] if e["channel_id"] == "c0000"]
    by_id = {c["id"]: c for c in listed}
    assert by_id[channels[1]]["last_message"]["text"] == "by the api"
    last_hot = [e for e in new if e["channel_id"] == "c0000"][-1]["message"]
    assert by_id["c0000"]["last_message"]["id"] == last_hot["id"]
    assert 0 < len(hot_ids) < 60, "the hot channel has its share, the others the rest"
    assert by_id["c0000"]["unread_count"] == len(hot_ids)
    assert found and all("alpha" in m["text"] for m in found)
