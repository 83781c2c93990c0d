"""Privacy (issue 14, point 7) against real PostgreSQL and S3 (SeaweedFS): the export holds
everything stored about a user with working download URLs, `cariosan user export` writes it
with the files, and a hard delete leaves no trace of the user: a unique marker put in its
name, data, messages, reaction, file name and file bytes, with webhook deliveries pending to a
receiver that is down, is found nowhere in a pg_dump of the whole database nor in any object of
the bucket afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from cariosan.config import Settings
from cariosan.domain import attachments
from cariosan.domain.privacy import DELETED_USER, scrub
from cariosan.domain.workspaces import NewWorkspace, create_workspace
from cariosan_client import ServerClient
from cariosan_client import sync as sync_client
from tests.integration.test_attachments import BUCKET, s3_settings, upload
from tests.services.provision import S3Service, s3_client
from tests.support.chat import backend_client, make_user, user_client
from tests.support.server import RunningServer, free_port, start_server


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """A test on `server` works in a workspace of its own: one server serves them all. (The
    world of the marker tests is a server of its own: they search a dump of the whole database
    and every object of the bucket.)"""
    return shared_server


@dataclass
class World:
    server: RunningServer
    workspace: NewWorkspace
    database_url: str
    s3: S3Service
    marker: str
    victim: str
    backend: httpx.AsyncClient
    victim_http: httpx.AsyncClient
    ann: httpx.AsyncClient
    facts: dict[str, Any]


@pytest.fixture
async def world(
    settings: Settings, s3_service: S3Service, database_url: str
) -> AsyncIterator[World]:
    """A workspace where the victim (a user with a unique marker in everything it owns) chats
    with ann, and a webhook endpoint for every event whose receiver is down."""
    configured = s3_settings(settings, s3_service, BUCKET).with_overrides(
        webhook_allow_private=True, webhook_schedule=(0.0, 600.0), webhook_timeout_seconds=1.0
    )
    async with start_server(configured) as server:
        workspace = await create_workspace(server.services.db, "privacy")
        marker = uuid.uuid4().hex
        victim = f"v{uuid.uuid4().hex[:12]}"
        victim_token = await make_user(server, workspace, victim)
        ann_token = await make_user(server, workspace, "ann")
        async with (
            backend_client(server, workspace) as backend,
            user_client(server, victim_token) as victim_http,
            user_client(server, ann_token) as ann,
        ):
            world = World(
                server,
                workspace,
                database_url,
                s3_service,
                marker,
                victim,
                backend,
                victim_http,
                ann,
                {},
            )
            await populate(world)
            yield world


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def populate(w: World) -> None:
    m, v = w.marker, w.victim
    # A receiver that is down: every event's delivery stays pending.
    dead = f"http://127.0.0.1:{free_port()}/hook"
    await ok(await w.backend.post("/v1/webhooks", json={"url": dead, "events": ["*"]}), 201)
    await ok(
        await w.backend.put(
            f"/v1/users/{v}",
            json={
                "name": f"Victim {m}",
                "image_url": f"https://img.example/{m}.png",
                "data": {"bio": f"bio {m}", "nested": {"k": [m]}},
            },
        )
    )
    await ok(await w.backend.put(f"/v1/users/{v}", json={"role": "moderator"}))
    await ok(await w.backend.post(f"/v1/users/{v}/revoke-tokens"), 204)
    token = (await ok(await w.backend.post(f"/v1/users/{v}/token")))["token"]
    w.victim_http.headers["Authorization"] = f"Bearer {token}"
    room = {"id": "room", "type": "group", "name": "Room", "members": ["ann"]}
    await ok(await w.victim_http.post("/v1/channels", json=room), 201)
    dm = await ok(
        await w.victim_http.post("/v1/channels", json={"type": "dm", "members": ["ann"]}), 201
    )
    w.facts["dm"] = dm["id"]
    sent = await ok(
        await w.victim_http.post(
            "/v1/channels/room/messages", json={"text": f"hello {m}", "data": {"x": m}}
        ),
        201,
    )
    w.facts["message"] = sent["id"]
    await ok(
        await w.victim_http.post(f"/v1/channels/{dm['id']}/messages", json={"text": f"dm {m}"}),
        201,
    )
    anns = await ok(
        await w.ann.post("/v1/channels/room/messages", json={"text": "hi victim", "mentions": [v]}),
        201,
    )
    w.facts["anns"] = anns["id"]
    reply = await ok(
        await w.victim_http.post(
            "/v1/channels/room/messages", json={"text": f"reply {m}", "parent_id": anns["id"]}
        ),
        201,
    )
    w.facts["reply"] = reply["id"]
    await ok(await w.victim_http.put(f"/v1/messages/{anns['id']}/reactions/{m}"))
    await ok(await w.ann.put(f"/v1/messages/{sent['id']}/reactions/like"))
    body = f"file bytes {m}".encode()
    signed = await upload(w.victim_http, body, filename=f"notes-{m}.txt", content_type="text/plain")
    with_file = await ok(
        await w.victim_http.post(
            "/v1/channels/room/messages",
            json={"text": f"file {m}", "attachment_ids": [signed["attachment_id"]]},
        ),
        201,
    )
    w.facts["attachment"] = signed["attachment_id"]
    w.facts["with_file"] = with_file["id"]
    w.facts["file_bytes"] = body
    # An upload never sent.
    pending = await upload(
        w.victim_http, f"pending {m}".encode(), filename=f"p-{m}.txt", content_type="text/plain"
    )
    w.facts["pending"] = pending["attachment_id"]
    w.facts["pending_upload"] = pending
    await ok(await w.victim_http.post("/v1/channels/room/read", json={"message_id": anns["id"]}))


def dump(database_url: str) -> str:
    """The whole database as pg_dump prints it (schema and every row)."""
    done = subprocess.run(
        ["pg_dump", "--no-owner", "-d", database_url],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
    )
    return done.stdout


def bucket_objects(s3: S3Service) -> dict[str, bytes]:
    client = s3_client(s3)
    found: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            found[item["Key"]] = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
    return found


async def settled(database_url: str) -> None:
    """Wait until the sequencer has numbered every event (so deliveries exist)."""
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(100):
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events WHERE seq < 0)"):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("events were not numbered within 5 s")
    finally:
        await conn.close()


async def test_the_export_holds_everything_with_working_download_urls(world: World) -> None:
    w, m = world, world.marker
    await settled(w.database_url)
    exported = await ok(await w.backend.get(f"/v1/users/{w.victim}/export"))
    assert exported["user"]["id"] == w.victim and exported["user"]["name"] == f"Victim {m}"
    assert exported["user"]["data"]["bio"] == f"bio {m}"
    channels = {x["channel_id"]: x for x in exported["memberships"]}
    assert set(channels) == {"room", w.facts["dm"]}
    assert channels["room"]["role"] == "owner" and channels["room"]["joined_at"]
    texts = {x["id"]: x for x in exported["messages"]}
    assert {texts[k]["text"] for k in texts} == {f"hello {m}", f"dm {m}", f"reply {m}", f"file {m}"}
    assert texts[w.facts["reply"]]["parent_id"] == w.facts["anns"]
    assert texts[w.facts["message"]]["data"] == {"x": m}
    assert texts[w.facts["with_file"]]["attachment_ids"] == [w.facts["attachment"]]
    assert [(r["message_id"], r["type"]) for r in exported["reactions"]] == [(w.facts["anns"], m)]
    read = {r["channel_id"]: r for r in exported["read_state"]}
    assert read["room"]["last_read_message_id"] == w.facts["anns"]
    files = {a["id"]: a for a in exported["attachments"]}
    assert set(files) == {w.facts["attachment"], w.facts["pending"]}
    sent = files[w.facts["attachment"]]
    assert sent["filename"] == f"notes-{m}.txt" and sent["message_id"] == w.facts["with_file"]
    async with httpx.AsyncClient(timeout=10) as plain:
        got = await plain.get(sent["download_url"])
    assert got.status_code == 200 and got.content == w.facts["file_bytes"]
    assert {e["action"] for e in exported["audit"]} >= {
        "user.role_changed",
        "user.tokens_revoked",
    }
    # The export is in the audit log; users cannot export, not even admins.
    log = await ok(await w.backend.get("/v1/audit", params={"action": "user.exported"}))
    assert [e["target"] for e in log["entries"]] == [f"user:{w.victim}"]
    assert log["entries"][0]["actor"] == "backend"
    refused = await w.ann.get(f"/v1/users/{w.victim}/export")
    assert refused.status_code == 403
    missing = await w.backend.get("/v1/users/nobody/export")
    assert missing.status_code == 404
    # The SDKs.
    async with ServerClient(w.server.url, w.workspace.api_secret) as sdk:
        again = await sdk.export_user(w.victim)
    assert {x["id"] for x in again["messages"]} == set(texts)

    def sync_export() -> dict[str, Any]:
        with sync_client.ServerClient(w.server.url, w.workspace.api_secret) as blocking:
            return blocking.export_user(w.victim)

    assert (await asyncio.to_thread(sync_export))["user"]["id"] == w.victim


async def test_the_cli_writes_the_json_and_the_files(world: World, tmp_path: Path) -> None:
    w, m = world, world.marker
    settings = w.server.services.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARIOS_", "PG"))} | {
        "CARIOS_DATABASE_URL": w.database_url,
        "CARIOS_JWT_SECRET": settings.jwt_secret,
        "CARIOS_S3_ENDPOINT": settings.s3_endpoint or "",
        "CARIOS_S3_BUCKET": BUCKET,
        "CARIOS_S3_ACCESS_KEY": settings.s3_access_key or "",
        "CARIOS_S3_SECRET_KEY": settings.s3_secret_key or "",
        "CARIOS_S3_REGION": settings.s3_region,
    }
    out = tmp_path / "export"
    command = [sys.executable, "-m", "cariosan", "user", "export", w.victim]
    done = await asyncio.to_thread(
        subprocess.run,
        [*command, "--workspace", str(w.workspace.id), "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary == {"path": str(out), "messages": 4, "files": 2, "failed": 0}
    document = json.loads((out / "export.json").read_text())
    assert document["user"]["name"] == f"Victim {m}"
    by_id = {a["id"]: a for a in document["attachments"]}
    sent = by_id[w.facts["attachment"]]
    assert sent["file"] == f"files/{w.facts['attachment']}/notes-{m}.txt"
    assert (out / sent["file"]).read_bytes() == w.facts["file_bytes"]
    log = await ok(await w.backend.get("/v1/audit", params={"action": "user.exported"}))
    assert [e["actor"] for e in log["entries"]] == ["operator"]
    # A user that does not exist: one line, exit 1; a folder in use is refused.
    gone = await asyncio.to_thread(
        subprocess.run,
        [*command[:-1], "nobody", "--workspace", str(w.workspace.id), "--out", str(tmp_path / "n")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert gone.returncode == 1 and "no such user" in gone.stderr
    busy = await asyncio.to_thread(
        subprocess.run,
        [*command, "--workspace", str(w.workspace.id), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert busy.returncode == 1 and "not empty" in busy.stderr


async def test_a_hard_delete_leaves_the_marker_nowhere(world: World) -> None:
    w, m, v = world, world.marker, world.victim
    await settled(w.database_url)
    # The premise: the marker is in the database, the deliveries wait, the files are there.
    before = dump(w.database_url)
    assert before.count(m) >= 8
    conn = await asyncpg.connect(w.database_url)
    try:
        pending = await conn.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
        )
        assert pending > 10
        # A body stored with a delivery (as older releases did) holding the user's text.
        await conn.execute(
            "UPDATE webhook_deliveries SET body = $1 WHERE event_type = 'message.new'",
            json.dumps({"text": f"hello {m}", "user": {"id": v}}),
        )
    finally:
        await conn.close()
    searched = await ok(await w.backend.get("/v1/search", params={"q": m}))
    assert len(searched["messages"]) == 4
    objects = bucket_objects(w.s3)
    assert any(m in key for key in objects)
    assert any(m.encode() in body for body in objects.values())

    await ok(await w.backend.delete(f"/v1/users/{v}", params={"mode": "hard"}), 204)
    await settled(w.database_url)

    # The upload URL handed out before the delete still works (S3 cannot revoke it): a file
    # put through it afterwards is removed by the cleanup job's tidy pass.
    late = w.facts["pending_upload"]
    async with httpx.AsyncClient(timeout=10) as plain:
        put = await plain.put(
            late["upload_url"], content=f"LATEPUT {m}".encode(), headers=late["upload_headers"]
        )
    assert put.status_code in (200, 204), put.text
    assert any(m in key for key in bucket_objects(w.s3))
    services = w.server.services
    assert await attachments.remove_leftovers(services.db, services.blobs, 0) == 1

    after = dump(w.database_url)
    leftover = [line for line in after.splitlines() if m in line]
    assert not leftover, "\n".join(leftover)
    for key, body in bucket_objects(w.s3).items():
        assert m not in key, key
        assert m.encode() not in body, key
        assert not key.startswith(f"{w.workspace.id}/{w.facts['attachment']}/"), key
    # The id itself stays only where the deletion is recorded: the audit entry (and its
    # event) and the member.removed events telling the other members who left.
    for line in after.splitlines():
        if v in line:
            assert "user.deleted" in line or "member.removed" in line, line
    # Ann's message no longer mentions the user; her text and her thread stay.
    listed = await ok(await w.ann.get("/v1/channels/room/messages"))
    thread = next(x for x in listed["messages"] if x["id"] == w.facts["anns"])
    assert thread["mentions"] == [] and thread["text"] == "hi victim"
    assert thread["reply_count"] == 0
    found = await ok(await w.backend.get("/v1/search", params={"q": m}))
    assert found["messages"] == []
    # The other member learns that the user left; the deletion is in the audit log.
    log = await ok(await w.backend.get("/v1/audit"))
    actions = {e["action"]: e for e in log["entries"]}
    assert actions["user.deleted"]["target"] == f"user:{v}"
    assert actions["user.deleted"]["data"]["mode"] == "hard"
    assert actions["user.deleted"]["data"]["files"] == 2
    earlier = [e for e in log["entries"] if e["action"] != "user.deleted"]
    assert all(v not in json.dumps(e) for e in earlier)
    assert actions["user.role_changed"]["target"] == f"user:{DELETED_USER}"
    # A new user with the same id starts empty.
    await make_user(w.server, w.workspace, v)
    exported = await ok(await w.backend.get(f"/v1/users/{v}/export"))
    assert exported["messages"] == [] and exported["attachments"] == []
    assert exported["memberships"] == [] and exported["reactions"] == []


def test_scrub_drops_the_user_from_payloads() -> None:
    payload = {
        "channel": {
            "id": "vic",
            "created_by": "vic",
            "members": [{"user_id": "vic", "role": "owner"}, {"user_id": "ann", "role": "member"}],
            "name": "Vic's room",
        },
        "channel_id": "vic",
        "user": {"id": "vic", "name": "Vic", "image_url": None},
        "mentions": ["vic", "ann"],
        "entry": {"target": "user:vic", "actor": "ann", "data": {"author": "vic", "note": "Vic"}},
    }
    assert scrub(payload, "vic", {"vic", "Vic"}) == {
        "channel": {
            "id": "vic",
            "created_by": None,
            "members": [{"user_id": "ann", "role": "member"}],
            "name": "Vic's room",
        },
        "channel_id": "vic",
        "user": None,
        "mentions": ["ann"],
        "entry": {
            "target": f"user:{DELETED_USER}",
            "actor": "ann",
            "data": {"author": None, "note": None},
        },
    }


async def test_a_hard_delete_whose_files_cannot_be_removed_changes_nothing(
    own_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files go before the transaction commits: a store failure is a 503, the user and its
    data stay, and asking again finishes the job (local attachment folder here)."""
    # Its own server: the store's `delete` is broken for a while, for everything the server does.
    server = own_server
    workspace = await create_workspace(server.services.db, "test workspace")
    token = await make_user(server, workspace, "leaver")
    async with user_client(server, token) as leaver, backend_client(server, workspace) as backend:
        await ok(await leaver.post("/v1/channels", json={"id": "r", "type": "group"}), 201)
        signed = await upload(
            leaver, b"keep me", channel_id="r", filename="f.txt", content_type="text/plain"
        )
        body = {"text": "x", "attachment_ids": [signed["attachment_id"]]}
        await ok(await leaver.post("/v1/channels/r/messages", json=body), 201)
        blobs = server.services.blobs

        async def broken(key: str) -> None:
            raise OSError("disk gone")

        monkeypatch.setattr(blobs, "delete", broken)
        failed = await backend.delete("/v1/users/leaver", params={"mode": "hard"})
        assert failed.status_code == 503, failed.text
        assert failed.json()["error"]["code"] == "UNAVAILABLE"
        exported = await ok(await backend.get("/v1/users/leaver/export"))
        assert [m["text"] for m in exported["messages"]] == ["x"]
        assert len(exported["attachments"]) == 1
        monkeypatch.undo()
        await ok(await backend.delete("/v1/users/leaver", params={"mode": "hard"}), 204)
        assert (await backend.get("/v1/users/leaver")).status_code == 404
        key = f"{workspace.id}/{signed['attachment_id']}/"
        assert await blobs.list_keys(key) == []


async def test_asking_again_erases_what_an_older_hard_delete_left_behind(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    """Older releases' hard delete kept the attachment records and files: a hard delete of the
    gone user removes them (204), and then there is nothing left to delete (404)."""
    token = await make_user(server, workspace, "old")
    async with user_client(server, token) as old, backend_client(server, workspace) as backend:
        await ok(await old.post("/v1/channels", json={"id": "r", "type": "group"}), 201)
        signed = await upload(
            old, b"left over", channel_id="r", filename="f.txt", content_type="text/plain"
        )
        body = {"text": "x", "attachment_ids": [signed["attachment_id"]]}
        await ok(await old.post("/v1/channels/r/messages", json=body), 201)
        # What the previous release's hard delete did.
        conn = await asyncpg.connect(server.services.settings.database_url)
        try:
            async with conn.transaction():
                for table in ("reactions", "messages", "channel_members", "users"):
                    column = "id" if table == "users" else "user_id"
                    await conn.execute(
                        f"DELETE FROM {table} WHERE workspace_id = $1 AND {column} = 'old'",
                        workspace.id,
                    )
            # The workspace's attachments: the server's database holds other tests' too.
            mine = "SELECT count(*) FROM attachments WHERE workspace_id = $1"
            assert await conn.fetchval(mine, workspace.id) == 1
            folder = f"{workspace.id}/{signed['attachment_id']}/"
            assert await server.services.blobs.list_keys(folder) != []
            await ok(await backend.delete("/v1/users/old", params={"mode": "hard"}), 204)
            assert await conn.fetchval(mine, workspace.id) == 0
            assert await server.services.blobs.list_keys(folder) == []
        finally:
            await conn.close()
        again = await backend.delete("/v1/users/old", params={"mode": "hard"})
        assert again.status_code == 404
        log = await ok(await backend.get("/v1/audit", params={"action": "user.deleted"}))
        assert log["entries"][0]["data"]["leftovers_only"] is True
