"""Attachment files: an S3 bucket (MinIO in production) or a local folder (`cariosan dev`).

Keys are `{workspace}/{attachment_id}/{filename}` (DESIGN.md). Clients never send bytes through
the API: they get presigned URLs (S3's own, or ones the server signs and serves for the local
store). Every method raises `cariosan.errors.Unavailable` when the store cannot be reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class PresignedUpload:
    url: str
    # Headers the upload must carry exactly (the signature covers them).
    headers: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True)
class PresignedDownload:
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    # S3's ETag without quotes (the MD5 of the bytes for single-part uploads); None where the
    # store would have to read the whole file to know it (the local store).
    etag: str | None = None
    # The type the store will serve, where it keeps one (S3); None for the local store.
    content_type: str | None = None
    # The SHA-256 of the bytes, where the store read them all anyway (a local copy).
    sha256: str | None = None

    @property
    def checksum(self) -> str | None:
        """What identifies these exact bytes, as recorded with an attachment."""
        if self.sha256 is not None:
            return f"sha256:{self.sha256}"
        if self.etag is not None:
            return f"etag:{self.etag}"
        return None


class BlobStore(Protocol):
    kind: str

    async def ping(self) -> None:
        """Raise when the store cannot be used right now."""

    async def prepare(self) -> None:
        """Create the bucket or folder if it is missing (at boot)."""

    async def ensure_available(self) -> None:
        """Raise Unavailable unless the store answered recently (cached for a few seconds)."""

    async def presign_put(
        self, key: str, content_type: str, size: int, expires_in: int
    ) -> PresignedUpload:
        """A URL that accepts one PUT of exactly `size` bytes of `content_type` at `key`."""

    async def presign_get(
        self, key: str, filename: str, content_type: str, expires_in: int
    ) -> PresignedDownload:
        """A URL that downloads `key` (as an attachment named `filename`)."""

    async def head(self, key: str) -> ObjectInfo | None:
        """The object's size and checksum, or None when there is no such object."""

    async def copy(self, source: str, target: str, expected: ObjectInfo) -> ObjectInfo | None:
        """Copy `source` to `target` inside the store, only if `source` still is `expected`
        (same size, and same ETag where the store has one): the copy then holds exactly the
        bytes that were checked. The copy's info, or None when `source` changed or vanished.
        `target` must be a key no one else writes (the copy may replace it)."""

    async def list_keys(self, prefix: str) -> list[str]:
        """The keys that start with `prefix` (a folder: it ends with `/`)."""

    async def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    async def close(self) -> None: ...
