"""Attachment files in a local folder (`cariosan dev`), behind URLs the server signs and serves.

The URLs mimic S3's presigned ones: `{public_url}/v1/blobs/{key}?expires=…&signature=…`, an
HMAC-SHA256 over the method, key, expiry (and for uploads the content type and exact size), with
a key derived from the JWT secret. Every key is resolved and must stay under the root folder, so
no file name or URL path can reach outside it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlencode

from cariosan.blobs.health import HealthCache, expiry
from cariosan.blobs.store import ObjectInfo, PresignedDownload, PresignedUpload
from cariosan.errors import Forbidden, NotFound, PayloadTooLarge, Unavailable, ValidationFailed

ROUTE_PREFIX = "/v1/blobs/"


def derive_signing_key(jwt_secret: str) -> bytes:
    """A key for URL signatures only: a leaked URL never helps forge a user token."""
    return hmac.new(jwt_secret.encode(), b"cariosan local attachment urls v1", "sha256").digest()


class LocalStore:
    kind = "local"

    def __init__(self, root: Path, public_url: str = "", signing_key: bytes = b"") -> None:
        self.root = root
        self.public_url = public_url.rstrip("/")
        self._signing_key = signing_key
        self._health = HealthCache(self.ping)

    # -- the store -----------------------------------------------------------------------------

    async def ping(self) -> None:
        def check() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise PermissionError(f"{self.root} is not writable")

        try:
            await asyncio.to_thread(check)
        except OSError as exc:
            raise Unavailable(f"the attachment folder is unavailable ({exc.strerror})") from None

    async def prepare(self) -> None:
        await self.ping()

    async def ensure_available(self) -> None:
        await self._health.ensure()

    async def presign_put(
        self, key: str, content_type: str, size: int, expires_in: int
    ) -> PresignedUpload:
        self.path_for(key)
        expires = int(time.time()) + expires_in
        signature = self._sign("PUT", key, expires, content_type, size)
        return PresignedUpload(
            url=self._url(key, expires, signature),
            headers={"Content-Type": content_type, "Content-Length": str(size)},
            expires_at=expiry(expires_in),
        )

    async def presign_get(
        self, key: str, filename: str, content_type: str, expires_in: int
    ) -> PresignedDownload:
        self.path_for(key)
        expires = int(time.time()) + expires_in
        signature = self._sign("GET", key, expires)
        return PresignedDownload(
            url=self._url(key, expires, signature), expires_at=expiry(expires_in)
        )

    async def head(self, key: str) -> ObjectInfo | None:
        path = self.path_for(key)
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            return None
        return ObjectInfo(key, size)

    async def copy(self, source: str, target: str, expected: ObjectInfo) -> ObjectInfo | None:
        source_path = self.path_for(source)
        target_path = self.path_for(target)

        def work() -> ObjectInfo | None:
            # Uploads replace the file by a rename (`receive`), never write into it: the file
            # opened here stays the same bytes whatever PUT lands while they are copied.
            try:
                handle = source_path.open("rb")
            except FileNotFoundError:
                return None
            with handle:
                if os.fstat(handle.fileno()).st_size != expected.size:
                    return None
                target_path.parent.mkdir(parents=True, exist_ok=True)
                partial = target_path.with_name(f".{target_path.name}.{uuid.uuid4().hex}.part")
                digest = hashlib.sha256()
                size = 0
                try:
                    with partial.open("xb") as out:
                        while chunk := handle.read(1 << 20):
                            digest.update(chunk)
                            size += len(chunk)
                            out.write(chunk)
                        out.flush()
                        os.fsync(out.fileno())
                    # A link, unlike a rename, never replaces a file that is already there.
                    os.link(partial, target_path)
                finally:
                    partial.unlink(missing_ok=True)
            if size != expected.size:
                target_path.unlink(missing_ok=True)
                return None
            return ObjectInfo(target, size, sha256=digest.hexdigest())

        return await asyncio.to_thread(work)

    async def list_keys(self, prefix: str) -> list[str]:
        folder = self.path_for(prefix.rstrip("/"))
        root = self.root.resolve()

        def work() -> list[str]:
            found: list[str] = []
            for dirpath, dirnames, filenames in os.walk(folder):
                # Hidden names are uploads and copies still being written, not objects.
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                found.extend(
                    (Path(dirpath) / name).relative_to(root).as_posix()
                    for name in filenames
                    if not name.startswith(".")
                )
            return sorted(found)

        return await asyncio.to_thread(work)

    async def delete(self, key: str) -> None:
        path = self.path_for(key)
        root = self.root.resolve()

        def remove() -> None:
            path.unlink(missing_ok=True)
            # Drop the folders the key leaves empty ({attachment_id}/ and below); keep the
            # workspace's and the root.
            parent = path.parent
            while parent != root and parent.parent != root:
                try:
                    parent.rmdir()
                except OSError:
                    return
                parent = parent.parent

        await asyncio.to_thread(remove)

    async def close(self) -> None:
        return None

    # -- paths ---------------------------------------------------------------------------------

    def path_for(self, key: str) -> Path:
        """The file of `key`, which must stay under the root: no `..`, no absolute paths, no
        backslashes or NUL, and no symlink out (checked on the resolved path)."""
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
            raise NotFound("no such file")
        root = self.root.resolve()
        path = (root / key).resolve()
        if not path.is_relative_to(root) or path == root:
            raise NotFound("no such file")
        return path

    # -- signed URLs (served by http/attachments.py) ----------------------------------------------

    def _sign(
        self, method: str, key: str, expires: int, content_type: str = "", size: int = -1
    ) -> str:
        message = f"{method}\n{key}\n{expires}\n{content_type}\n{size}".encode()
        return hmac.new(self._signing_key, message, "sha256").hexdigest()

    def _url(self, key: str, expires: int, signature: str) -> str:
        query = urlencode({"expires": expires, "signature": signature})
        return f"{self.public_url}{ROUTE_PREFIX}{quote(key, safe='/')}?{query}"

    def verify(
        self,
        method: str,
        key: str,
        expires: int,
        signature: str,
        content_type: str = "",
        size: int = -1,
    ) -> Path:
        """The file a signed URL names, or FORBIDDEN for a wrong or expired signature (as S3)."""
        expected = self._sign(method, key, expires, content_type, size)
        if not self._signing_key or not hmac.compare_digest(expected, signature):
            raise Forbidden("the URL's signature does not match (wrong headers or a changed URL)")
        if expires < time.time():
            raise Forbidden("the URL has expired")
        return self.path_for(key)

    async def receive(self, path: Path, size: int, chunks: AsyncIterator[bytes]) -> None:
        """Write exactly `size` bytes to `path`, atomically (a partial upload leaves nothing)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        received = 0
        handle = await asyncio.to_thread(partial.open, "wb")
        try:
            try:
                async for chunk in chunks:
                    received += len(chunk)
                    if received > size:
                        raise PayloadTooLarge(f"the upload is larger than the {size} bytes signed")
                    await asyncio.to_thread(handle.write, chunk)
            finally:
                await asyncio.to_thread(handle.close)
            if received != size:
                raise ValidationFailed(f"received {received} bytes, the URL was signed for {size}")
            await asyncio.to_thread(os.replace, partial, path)
        finally:
            partial.unlink(missing_ok=True)


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
