"""Attachments: signed uploads straight to the store, claims by messages, signed downloads for
channel members, and removal of uploads no message ever referenced.

Lifecycle: `create_upload` checks membership, size and content type, records a *pending*
attachment and signs a PUT for `{workspace}/{id}/{filename}`; the client uploads; a send first
checks the file (size, type) and copies it to a key no URL can write (`seal_uploads`, before
its transaction), then `claim_for_message` (inside the transaction) ties it to the message and
points the record at the copy, and `settle` (after) removes the upload. So once sent, what a
download returns never changes. `remove_stale` deletes what stayed unreferenced for a day
(record and files); `remove_leftovers` whatever else is left in a sent attachment's folder.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from cariosan.blobs.store import BlobStore, ObjectInfo, PresignedUpload
from cariosan.config import Settings
from cariosan.db import attachments as rows
from cariosan.db import locks
from cariosan.db.pool import Database
from cariosan.domain.access import channel_access
from cariosan.domain.auth import Caller
from cariosan.domain.ids import server_id
from cariosan.domain.views import AttachmentRef
from cariosan.errors import Conflict, NotFound, PayloadTooLarge, ValidationFailed
from cariosan.obs.logging import get_logger

log = get_logger("cariosan.attachments")

# Bytes of UTF-8, well under every filesystem's 255 and S3's 1024 for the whole key.
MAX_FILENAME_BYTES = 180
MAX_CONTENT_TYPE = 255
MAX_PER_MESSAGE = 20
# A send looks at an upload and copies it at most this often while PUTs keep replacing it.
SEAL_ATTEMPTS = 3
_CONTENT_TYPE = re.compile(
    r"^([a-z0-9][a-z0-9!#$&^_.+-]*)/([a-z0-9][a-z0-9!#$&^_.+-]*)"
    r"(\s*;\s*[a-z0-9!#$&^_.+-]+=(\"[^\"\\\r\n]*\"|[a-z0-9!#$&^_.+-]+))*$"
)


@dataclass(frozen=True)
class Upload:
    attachment_id: uuid.UUID
    upload: PresignedUpload


@dataclass(frozen=True)
class Download:
    url: str
    expires_at: datetime
    filename: str
    content_type: str
    size: int


def safe_filename(name: str) -> str:
    """The name as stored and used in the object key: no path separators, no `..`, no control
    characters, at most MAX_FILENAME_BYTES of UTF-8 (the extension kept)."""
    text = unicodedata.normalize("NFC", name)
    text = "".join(
        "_" if ch in "/\\" else ch
        for ch in text
        if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    text = re.sub(r"\.{2,}", ".", text).strip().strip(".").strip()
    if not text:
        return "file"
    if len(text.encode()) > MAX_FILENAME_BYTES:
        stem, dot, ext = text.rpartition(".")
        ext = ext if dot and stem and len(ext.encode()) <= 16 else ""
        room = MAX_FILENAME_BYTES - len(ext.encode()) - (1 if ext else 0)
        stem = (stem if ext else text).encode()[:room].decode(errors="ignore").rstrip(". ")
        text = f"{stem}.{ext}" if ext else stem
    return text or "file"


def content_type_allowed(content_type: str, allowed: Sequence[str]) -> bool:
    """Whether `type/subtype` (parameters ignored) matches an entry like `image/*` or `*/*`."""
    main, _, sub = content_type.split(";", 1)[0].strip().partition("/")
    for pattern in allowed:
        if pattern in ("*", "*/*"):
            return True
        p_main, _, p_sub = pattern.partition("/")
        if p_main == main and p_sub in ("*", sub):
            return True
    return False


def object_key(workspace_id: uuid.UUID, attachment_id: uuid.UUID, filename: str) -> str:
    return f"{workspace_id}/{attachment_id}/{filename}"


def _check_request(settings: Settings, filename: str, content_type: str, size: int) -> str:
    """The normalized content type, after the size and type limits (nothing is signed yet)."""
    limit = settings.limits.max_attachment_bytes
    if size > limit:
        raise PayloadTooLarge(f"an attachment may have at most {limit} bytes; this one has {size}")
    if size <= 0:
        raise ValidationFailed("size must be the file's length in bytes, at least 1")
    if not filename.strip():
        raise ValidationFailed("filename must not be empty")
    normalized = content_type.strip().lower()
    if len(normalized) > MAX_CONTENT_TYPE or not _CONTENT_TYPE.match(normalized):
        raise ValidationFailed("content_type must be a MIME type such as image/png")
    if not content_type_allowed(normalized, settings.attachment_types):
        raise ValidationFailed(
            f"content type {normalized.split(';')[0]} is not allowed here "
            f"(allowed: {', '.join(settings.attachment_types)})"
        )
    return normalized


async def create_upload(
    database: Database,
    blobs: BlobStore,
    settings: Settings,
    caller: Caller,
    *,
    channel_id: str,
    filename: str,
    content_type: str,
    size: int,
) -> Upload:
    """Check, record a pending attachment, and sign a PUT for it (15 minutes)."""
    async with database.connection() as conn:
        await channel_access(conn, caller, channel_id)
    content_type = _check_request(settings, filename, content_type, size)
    await blobs.ensure_available()
    attachment_id = uuid.uuid4()
    name = safe_filename(filename)
    key = object_key(caller.workspace_id, attachment_id, name)
    async with database.connection() as conn:
        await rows.insert_pending(
            conn,
            caller.workspace_id,
            attachment_id,
            channel_id=channel_id,
            user_id=caller.user_id,
            filename=name,
            content_type=content_type,
            size=size,
            object_key=key,
        )
    upload = await blobs.presign_put(key, content_type, size, settings.attachment_url_seconds)
    return Upload(attachment_id, upload)


async def download(
    database: Database,
    blobs: BlobStore,
    settings: Settings,
    caller: Caller,
    attachment_id: str,
) -> Download:
    """A signed GET (15 minutes) for a member of the attachment's channel; NOT_FOUND for anyone
    else, for an attachment whose message was deleted, and for someone else's pending upload."""
    wanted = server_id("attachment", attachment_id)
    async with database.connection() as conn:
        row = await rows.get_readable(conn, caller.workspace_id, wanted)
        if row is None:
            raise NotFound("no such attachment")
        try:
            await channel_access(conn, caller, row.channel_id)
        except NotFound:
            raise NotFound("no such attachment") from None
    if row.message_id is None and not (caller.user_id == row.user_id or caller.user_id is None):
        raise NotFound("no such attachment")
    await blobs.ensure_available()
    signed = await blobs.presign_get(
        row.object_key, row.filename, row.content_type, settings.attachment_url_seconds
    )
    return Download(signed.url, signed.expires_at, row.filename, row.content_type, row.size)


def ref_of(row: rows.AttachmentRow) -> AttachmentRef:
    return AttachmentRef(
        id=str(row.id), filename=row.filename, content_type=row.content_type, size=row.size
    )


def _attachment_ids(values: Sequence[str | uuid.UUID]) -> list[uuid.UUID]:
    if len(values) > MAX_PER_MESSAGE:
        raise ValidationFailed(f"a message may carry at most {MAX_PER_MESSAGE} attachments")
    ids: list[uuid.UUID] = []
    for value in values:
        attachment_id = (
            value
            if isinstance(value, uuid.UUID)
            else server_id("attachment_ids item", value, missing_is_not_found=False)
        )
        if attachment_id in ids:
            raise ValidationFailed(f"attachment {attachment_id} is listed twice")
        ids.append(attachment_id)
    return ids


@dataclass(frozen=True)
class Sealed:
    """A verified copy of one upload, made before the send's transaction."""

    attachment_id: uuid.UUID
    upload_key: str
    key: str
    checksum: str


@dataclass
class Seals:
    """The copies one send made, and which of them its transaction recorded."""

    copies: dict[uuid.UUID, Sealed] = field(default_factory=dict)
    recorded: set[uuid.UUID] = field(default_factory=set)


def sealed_key(upload_key: str) -> str:
    """A fresh key beside the upload, `{workspace}/{id}/{random}/{filename}`: no presigned PUT
    ever names it (uploads are signed for `{workspace}/{id}/{filename}` only), and each copy
    gets its own, so a copy never replaces one that a message already refers to."""
    folder, _, filename = upload_key.rpartition("/")
    return f"{folder}/{secrets.token_hex(8)}/{filename}"


def _check_stored(row: rows.AttachmentRow, stored: ObjectInfo | None) -> ObjectInfo:
    if stored is None:
        raise ValidationFailed(f"attachment {row.id} was never uploaded")
    if stored.size != row.size:
        raise ValidationFailed(
            f"attachment {row.id} has {stored.size} bytes, {row.size} were declared"
        )
    if stored.content_type is not None:
        # Compared without parameters and case: stores may normalize those.
        kept = stored.content_type.split(";", 1)[0].strip().lower()
        declared = row.content_type.split(";", 1)[0].strip()
        if kept != declared:
            raise ValidationFailed(
                f"attachment {row.id} was stored as {kept}, {declared} was declared"
            )
    return stored


async def _seal(blobs: BlobStore, row: rows.AttachmentRow) -> Sealed:
    """Check the upload and copy it to a key of its own, verified against what was checked."""
    for _ in range(SEAL_ATTEMPTS):
        stored = _check_stored(row, await blobs.head(row.object_key))
        key = sealed_key(row.object_key)
        copied = await blobs.copy(row.object_key, key, stored)
        if copied is None:
            # Replaced (or removed) between the HEAD and the copy: nothing may stay at the new
            # key (not even the local store's folder for it), then look again.
            await blobs.delete(key)
            continue
        if copied.size != row.size or copied.checksum is None:
            await blobs.delete(key)
            raise ValidationFailed(f"attachment {row.id} could not be verified in the store")
        return Sealed(row.id, row.object_key, key, copied.checksum)
    raise Conflict(f"attachment {row.id} kept changing while the message was sent; send again")


async def seal_uploads(
    database: Database,
    blobs: BlobStore,
    workspace_id: uuid.UUID,
    channel_id: str,
    user_id: str | None,
    attachment_ids: Sequence[str | uuid.UUID],
) -> Seals:
    """Before a send's transaction (store calls are network round trips: never made while the
    send holds row locks): check that each of the caller's uploads not yet sent is in the store
    with its declared size and type, and copy it to a key no upload URL names. Once a message
    refers to it, the attachment is served from that copy only, so a PUT to the upload URL
    afterwards changes nothing anyone downloads.

    VALIDATION_FAILED naming the attachment when it is missing or does not match; CONFLICT
    when it keeps being replaced during the copy; UNAVAILABLE when the store cannot be reached.
    `claim_for_message` checks the rows again, locked, and records the copies; `settle`
    removes what the send did not use. Attachments already sent (a retried send) are not
    copied again."""
    ids = _attachment_ids(attachment_ids)
    seals = Seals()
    if not ids:
        return seals
    async with database.connection() as conn:
        found = await rows.unlocked(conn, workspace_id, ids)
    wanted = [
        row
        for row in sorted(found, key=lambda r: ids.index(r.id))
        # Others are refused by the claim, with the right reason, or already sent.
        if row.message_id is None
        and row.status != rows.DELETING
        and row.channel_id == channel_id
        and (row.user_id is None or row.user_id == user_id)
    ]
    results = await asyncio.gather(*(_seal(blobs, row) for row in wanted), return_exceptions=True)
    for result in results:
        if isinstance(result, Sealed):
            seals.copies[result.attachment_id] = result
    failed = {
        row.id: r for row, r in zip(wanted, results, strict=True) if isinstance(r, BaseException)
    }
    if failed:
        # A concurrent send (a retry of this one, or another message) may have claimed the
        # attachment meanwhile and removed its upload: then the claim, not the store, answers
        # (the retry gets the message it sent; another message gets "belongs to another").
        async with database.connection() as conn:
            now = await rows.unlocked(conn, workspace_id, list(failed))
        for row in now:
            if row.message_id is not None:
                failed.pop(row.id, None)
    if failed:
        await settle(blobs, seals, committed=False)
        raise next(iter(failed.values()))
    return seals


async def claim_for_message(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    channel_id: str,
    user_id: str | None,
    message_id: uuid.UUID,
    attachment_ids: Sequence[str | uuid.UUID],
    seals: Seals | None = None,
) -> list[AttachmentRef]:
    """Tie uploaded attachments to a new message, inside the send's transaction; their refs in
    the order given.

    Each must exist in this workspace and channel, have been uploaded by `user_id` (or by the
    backend itself), not be attached to another message, and have been copied by
    `seal_uploads` (in `seals`). Anything else is VALIDATION_FAILED naming the attachment. No
    network call: only the attachment rows are locked, in id order. The copies recorded are
    added to `seals.recorded`.
    """
    ids = _attachment_ids(attachment_ids)
    if not ids:
        return []
    copies = {} if seals is None else seals.copies
    found = {row.id: row for row in await rows.lock_for_claim(conn, workspace_id, ids)}
    refs: list[AttachmentRef] = []
    newly: list[rows.SealedCopy] = []
    for attachment_id in ids:
        row = found.get(attachment_id)
        if row is None or row.channel_id != channel_id or row.status == rows.DELETING:
            raise ValidationFailed(f"unknown attachment {attachment_id} (not in this channel)")
        if row.user_id is not None and row.user_id != user_id:
            raise ValidationFailed(f"attachment {attachment_id} was uploaded by another user")
        if row.message_id is not None:
            if row.message_id == message_id:
                refs.append(ref_of(row))
                continue
            raise ValidationFailed(f"attachment {attachment_id} belongs to another message")
        copy = copies.get(attachment_id)
        if copy is None or copy.upload_key != row.object_key:
            raise ValidationFailed(f"attachment {attachment_id} was never uploaded")
        newly.append(rows.SealedCopy(attachment_id, copy.key, copy.checksum))
        refs.append(ref_of(row))
    await rows.mark_referenced(conn, workspace_id, newly, message_id)
    if seals is not None:
        seals.recorded.update(c.id for c in newly)
    return refs


async def settle(blobs: BlobStore, seals: Seals, *, committed: bool) -> None:
    """After the send's transaction: remove the uploads whose copy it recorded (nothing serves
    them any more) and the copies it did not record (a failed or repeated send). Best effort:
    what fails here is left to the cleanup job (`remove_leftovers`)."""
    doomed = [
        copy.upload_key if committed and copy.attachment_id in seals.recorded else copy.key
        for copy in seals.copies.values()
    ]
    results = await asyncio.gather(*(blobs.delete(key) for key in doomed), return_exceptions=True)
    for key, result in zip(doomed, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("attachment_leftover_not_removed", key=key, error=result.__class__.__name__)


async def refs_for(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, attachment_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, AttachmentRef]:
    """Attachment refs by id, for message reads (one query for a whole page)."""
    if not attachment_ids:
        return {}
    found = await rows.refs_by_id(conn, workspace_id, list(attachment_ids))
    return {row.id: ref_of(row) for row in found}


Batch = Callable[[asyncpg.Connection], Awaitable[list[rows.StaleAttachment]]]
Record = Callable[[asyncpg.Connection, list[rows.StaleAttachment]], Awaitable[None]]


async def _sweep(
    database: Database,
    blobs: BlobStore,
    batch: Batch,
    record: Record,
    *,
    keep_served: bool,
    failure: str,
) -> int | None:
    """Under the cleanup job's advisory lock (None, doing nothing, when another server holds
    it): delete the files of each attachment `batch` gives (but the served copy when
    `keep_served`) and `record` those done, until none is left or the store fails; how many."""
    async with database.connection() as conn:
        if not await locks.try_lock(conn, locks.ATTACHMENT_CLEANUP):
            return None
        try:
            swept = 0
            while True:
                found = await batch(conn)
                if not found:
                    return swept
                done: list[rows.StaleAttachment] = []
                for item in found:
                    try:
                        await _delete_folder(blobs, item, keep_served=keep_served)
                    except Exception as exc:
                        log.warning(
                            failure,
                            attachment_id=str(item.id),
                            error=exc.__class__.__name__,
                            exc_info=exc,
                        )
                        continue
                    done.append(item)
                await record(conn, done)
                swept += len(done)
                if len(done) < len(found):  # the store is failing: try again next run
                    return swept
        finally:
            await locks.unlock(conn, locks.ATTACHMENT_CLEANUP)


async def remove_stale(
    database: Database, blobs: BlobStore, older_than_seconds: float, batch: int = 500
) -> int | None:
    """Delete attachments never referenced within `older_than_seconds`: files, then record.

    Runs under a PostgreSQL advisory lock; returns None without doing anything when another
    server holds it, else how many attachments were removed. A file that cannot be deleted
    now (store down) keeps its record, marked `deleting`, for the next run.
    """
    return await _sweep(
        database,
        blobs,
        lambda conn: rows.mark_stale(conn, older_than_seconds, batch),
        rows.delete_records,
        keep_served=False,
        failure="attachment_cleanup_failed",
    )


def folder_of(item: rows.StaleAttachment) -> str:
    """Every file of one attachment is under this prefix (its upload and its copies)."""
    return f"{item.workspace_id}/{item.id}/"


async def _delete_folder(
    blobs: BlobStore, item: rows.StaleAttachment, *, keep_served: bool
) -> None:
    keep = item.object_key if keep_served else ""
    keys = set(await blobs.list_keys(folder_of(item)))
    if not keep_served:
        keys.add(item.object_key)  # listed too, unless a store cannot list what it holds
    for key in sorted(keys - {keep}):
        await blobs.delete(key)


async def remove_leftovers(
    database: Database, blobs: BlobStore, older_than_seconds: float, batch: int = 500
) -> int | None:
    """For sent attachments whose upload URL has expired (`older_than_seconds` after they were
    created): delete every file in their folder but the copy their message refers to (the
    upload if `settle` could not delete it, a re-upload through the URL after the send, the
    copy of a send that died before its transaction ended). Once per attachment.

    Under the cleanup job's advisory lock: None without doing anything when another server
    holds it, else how many attachments were tidied."""
    return await _sweep(
        database,
        blobs,
        lambda conn: rows.untidy(conn, older_than_seconds, batch),
        rows.mark_tidied,
        keep_served=True,
        failure="attachment_tidy_failed",
    )


class CleanupJob:
    """Runs `remove_stale` every few minutes in this server process (the advisory lock keeps
    the servers of a deployment from running it at the same time)."""

    def __init__(self, database: Database, blobs: BlobStore, settings: Settings) -> None:
        self._database = database
        self._blobs = blobs
        self._settings = settings
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cariosan-attachment-cleanup")

    async def _run(self) -> None:
        interval = self._settings.attachment_cleanup_interval_seconds
        while True:
            # Spread out, so that servers started together do not all try at the same moment.
            await asyncio.sleep(interval * random.uniform(0.5, 1.0))
            try:
                removed = await remove_stale(
                    self._database, self._blobs, self._settings.attachment_pending_seconds
                )
                # A minute past the URL's expiry, for clocks a little apart.
                tidied = await remove_leftovers(
                    self._database, self._blobs, self._settings.attachment_url_seconds + 60
                )
            except Exception as exc:  # a store or database outage: try again next time
                log.warning("attachment_cleanup_error", error=exc.__class__.__name__, exc_info=exc)
                continue
            if removed:
                log.info("attachments_removed", count=removed)
            if tidied:
                log.info("attachment_leftovers_removed", count=tidied)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
