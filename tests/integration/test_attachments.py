"""Attachments against a real S3 server (SeaweedFS): presigned upload and download with a plain
HTTP client, the limits checked before signing, claims by messages, the cleanup job, and a dead
store answering 503 while chat keeps working."""

from __future__ import annotations

import asyncio
import hashlib
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
from cariosan.db import attachments as attachment_rows
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
    """No network call inside a transaction: while the store answers the HEAD and makes the
    copy, the attachment and channel rows are free (another connection can lock them without
    waiting)."""
    uploaded = await request_upload(chat.alice, size=4)
    asked = uploaded.json()
    key = f"{chat.workspace.id}/{asked['attachment_id']}/photo.png"
    s3_client_for(chat).put_object(
        Bucket=chat.bucket, Key=key, Body=b"four", ContentType="image/png"
    )
    services = chat.server.services
    head, copy = services.blobs.head, services.blobs.copy
    free: list[bool] = []

    async def probe_locks() -> None:
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

    async def checking_head(object_key: str) -> Any:
        await probe_locks()
        return await head(object_key)

    async def checking_copy(source: str, target: str, expected: Any) -> Any:
        await probe_locks()
        return await copy(source, target, expected)

    monkeypatch.setattr(services.blobs, "head", checking_head)
    monkeypatch.setattr(services.blobs, "copy", checking_copy)
    _, refs = await claim(chat, [asked["attachment_id"]])
    assert [r.id for r in refs] == [asked["attachment_id"]]
    assert free == [True] * 4, "a row was locked while the store was asked"


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


# --- a sent file never changes ------------------------------------------------------------------


async def send(
    chat: Chat, attachment_ids: list[str], *, message_id: str | None = None, **extra: Any
) -> httpx.Response:
    body: dict[str, Any] = {"text": "with files", "attachment_ids": attachment_ids, **extra}
    if message_id is not None:
        body["id"] = message_id
    return await chat.alice.post("/v1/channels/room/messages", json=body)


async def downloaded(http: httpx.AsyncClient, attachment_id: str) -> bytes:
    """The bytes a member gets through a fresh download URL."""
    got = await http.get(f"/v1/attachments/{attachment_id}")
    assert got.status_code == 200, got.text
    async with httpx.AsyncClient(timeout=10) as plain:
        fetched = await plain.get(got.json()["url"])
    assert fetched.status_code == 200, fetched.text
    return fetched.content


async def put_again(signed: dict[str, Any], body: bytes) -> httpx.Response:
    """A PUT to an upload URL that was already used (still within its 15 minutes)."""
    async with httpx.AsyncClient(timeout=10) as plain:
        return await plain.put(signed["upload_url"], content=body, headers=signed["upload_headers"])


def keys_of(chat: Chat, attachment_id: str) -> list[str]:
    listed = s3_client_for(chat).list_objects_v2(
        Bucket=chat.bucket, Prefix=f"{chat.workspace.id}/{attachment_id}/"
    )
    return sorted(o["Key"] for o in listed.get("Contents", []))


async def record_of(chat: Chat, attachment_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(chat.server.services.settings.database_url)
    try:
        found = await conn.fetchrow(
            "SELECT object_key, checksum, size, tidied_at FROM attachments WHERE id = $1",
            uuid.UUID(attachment_id),
        )
    finally:
        await conn.close()
    assert found is not None
    return found


async def test_a_put_after_sending_changes_nothing_anyone_downloads(chat: Chat) -> None:
    original = os.urandom(50_000)
    signed = await upload(chat.alice, original)
    upload_key = f"{chat.workspace.id}/{signed['attachment_id']}/photo.png"
    before_send = (await chat.bob.get(f"/v1/attachments/{signed['attachment_id']}")).status_code
    assert before_send == 404  # pending: the uploader's only
    sent = await send(chat, [signed["attachment_id"]])
    assert sent.status_code == 201, sent.text
    url_before = (await chat.bob.get(f"/v1/attachments/{signed['attachment_id']}")).json()["url"]

    # The upload is gone; the file lives at a key of its own, recorded with its checksum.
    record = await record_of(chat, signed["attachment_id"])
    assert keys_of(chat, signed["attachment_id"]) == [record["object_key"]]
    assert record["object_key"] != upload_key
    assert record["checksum"] == "etag:" + hashlib.md5(original).hexdigest()

    swapped = os.urandom(len(original))
    replaced = await put_again(signed, swapped)
    assert replaced.status_code == 200, replaced.text  # the URL still works: it just writes
    assert keys_of(chat, signed["attachment_id"]) == sorted([record["object_key"], upload_key])
    assert await downloaded(chat.bob, signed["attachment_id"]) == original
    assert await downloaded(chat.alice, signed["attachment_id"]) == original
    async with httpx.AsyncClient(timeout=10) as plain:
        assert (await plain.get(url_before)).content == original
    listed = (await chat.bob.get("/v1/channels/room/messages")).json()["messages"]
    assert listed[-1]["attachments"][0]["size"] == len(original)


async def test_a_put_racing_the_copy_is_copied_whole_or_not_at_all(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PUT landing between the send's HEAD and its copy: the copy refuses the changed file
    (it would not be the file checked), the send looks again and copies the new one, and what
    is served is what the recorded checksum says."""
    first, second = os.urandom(4096), os.urandom(4096)
    signed = await upload(chat.alice, first)
    services = chat.server.services
    head = services.blobs.head
    raced: list[str] = []

    async def head_then_put(key: str) -> Any:
        found = await head(key)
        if not raced:
            raced.append(key)
            assert (await put_again(signed, second)).status_code == 200
        return found

    monkeypatch.setattr(services.blobs, "head", head_then_put)
    sent = await send(chat, [signed["attachment_id"]])
    assert sent.status_code == 201, sent.text
    record = await record_of(chat, signed["attachment_id"])
    assert record["checksum"] == "etag:" + hashlib.md5(second).hexdigest()
    assert await downloaded(chat.bob, signed["attachment_id"]) == second
    assert keys_of(chat, signed["attachment_id"]) == [record["object_key"]]


async def test_a_file_that_does_not_match_the_declaration_is_refused(chat: Chat) -> None:
    asked = (await request_upload(chat.alice, size=10)).json()
    key = f"{chat.workspace.id}/{asked['attachment_id']}/photo.png"
    client = s3_client_for(chat)
    client.put_object(Bucket=chat.bucket, Key=key, Body=b"0123456789", ContentType="text/plain")
    refused = await send(chat, [asked["attachment_id"]])
    assert refused.status_code == 422 and code(refused) == "VALIDATION_FAILED"
    assert "text/plain" in refused.json()["error"]["message"]
    client.put_object(Bucket=chat.bucket, Key=key, Body=b"012345678", ContentType="image/png")
    refused = await send(chat, [asked["attachment_id"]])
    assert refused.status_code == 422 and code(refused) == "VALIDATION_FAILED"
    assert "9 bytes, 10 were declared" in refused.json()["error"]["message"]
    assert keys_of(chat, asked["attachment_id"]) == [key]  # nothing was copied

    client.put_object(Bucket=chat.bucket, Key=key, Body=b"0123456789", ContentType="image/png")
    assert (await send(chat, [asked["attachment_id"]])).status_code == 201
    assert await downloaded(chat.bob, asked["attachment_id"]) == b"0123456789"


async def test_a_failed_send_leaves_no_copy_and_the_upload_usable(chat: Chat) -> None:
    signed = await upload(chat.alice, b"try again")
    upload_key = f"{chat.workspace.id}/{signed['attachment_id']}/photo.png"
    # Refused inside the transaction, after the copy was made.
    refused = await send(chat, [signed["attachment_id"]], mentions=["carol"])
    assert refused.status_code == 422, refused.text
    assert keys_of(chat, signed["attachment_id"]) == [upload_key]
    assert (await record_of(chat, signed["attachment_id"]))["checksum"] is None
    assert (await send(chat, [signed["attachment_id"]])).status_code == 201
    assert await downloaded(chat.bob, signed["attachment_id"]) == b"try again"


async def test_a_retried_send_neither_copies_again_nor_fails(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = os.urandom(2048)
    signed = await upload(chat.alice, body)
    services = chat.server.services
    copy = services.blobs.copy
    copies: list[str] = []

    async def counting_copy(source: str, target: str, expected: Any) -> Any:
        copies.append(target)
        return await copy(source, target, expected)

    monkeypatch.setattr(services.blobs, "copy", counting_copy)
    message_id = str(uuid.uuid4())
    first = await send(chat, [signed["attachment_id"]], message_id=message_id)
    assert first.status_code == 201, first.text
    record = await record_of(chat, signed["attachment_id"])
    assert (await put_again(signed, os.urandom(len(body)))).status_code == 200
    again = await send(chat, [signed["attachment_id"]], message_id=message_id)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert len(copies) == 1
    assert await record_of(chat, signed["attachment_id"]) == record
    assert await downloaded(chat.bob, signed["attachment_id"]) == body
    history = (await chat.bob.get("/v1/channels/room/messages")).json()["messages"]
    assert [m["id"] for m in history] == [message_id]


async def test_concurrent_retries_keep_one_copy(chat: Chat) -> None:
    body = os.urandom(2048)
    signed = await upload(chat.alice, body)
    message_id = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(send(chat, [signed["attachment_id"]], message_id=message_id) for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201], [a.text for a in answers]
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    record = await record_of(chat, signed["attachment_id"])
    # The copies of the sends that lost are gone, and so is the upload.
    assert keys_of(chat, signed["attachment_id"]) == [record["object_key"]]
    assert await downloaded(chat.bob, signed["attachment_id"]) == body


async def test_a_retry_that_looked_before_the_first_send_committed_gets_that_message(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry read the attachment as not yet sent; by the time it asks the store, the
    first send has committed and removed the upload. The claim answers, not the store."""
    signed = await upload(chat.alice, os.urandom(1000))
    ids = [uuid.UUID(signed["attachment_id"])]
    async with chat.server.services.db.connection() as conn:
        before = await attachment_rows.unlocked(conn, chat.workspace.id, ids)
    message_id = str(uuid.uuid4())
    first = await send(chat, [signed["attachment_id"]], message_id=message_id)
    assert first.status_code == 201, first.text
    assert keys_of(chat, signed["attachment_id"]) == [
        (await record_of(chat, signed["attachment_id"]))["object_key"]
    ]  # the upload is gone

    looked = 0
    real = attachment_rows.unlocked

    async def as_before_the_commit(
        conn: asyncpg.Connection, workspace_id: uuid.UUID, wanted: list[uuid.UUID]
    ) -> list[attachment_rows.AttachmentRow]:
        nonlocal looked
        looked += 1
        return before if looked == 1 else await real(conn, workspace_id, wanted)

    monkeypatch.setattr(attachment_rows, "unlocked", as_before_the_commit)
    again = await send(chat, [signed["attachment_id"]], message_id=message_id)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert looked == 2  # the store's "no such file" was checked against the rows again


async def test_cleanup_removes_what_a_sent_attachment_left_behind(chat: Chat) -> None:
    services = chat.server.services
    body = os.urandom(1000)
    signed = await upload(chat.alice, body)
    assert (await send(chat, [signed["attachment_id"]])).status_code == 201
    record = await record_of(chat, signed["attachment_id"])
    # A re-upload after the send, and a copy of a send that died before its transaction ended.
    assert (await put_again(signed, os.urandom(len(body)))).status_code == 200
    stray = f"{chat.workspace.id}/{signed['attachment_id']}/0123456789abcdef/photo.png"
    s3_client_for(chat).put_object(Bucket=chat.bucket, Key=stray, Body=b"orphan")
    assert len(keys_of(chat, signed["attachment_id"])) == 3

    # Not while the upload URL may still be used...
    url_seconds = services.settings.attachment_url_seconds
    assert await attachments.remove_leftovers(services.db, services.blobs, url_seconds) == 0
    assert len(keys_of(chat, signed["attachment_id"])) == 3
    # ...but once it has expired; and once only.
    await _backdate(chat, signed["attachment_id"], (url_seconds + 120) / 3600)
    assert await attachments.remove_leftovers(services.db, services.blobs, url_seconds) == 1
    assert keys_of(chat, signed["attachment_id"]) == [record["object_key"]]
    assert (await record_of(chat, signed["attachment_id"]))["tidied_at"] is not None
    assert await attachments.remove_leftovers(services.db, services.blobs, url_seconds) == 0
    assert await downloaded(chat.bob, signed["attachment_id"]) == body


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
    from cariosan.db.locks import ATTACHMENT_CLEANUP as CLEANUP_LOCK_KEY

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
