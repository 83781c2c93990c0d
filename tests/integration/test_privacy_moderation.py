"""Moderation data in exports and hard deletes: a user's bans, flags, mutes, blocks and pins are
in its export, and a hard-deleted moderator's id leaves the rows about others it acted on."""

from __future__ import annotations

from typing import Any

import pytest

from cariosan.domain.workspaces import NewWorkspace
from tests.support.chat import backend_client, make_user, user_client
from tests.support.server import RunningServer


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here works in a workspace of its own: one server serves them all."""
    return shared_server


async def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def test_moderation_rows_are_exported_and_a_moderators_id_leaves_them(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    mia = await make_user(server, workspace, "mia", role="moderator")
    await make_user(server, workspace, "sam")
    ann = await make_user(server, workspace, "ann")
    async with backend_client(server, workspace) as backend:
        await _ok(
            await backend.post(
                "/v1/channels",
                json={"type": "group", "id": "g", "members": ["mia", "sam"], "user_id": "ann"},
            ),
            201,
        )
        sent = await _ok(
            await backend.post("/v1/channels/g/messages", json={"text": "x", "user_id": "sam"}),
            201,
        )
    async with user_client(server, ann) as as_ann:
        flag = await _ok(await as_ann.post(f"/v1/messages/{sent['id']}/flag", json={}), 201)
        await _ok(await as_ann.put("/v1/users/sam/mute", json={}), 204)
        await _ok(await as_ann.put("/v1/channels/g/mute", json={}), 204)
        await _ok(await as_ann.put("/v1/users/sam/block"), 204)
    async with user_client(server, mia) as as_mia:
        await _ok(await as_mia.put(f"/v1/messages/{sent['id']}/pin"))
        path = f"/v1/moderation/flags/{flag['id']}/resolve"
        await _ok(await as_mia.post(path, json={"action": "dismiss"}))
        await _ok(await as_mia.post("/v1/bans", json={"user_id": "sam", "reason": "r"}), 201)
    async with backend_client(server, workspace) as backend:
        ann_export = await _ok(await backend.get("/v1/users/ann/export"))
        sam_export = await _ok(await backend.get("/v1/users/sam/export"))
        mia_export = await _ok(await backend.get("/v1/users/mia/export"))
        assert [f["id"] for f in ann_export["moderation"]["flags"]] == [flag["id"]]
        assert [m["muted_id"] for m in ann_export["moderation"]["user_mutes"]] == ["sam"]
        assert [m["channel_id"] for m in ann_export["moderation"]["channel_mutes"]] == ["g"]
        assert [b["blocked_id"] for b in ann_export["moderation"]["blocks"]] == ["sam"]
        assert [(b["reason"], b["created_by"]) for b in sam_export["moderation"]["bans"]] == [
            ("r", "mia")
        ]
        assert [f["id"] for f in sam_export["moderation"]["flags"]] == [flag["id"]]
        assert [p["id"] for p in mia_export["moderation"]["pins"]] == [sent["id"]]

        await _ok(await backend.delete("/v1/users/mia", params={"mode": "hard"}), 204)
        message = await _ok(await backend.get("/v1/channels/g/messages", params={"user_id": "ann"}))
        [pinned] = message["messages"]
        assert pinned["pinned_at"] is not None and pinned["pinned_by"] is None
        bans = (await _ok(await backend.get("/v1/bans")))["bans"]
        assert [(b["user_id"], b["created_by"]) for b in bans] == [("sam", "deleted-user")]
        resolved = await _ok(
            await backend.get("/v1/moderation/flags", params={"status": "resolved"})
        )
        assert [f["resolved_by"] for f in resolved["flags"]] == ["deleted-user"]
        # The banned user's own rows go with it.
        await _ok(await backend.delete("/v1/users/sam", params={"mode": "hard"}), 204)
        assert (await _ok(await backend.get("/v1/bans")))["bans"] == []
        ann_after = await _ok(await backend.get("/v1/users/ann/export"))
        assert ann_after["moderation"]["user_mutes"] == []
        assert ann_after["moderation"]["blocks"] == []
