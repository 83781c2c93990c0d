"""Attachments against a real S3 server (SeaweedFS): presigned upload and download with a plain
HTTP client, the limits checked before signing, claims by messages, the cleanup job, and a dead
store answering 503 while chat keeps working."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from cariosan.config import Settings
from cariosan.domain import attachments
from cariosan.domain.views import AttachmentRef
from cariosan.domain.workspaces import NewWorkspace, create_workspace
from cariosan.errors import ValidationFailed
from tests.services.provision import S3Service, s3_client
from tests.support.chat import backend_client, make_user, user_client
from tests.support.server import RunningServer, start_server


@dataclass
class Chat:
    server: RunningServer
    workspace: NewWorkspace
    alice: httpx.AsyncClient
    bob: httpx.AsyncClient
    carol: httpx.AsyncClient  # not a member of "room"
    backend: httpx.AsyncClient
    bucket: str


def s3_settings(settings: Settings, s3: S3Service, bucket: str) -> Settings:
    return settings.with_overrides(
        s3_endpoint=s3.endpoint,
        s3_bucket=bucket,
        s3_access_key=s3.access_key,
        s3_secret_key=s3.secret_key,
        s3_region=s3.region,
    )


async def open_chat(server: RunningServer, bucket: str) -> AsyncIterator[Chat]:
    workspace = await create_workspace(server.services.db, "attachments")
    tokens = {name: await make_user(server, workspace, name) for name in ("alice", "bob", "carol")}
    async with (
        user_client(server, tokens["alice"]) as alice,
        user_client(server, tokens["bob"]) as bob,
        user_client(server, tokens["carol"]) as carol,
        backend_client(server, workspace) as backend,
    ):
        created = await alice.post(
            "/v1/channels", json={"id": "room", "type": "group", "members": ["alice", "bob"]}
        )
        assert created.status_code == 201, created.text
        created = await carol.post(
            "/v1/channels", json={"id": "other", "type": "group", "members": ["carol", "alice"]}
        )
        assert created.status_code == 201, created.text
        yield Chat(server, workspace, alice, bob, carol, backend, bucket)


# One bucket for the whole run, each test in a workspace of its own (keys start with it):
# SeaweedFS gives every bucket volumes of its own, and a test server has only a few.
BUCKET = f"att-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def chat(settings: Settings, s3_service: S3Service) -> AsyncIterator[Chat]:
    bucket = BUCKET
    async with start_server(s3_settings(settings, s3_service, bucket)) as server:
        async for opened in open_chat(server, bucket):
            yield opened


def code(response: httpx.Response) -> str:
    value: str = response.json()["error"]["code"]
    return value


async def request_upload(
    http: httpx.AsyncClient,
    *,
    channel_id: str = "room",
    filename: str = "photo.png",
    content_type: str = "image/png",
    size: int,
) -> httpx.Response:
    return await http.post(
        "/v1/attachments",
        json={
            "channel_id": channel_id,
            "filename": filename,
            "content_type": content_type,
            "size": size,
        },
    )


async def upload(http: httpx.AsyncClient, body: bytes, **fields: Any) -> dict[str, Any]:
    """Ask for an upload and PUT the bytes with a plain client: no Authorization header."""
    asked = await request_upload(http, size=len(body), **fields)
    assert asked.status_code == 201, asked.text
    signed: dict[str, Any] = asked.json()
    assert signed["upload_method"] == "PUT"
    async with httpx.AsyncClient(timeout=10) as plain:
        put = await plain.put(signed["upload_url"], content=body, headers=signed["upload_headers"])
    assert put.status_code in (200, 204), put.text
    return signed


async def claim(
    chat: Chat, attachment_ids: list[str], *, user_id: str = "alice", channel_id: str = "room"
) -> tuple[uuid.UUID, list[AttachmentRef]]:
    """Send a message carrying the attachments, through the API; (message id, its refs).
    A refusal is raised as the ValidationFailed it is (422)."""
    http = {"alice": chat.alice, "bob": chat.bob, "carol": chat.carol}[user_id]
    sent = await http.post(
        f"/v1/channels/{channel_id}/messages",
        json={"text": "with files", "attachment_ids": attachment_ids},
    )
    if sent.status_code == 422:
        raise ValidationFailed(sent.json()["error"]["message"])
    assert sent.status_code == 201, sent.text
    message = sent.json()
    return uuid.UUID(message["id"]), [AttachmentRef(**a) for a in message["attachments"]]


async def test_upload_and_download_through_presigned_urls(chat: Chat) -> None:
    body = os.urandom(300_000)
    signed = await upload(chat.alice, body, filename="holiday photo.png")
    assert signed["upload_headers"]["Content-Type"] == "image/png"
    uuid.UUID(signed["attachment_id"])
    assert chat.bucket in signed["upload_url"]
    key = s3_client_for(chat).head_object(
        Bucket=chat.bucket,
        Key=f"{chat.workspace.id}/{signed['attachment_id']}/holiday photo.png",
    )
    assert key["ContentLength"] == len(body)

    await claim(chat, [signed["attachment_id"]])
    got = await chat.bob.get(f"/v1/attachments/{signed['attachment_id']}")
    assert got.status_code == 200, got.text
    found = got.json()
    assert found["filename"] == "holiday photo.png"
    assert found["content_type"] == "image/png"
    assert found["size"] == len(body)
    async with httpx.AsyncClient(timeout=10) as plain:
        downloaded = await plain.get(found["url"])
    assert downloaded.status_code == 200
    assert downloaded.content == body
    assert "attachment" in downloaded.headers["content-disposition"]


def s3_client_for(chat: Chat) -> Any:
    settings = chat.server.services.settings
    return s3_client(
        S3Service(
            settings.s3_endpoint or "",
            settings.s3_access_key or "",
            settings.s3_secret_key or "",
            settings.s3_region,
            "test",
        )
    )


async def test_urls_are_valid_fifteen_minutes_and_pin_type_and_length(chat: Chat) -> None:
    asked = await request_upload(chat.alice, size=5, content_type="text/plain", filename="a.txt")
    signed = asked.json()
    expires = signed["expires_at"]
    from datetime import UTC, datetime

    left = datetime.fromisoformat(expires).timestamp() - datetime.now(UTC).timestamp()
    assert 14 * 60 < left <= 15 * 60 + 1
    async with httpx.AsyncClient(timeout=10) as plain:
        wrong_type = await plain.put(
            signed["upload_url"], content=b"hello", headers={"Content-Type": "image/png"}
        )
        wrong_size = await plain.put(
            signed["upload_url"], content=b"hello!", headers={"Content-Type": "text/plain"}
        )
    assert wrong_type.status_code == 403
    assert wrong_size.status_code == 403


async def test_expired_urls_are_refused(chat: Chat) -> None:
    signed = await upload(chat.alice, b"expiring", content_type="text/plain", filename="e.txt")
    key = f"{chat.workspace.id}/{signed['attachment_id']}/e.txt"
    store = chat.server.services.blobs
    get_url = await store.presign_get(key, "e.txt", "text/plain", 1)
    put_url = await store.presign_put(f"{key}.2", "text/plain", 3, 1)
    await asyncio.sleep(2.2)
    async with httpx.AsyncClient(timeout=10) as plain:
        assert (await plain.get(get_url.url)).status_code == 403
        refused = await plain.put(put_url.url, content=b"abc", headers=put_url.headers)
        assert refused.status_code == 403


async def test_non_members_get_404(chat: Chat) -> None:
    asked = await request_upload(chat.carol, size=10)
    assert asked.status_code == 404 and code(asked) == "NOT_FOUND"
    asked = await request_upload(chat.alice, channel_id="nowhere", size=10)
    assert asked.status_code == 404

    signed = await upload(chat.alice, b"members only")
    await claim(chat, [signed["attachment_id"]])
    assert (await chat.bob.get(f"/v1/attachments/{signed['attachment_id']}")).status_code == 200
    refused = await chat.carol.get(f"/v1/attachments/{signed['attachment_id']}")
    assert refused.status_code == 404 and code(refused) == "NOT_FOUND"
    assert (await chat.alice.get(f"/v1/attachments/{uuid.uuid4()}")).status_code == 404
    assert (await chat.alice.get("/v1/attachments/not-a-uuid")).status_code == 404


async def test_pending_uploads_are_visible_to_their_uploader_only(chat: Chat) -> None:
    signed = await upload(chat.alice, b"draft")
    assert (await chat.alice.get(f"/v1/attachments/{signed['attachment_id']}")).status_code == 200
    assert (await chat.bob.get(f"/v1/attachments/{signed['attachment_id']}")).status_code == 404


async def test_limits_are_checked_before_signing(chat: Chat) -> None:
    limit = chat.server.services.settings.limits.max_attachment_bytes
    too_big = await request_upload(chat.alice, size=limit + 1)
    assert too_big.status_code == 413 and code(too_big) == "PAYLOAD_TOO_LARGE"
    assert (await request_upload(chat.alice, size=limit)).status_code == 201
    for size in (0, -1):
        empty = await request_upload(chat.alice, size=size)
        assert empty.status_code == 422 and code(empty) == "VALIDATION_FAILED"
    for content_type in ("text/html", "application/x-msdownload", "not a type", ""):
        forbidden = await request_upload(chat.alice, size=10, content_type=content_type)
        assert forbidden.status_code == 422, content_type
        assert code(forbidden) == "VALIDATION_FAILED"
    missing = await chat.alice.post("/v1/attachments", json={"channel_id": "room"})
    assert missing.status_code == 422
    conn = await asyncpg.connect(chat.server.services.settings.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM attachments") == 1
    finally:
        await conn.close()


async def test_filenames_are_sanitized(chat: Chat) -> None:
    names = {
        "../../etc/passwd": "_._etc_passwd",
        "a\\b/c.txt": "a_b_c.txt",
        "bell\x07\x00name\u202e.txt": "bellname.txt",
        "..": "file",
        "x" * 400 + ".txt": "x" * 176 + ".txt",
    }
    for given, stored in names.items():
        signed = await upload(chat.alice, b"n", filename=given, content_type="text/plain")
        found = await chat.alice.get(f"/v1/attachments/{signed['attachment_id']}")
        assert found.json()["filename"] == stored, given
        listed = s3_client_for(chat).list_objects_v2(
            Bucket=chat.bucket, Prefix=f"{chat.workspace.id}/{signed['attachment_id']}/"
        )
        assert [o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]] == [stored]


async def test_backend_uploads_as_a_named_user(chat: Chat) -> None:
    asked = await chat.backend.post(
        "/v1/attachments",
        json={
            "channel_id": "room",
            "filename": "r.pdf",
            "content_type": "application/pdf",
            "size": 3,
            "user_id": "bob",
        },
    )
    assert asked.status_code == 201, asked.text


# --- claims by messages ----------------------------------------------------------------------


async def test_claims_check_upload_channel_owner_and_reuse(chat: Chat) -> None:
    uploaded = await upload(chat.alice, b"0123456789")
    never = (await request_upload(chat.alice, size=4)).json()
    elsewhere = await upload(chat.alice, b"x", channel_id="other")
    bobs = await upload(chat.bob, b"bob's")

    with pytest.raises(ValidationFailed, match="never uploaded"):
        await claim(chat, [never["attachment_id"]])
    with pytest.raises(ValidationFailed, match="not in this channel"):
        await claim(chat, [elsewhere["attachment_id"]])
    with pytest.raises(ValidationFailed, match="another user"):
        await claim(chat, [bobs["attachment_id"]])
    with pytest.raises(ValidationFailed, match="not in this channel"):
        await claim(chat, [str(uuid.uuid4())])
    with pytest.raises(ValidationFailed, match="UUID"):
        await claim(chat, ["nope"])
    with pytest.raises(ValidationFailed, match="twice"):
        await claim(chat, [uploaded["attachment_id"]] * 2)

    _, refs = await claim(chat, [uploaded["attachment_id"]])
    assert [(r.id, r.filename, r.content_type, r.size) for r in refs] == [
        (uploaded["attachment_id"], "photo.png", "image/png", 10)
    ]
    with pytest.raises(ValidationFailed, match="another message"):
        await claim(chat, [uploaded["attachment_id"]])


async def test_claim_refuses_another_workspace(chat: Chat) -> None:
    uploaded = await upload(chat.alice, b"tenant a")
    other = await create_workspace(chat.server.services.db, "tenant b")
    services = chat.server.services
    async with services.db.transaction() as conn:
        with pytest.raises(ValidationFailed, match="unknown attachment"):
            await attachments.claim_for_message(
                conn, other.id, "room", "alice", uuid.uuid4(), [uploaded["attachment_id"]]
            )


async def test_the_store_is_asked_before_the_send_locks_any_row(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No network call inside a transaction: while the store answers the HEAD, the attachment
    and channel rows are free (another connection can lock them without waiting)."""
    uploaded = await request_upload(chat.alice, size=4)
    asked = uploaded.json()
    key = f"{chat.workspace.id}/{asked['attachment_id']}/photo.png"
    s3_client_for(chat).put_object(Bucket=chat.bucket, Key=key, Body=b"four")
    services = chat.server.services
    head = services.blobs.head
    free: list[bool] = []

    async def checking_head(object_key: str) -> Any:
        dsn = services.settings.database_url
        probe = await asyncpg.connect(dsn)
        try:
            async with probe.transaction():
                for statement in (
                    "SELECT 1 FROM attachments WHERE id = $1::uuid FOR UPDATE NOWAIT",
                    "SELECT 1 FROM channels WHERE id = 'room' FOR UPDATE NOWAIT",
                ):
                    args = [asked["attachment_id"]] if "$1" in statement else []
                    try:
                        await probe.execute(statement, *args)
                        free.append(True)
                    except asyncpg.exceptions.LockNotAvailableError:
                        free.append(False)
        finally:
            await probe.close()
        return await head(object_key)

    monkeypatch.setattr(services.blobs, "head", checking_head)
    _, refs = await claim(chat, [asked["attachment_id"]])
    assert [r.id for r in refs] == [asked["attachment_id"]]
    assert free == [True, True], "a row was locked while the store was asked"


async def test_claim_refuses_a_wrong_size(chat: Chat) -> None:
    asked = (await request_upload(chat.alice, size=10)).json()
    key = f"{chat.workspace.id}/{asked['attachment_id']}/photo.png"
    s3_client_for(chat).put_object(Bucket=chat.bucket, Key=key, Body=b"short")
    with pytest.raises(ValidationFailed, match="5 bytes, 10 were declared"):
        await claim(chat, [asked["attachment_id"]])


async def test_deleted_message_takes_its_attachments_from_reads(chat: Chat) -> None:
    signed = await upload(chat.alice, b"gone soon")
    message_id, refs = await claim(chat, [signed["attachment_id"]])
    assert [r.id for r in refs] == [signed["attachment_id"]]
    listed = (await chat.bob.get("/v1/channels/room/messages")).json()["messages"]
    assert [a["id"] for a in listed[-1]["attachments"]] == [signed["attachment_id"]]
    assert (await chat.bob.get(f"/v1/attachments/{signed['attachment_id']}")).status_code == 200
    assert (await chat.alice.delete(f"/v1/messages/{message_id}")).status_code == 204
    listed = (await chat.bob.get("/v1/channels/room/messages")).json()["messages"]
    assert listed[-1]["attachments"] == [] and listed[-1]["deleted_at"] is not None
    for http in (chat.alice, chat.bob, chat.backend):
        gone = await http.get(f"/v1/attachments/{signed['attachment_id']}")
        assert gone.status_code == 404, gone.text


# --- cleanup of never-referenced uploads --------------------------------------------------------


async def _backdate(chat: Chat, attachment_id: str, hours: float) -> None:
    conn = await asyncpg.connect(chat.server.services.settings.database_url)
    try:
        await conn.execute(
            "UPDATE attachments SET created_at = now() - make_interval(secs => $2) WHERE id = $1",
            uuid.UUID(attachment_id),
            hours * 3600,
        )
    finally:
        await conn.close()


async def test_cleanup_removes_old_unreferenced_uploads_only(chat: Chat) -> None:
    services = chat.server.services
    old = await upload(chat.alice, b"old pending")
    fresh = await upload(chat.alice, b"fresh pending")
    used = await upload(chat.alice, b"old but sent")
    await claim(chat, [used["attachment_id"]])
    for signed in (old, used):
        await _backdate(chat, signed["attachment_id"], 25)

    removed = await attachments.remove_stale(services.db, services.blobs, 24 * 3600)
    assert removed == 1
    keys = {
        o["Key"].split("/")[1]
        for o in s3_client_for(chat).list_objects_v2(
            Bucket=chat.bucket, Prefix=f"{chat.workspace.id}/"
        )["Contents"]
    }
    assert old["attachment_id"] not in keys
    assert {fresh["attachment_id"], used["attachment_id"]} <= keys
    assert (await chat.alice.get(f"/v1/attachments/{old['attachment_id']}")).status_code == 404
    assert (await chat.alice.get(f"/v1/attachments/{fresh['attachment_id']}")).status_code == 200
    assert (await chat.bob.get(f"/v1/attachments/{used['attachment_id']}")).status_code == 200
    with pytest.raises(ValidationFailed):
        await claim(chat, [old["attachment_id"]])


async def test_cleanup_never_runs_twice_at_once(chat: Chat) -> None:
    """The job runs under a PostgreSQL advisory lock: while one server (here: a connection
    holding the lock) runs it, another server's run does nothing."""
    from cariosan.db.attachments import CLEANUP_LOCK_KEY

    services = chat.server.services
    old = await upload(chat.alice, b"old pending")
    await _backdate(chat, old["attachment_id"], 30)
    holder = await asyncpg.connect(services.settings.database_url)
    try:
        assert await holder.fetchval("SELECT pg_try_advisory_lock($1)", CLEANUP_LOCK_KEY)
        assert await attachments.remove_stale(services.db, services.blobs, 24 * 3600) is None
        assert (await chat.alice.get(f"/v1/attachments/{old['attachment_id']}")).status_code == 200
        await holder.execute("SELECT pg_advisory_unlock($1)", CLEANUP_LOCK_KEY)
    finally:
        await holder.close()
    # Two runs started together: one does the work, the other finds the lock taken or
    # nothing left; the file is removed exactly once.
    results = await asyncio.gather(
        attachments.remove_stale(services.db, services.blobs, 24 * 3600),
        attachments.remove_stale(services.db, services.blobs, 24 * 3600),
    )
    assert sorted(results, key=lambda r: -1 if r is None else r) in ([None, 1], [0, 1])


async def test_cleanup_job_runs_in_every_server(settings: Settings, s3_service: S3Service) -> None:
    bucket = BUCKET
    fast = s3_settings(settings, s3_service, bucket).with_overrides(
        attachment_cleanup_interval_seconds=0.2
    )
    async with start_server(fast) as one, start_server(fast) as two:
        async for chat in open_chat(one, bucket):
            old = await upload(chat.alice, b"left behind")
            await _backdate(chat, old["attachment_id"], 25)
            for _ in range(100):
                listed = s3_client_for(chat).list_objects_v2(
                    Bucket=bucket, Prefix=f"{chat.workspace.id}/"
                )
                if not listed.get("Contents"):
                    break
                await asyncio.sleep(0.1)
            assert not listed.get("Contents")
            assert two.services.attachment_cleanup is not None


# --- the store down ---------------------------------------------------------------------------


async def test_store_down_is_503_for_attachments_only(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    down = settings.with_overrides(
        s3_endpoint="http://127.0.0.1:9",
        s3_access_key="dead-access-key",
        s3_secret_key="dead-secret-key-never-shown",
    )
    async with start_server(down) as server:
        async for chat in open_chat(server, "cariosan"):
            asked = await request_upload(chat.alice, size=10)
            assert asked.status_code == 503 and code(asked) == "UNAVAILABLE"
            assert "dead-secret-key" not in asked.text and "dead-access-key" not in asked.text
            assert (await chat.alice.get("/v1/channels")).status_code == 200
            assert (await chat.alice.get(f"/v1/attachments/{uuid.uuid4()}")).status_code == 404
    logs = capsys.readouterr()
    assert "attachment_store_unavailable" in logs.out
    assert "dead-secret-key" not in logs.out + logs.err


async def test_local_blob_routes_are_closed_on_s3(chat: Chat) -> None:
    closed = await chat.alice.get(f"/v1/blobs/a/b/c.txt?expires={2**40}&signature=x")
    assert closed.status_code == 404


async def test_credentials_never_appear_in_responses(chat: Chat) -> None:
    settings = chat.server.services.settings
    signed = await upload(chat.alice, b"secret-free")
    got = await chat.alice.get(f"/v1/attachments/{signed['attachment_id']}")
    ready = await chat.alice.get("/readyz")
    for text in (json.dumps(signed), got.text, ready.text):
        assert (settings.s3_secret_key or "?") not in text
