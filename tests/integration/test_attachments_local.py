"""Attachments on the local store (`cariosan dev`): the same API shape, URLs signed and served
by the server itself, and no way out of the storage folder through names or URL paths."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest

from cariosan.blobs.local_store import LocalStore
from cariosan.blobs.store import ObjectInfo
from cariosan.config import Settings
from cariosan.domain import attachments
from cariosan.domain.workspaces import NewWorkspace
from tests.integration.test_attachments import (
    Chat,
    _backdate,
    claim,
    code,
    downloaded,
    open_chat,
    put_again,
    record_of,
    request_upload,
    send,
    upload,
)
from tests.support.server import RunningServer, start_server


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here works in a workspace of its own, and its files under that workspace's
    folder of the local store: one server serves them all."""
    return shared_server


@pytest.fixture
async def chat(server: RunningServer, workspace: NewWorkspace) -> AsyncIterator[Chat]:
    async for opened in open_chat(server, ""):
        yield opened


@pytest.fixture
async def own_chat(settings: Settings) -> AsyncIterator[Chat]:
    """A chat on a server of this test's own, for a test that looks at every attachment in the
    database (the cleanup job's passes count what they removed, in any workspace)."""
    async with start_server(settings) as running:
        async for opened in open_chat(running, ""):
            yield opened


def store_of(chat: Chat) -> LocalStore:
    store = chat.server.services.blobs
    assert isinstance(store, LocalStore)
    return store


async def test_upload_and_download_through_server_signed_urls(chat: Chat) -> None:
    body = os.urandom(2 * 1024 * 1024 + 17)  # larger than the 1 MiB limit of API bodies
    signed = await upload(chat.alice, body, filename="clip.mp4", content_type="video/mp4")
    assert signed["upload_url"].startswith(chat.server.url + "/v1/blobs/")
    assert signed["upload_headers"] == {
        "Content-Type": "video/mp4",
        "Content-Length": str(len(body)),
    }
    store = store_of(chat)
    stored = store.root / str(chat.workspace.id) / signed["attachment_id"] / "clip.mp4"
    assert stored.read_bytes() == body

    await claim(chat, [signed["attachment_id"]])
    found = (await chat.bob.get(f"/v1/attachments/{signed['attachment_id']}")).json()
    assert found["size"] == len(body) and found["filename"] == "clip.mp4"
    async with httpx.AsyncClient(timeout=10) as plain:
        downloaded = await plain.get(found["url"])
    assert downloaded.status_code == 200
    assert downloaded.content == body
    assert downloaded.headers["content-disposition"].startswith("attachment")
    assert downloaded.headers["x-content-type-options"] == "nosniff"
    assert (await chat.carol.get(f"/v1/attachments/{signed['attachment_id']}")).status_code == 404


async def test_a_local_upload_answers_like_s3_with_an_empty_body(chat: Chat) -> None:
    asked = (await request_upload(chat.alice, size=5, content_type="text/plain")).json()
    async with httpx.AsyncClient(timeout=10) as plain:
        put = await plain.put(
            asked["upload_url"], content=b"hello", headers=asked["upload_headers"]
        )
    assert put.status_code == 200 and put.content == b"", put.text


async def test_uploads_must_match_what_was_signed(chat: Chat) -> None:
    asked = (await request_upload(chat.alice, size=5, content_type="text/plain")).json()
    url = asked["upload_url"]
    async with httpx.AsyncClient(timeout=10) as plain:
        wrong_type = await plain.put(url, content=b"hello", headers={"Content-Type": "image/png"})
        longer = await plain.put(url, content=b"hello!", headers={"Content-Type": "text/plain"})
        tampered = await plain.put(
            url.replace("signature=", "signature=0"),
            content=b"hello",
            headers={"Content-Type": "text/plain"},
        )
        assert (wrong_type.status_code, longer.status_code, tampered.status_code) == (
            403,
            403,
            403,
        )
        assert code(wrong_type) == "FORBIDDEN"
        ok = await plain.put(url, content=b"hello", headers={"Content-Type": "text/plain"})
        assert ok.status_code == 200, ok.text
        # The download URL does not upload, and the upload URL does not download.
        assert (await plain.get(url)).status_code == 403


async def test_expired_urls_are_refused(chat: Chat) -> None:
    signed = await upload(chat.alice, b"soon gone", content_type="text/plain", filename="e.txt")
    key = f"{chat.workspace.id}/{signed['attachment_id']}/e.txt"
    store = store_of(chat)
    get_url = await store.presign_get(key, "e.txt", "text/plain", 1)
    put_url = await store.presign_put(key, "text/plain", 3, 1)
    await asyncio.sleep(2.1)
    async with httpx.AsyncClient(timeout=10) as plain:
        expired = await plain.get(get_url.url)
        assert expired.status_code == 403 and "expired" in expired.json()["error"]["message"]
        refused = await plain.put(put_url.url, content=b"abc", headers=put_url.headers)
        assert refused.status_code == 403


async def test_traversal_in_filenames_stays_under_the_root(chat: Chat) -> None:
    store = store_of(chat)
    root = store.root.resolve()
    for name in ("../../../../tmp/evil.txt", "..\\..\\evil.txt", "/etc/passwd", "....//x.txt"):
        signed = await upload(chat.alice, b"harmless", filename=name, content_type="text/plain")
        files = list((root / str(chat.workspace.id) / signed["attachment_id"]).iterdir())
        assert len(files) == 1, name
        assert files[0].resolve().is_relative_to(root)
        assert ".." not in files[0].name and "/" not in files[0].name
    assert not Path("/tmp/evil.txt").exists()


async def test_traversal_in_url_paths_is_refused(chat: Chat, tmp_path: Path) -> None:
    store = store_of(chat)
    outside = store.root.resolve().parent / "outside.txt"
    outside.write_text("secret")
    expires = int(time.time()) + 60
    raw_paths = [
        "../outside.txt",
        "%2e%2e/outside.txt",
        "%2E%2E%2Foutside.txt",
        "..%2Foutside.txt",
        f"{chat.workspace.id}/../../outside.txt",
        "%2F" + quote(str(outside), safe=""),
    ]
    host = urlsplit(chat.server.url)
    for raw in raw_paths:
        # Even with a valid signature for the traversing key, nothing outside the root is read.
        key = raw.replace("%2e", ".").replace("%2E", ".").replace("%2F", "/")
        signature = store._sign("GET", key, expires)
        target = f"/v1/blobs/{raw}?expires={expires}&signature={signature}"
        reader, writer = await asyncio.open_connection(host.hostname, host.port)
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        answer = await reader.read()
        writer.close()
        status = int(answer.split(b" ", 2)[1])
        assert status in (403, 404), (raw, answer[:200])
        assert b"secret" not in answer
        put = await store.presign_put("x/y/z.txt", "text/plain", 6, 60)
        bad_put = put.url.replace("/v1/blobs/x/y/z.txt", "/v1/blobs/x/../../outside.txt")
        async with httpx.AsyncClient(timeout=10) as plain:
            refused = await plain.put(bad_put, content=b"pwned!", headers=put.headers)
        assert refused.status_code in (403, 404)
    assert outside.read_text() == "secret"


async def test_blob_routes_need_a_valid_signature(chat: Chat) -> None:
    missing = await chat.alice.get(f"/v1/blobs/{uuid.uuid4()}/x/y.txt")
    assert missing.status_code in (400, 422)  # expires and signature are required
    unsigned = await chat.alice.get(f"/v1/blobs/a/b/c?expires={int(time.time()) + 60}&signature=x")
    assert unsigned.status_code == 403


# --- a sent file never changes ------------------------------------------------------------------


def files_of(chat: Chat, attachment_id: str) -> list[str]:
    """Every file in the attachment's folder, hidden ones too, as keys."""
    root = store_of(chat).root.resolve()
    folder = root / str(chat.workspace.id) / attachment_id
    return sorted(p.relative_to(root).as_posix() for p in folder.rglob("*") if p.is_file())


async def test_a_put_after_sending_changes_nothing_anyone_downloads(chat: Chat) -> None:
    original = os.urandom(70_000)
    signed = await upload(chat.alice, original, filename="notes.txt", content_type="text/plain")
    upload_key = f"{chat.workspace.id}/{signed['attachment_id']}/notes.txt"
    assert (await send(chat, [signed["attachment_id"]])).status_code == 201
    url_before = (await chat.bob.get(f"/v1/attachments/{signed['attachment_id']}")).json()["url"]

    record = await record_of(chat, signed["attachment_id"])
    assert files_of(chat, signed["attachment_id"]) == [record["object_key"]]
    assert record["object_key"] != upload_key
    assert record["checksum"] == "sha256:" + hashlib.sha256(original).hexdigest()

    swapped = os.urandom(len(original))
    assert (await put_again(signed, swapped)).status_code == 200
    assert files_of(chat, signed["attachment_id"]) == sorted([record["object_key"], upload_key])
    assert await downloaded(chat.bob, signed["attachment_id"]) == original
    async with httpx.AsyncClient(timeout=10) as plain:
        assert (await plain.get(url_before)).content == original


async def test_a_wrong_size_on_disk_is_refused(chat: Chat) -> None:
    asked = (await request_upload(chat.alice, size=10, content_type="text/plain")).json()
    path = store_of(chat).path_for(f"{chat.workspace.id}/{asked['attachment_id']}/photo.png")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"short")
    refused = await send(chat, [asked["attachment_id"]])
    assert refused.status_code == 422 and code(refused) == "VALIDATION_FAILED"
    assert "5 bytes, 10 were declared" in refused.json()["error"]["message"]
    assert files_of(chat, asked["attachment_id"]) == [
        f"{chat.workspace.id}/{asked['attachment_id']}/photo.png"
    ]


async def test_a_retried_send_neither_copies_again_nor_fails(chat: Chat) -> None:
    body = os.urandom(3000)
    signed = await upload(chat.alice, body, content_type="text/plain")
    message_id = str(uuid.uuid4())
    first = await send(chat, [signed["attachment_id"]], message_id=message_id)
    assert first.status_code == 201, first.text
    record = await record_of(chat, signed["attachment_id"])
    assert (await put_again(signed, os.urandom(len(body)))).status_code == 200
    answers = await asyncio.gather(
        *(send(chat, [signed["attachment_id"]], message_id=message_id) for _ in range(3))
    )
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(a.json() == first.json() for a in answers)
    assert await record_of(chat, signed["attachment_id"]) == record
    upload_key = f"{chat.workspace.id}/{signed['attachment_id']}/photo.png"
    # The re-upload is there (the cleanup job removes it later); no second copy was made.
    assert files_of(chat, signed["attachment_id"]) == sorted([record["object_key"], upload_key])
    assert await downloaded(chat.bob, signed["attachment_id"]) == body


async def test_cleanup_leaves_only_the_sent_copy(own_chat: Chat) -> None:
    chat = own_chat
    services = chat.server.services
    body = os.urandom(500)
    sent = await upload(chat.alice, body, content_type="text/plain")
    assert (await send(chat, [sent["attachment_id"]])).status_code == 201
    assert (await put_again(sent, os.urandom(len(body)))).status_code == 200
    never_sent = await upload(chat.alice, b"left behind", content_type="text/plain")
    url_seconds = services.settings.attachment_url_seconds
    for signed in (sent, never_sent):
        await _backdate(chat, signed["attachment_id"], 25)

    assert await attachments.remove_leftovers(services.db, services.blobs, url_seconds) == 1
    assert await attachments.remove_stale(services.db, services.blobs, 24 * 3600) == 1
    record = await record_of(chat, sent["attachment_id"])
    assert files_of(chat, sent["attachment_id"]) == [record["object_key"]]
    root = store_of(chat).root.resolve()
    assert not (root / str(chat.workspace.id) / never_sent["attachment_id"]).exists()
    assert await downloaded(chat.bob, sent["attachment_id"]) == body


async def test_a_local_copy_takes_the_file_whole_and_never_replaces_one(chat: Chat) -> None:
    store = store_of(chat)
    await store.prepare()
    source = f"{chat.workspace.id}/{uuid.uuid4()}/a.txt"
    store.path_for(source).parent.mkdir(parents=True)
    store.path_for(source).write_bytes(b"abcdef")
    seen = await store.head(source)
    assert seen is not None and seen.size == 6

    # Another size than the one checked: no copy, and no file or folder for it either.
    changed = source.replace("a.txt", "c1/a.txt")
    assert await store.copy(source, changed, ObjectInfo(source, 5)) is None
    await store.delete(changed)
    assert await store.list_keys(source.rsplit("/", 1)[0] + "/") == [source]
    assert not store.path_for(changed).parent.exists()

    copied = await store.copy(source, source.replace("a.txt", "c2/a.txt"), seen)
    assert copied is not None
    assert copied.checksum == "sha256:" + hashlib.sha256(b"abcdef").hexdigest()
    # A key that is already there is never overwritten, whatever the caller asks.
    with pytest.raises(FileExistsError):
        await store.copy(source, copied.key, seen)
    assert store.path_for(copied.key).read_bytes() == b"abcdef"
