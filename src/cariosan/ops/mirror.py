"""`cariosan attachments mirror`: copy the attachment store to another bucket or a folder.

Like `mc mirror`: only what changed is copied (same key, size and checksum means unchanged),
and with `remove` what the source no longer has is deleted from the target. A second run with
nothing changed copies nothing.

Checksums: S3 lists an ETag per object (the MD5 for single-part uploads); a folder has none, so
a folder target keeps `.cariosan-mirror.json` with the source checksum of every file it wrote
(trusted while the file's size and mtime are unchanged, else the file's MD5 is computed). An
S3 target whose ETag differs from the source's (a multipart upload) is compared by the source
checksum the mirror stored in the object's metadata.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from cariosan.blobs.local_store import file_md5
from cariosan.blobs.s3_store import is_missing, make_client

MANIFEST = ".cariosan-mirror.json"
SOURCE_ETAG_META = "cariosan-source-etag"
CHUNK = 1 << 20


class MirrorError(Exception):
    """A target or source that cannot be used; the message is the one line to show."""


@dataclass(frozen=True)
class Entry:
    key: str
    size: int
    etag: str | None


@dataclass
class MirrorReport:
    copied: int = 0
    skipped: int = 0
    removed: int = 0
    failed: int = 0
    bytes_copied: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "copied": self.copied,
            "skipped": self.skipped,
            "removed": self.removed,
            "failed": self.failed,
            "bytes_copied": self.bytes_copied,
            "errors": self.errors,
        }


class Side(Protocol):
    description: str

    def entries(self) -> dict[str, Entry]: ...

    def open(self, key: str) -> contextlib.AbstractContextManager[IO[bytes]]: ...

    def write(
        self, key: str, data: IO[bytes], entry: Entry, progress: Callable[[int], None]
    ) -> None: ...

    def same(self, source: Entry, target: Entry) -> bool: ...

    def delete(self, key: str) -> None: ...

    def finish(self) -> None: ...


class _Counting:
    """A read-only stream that reports how many bytes went through."""

    def __init__(self, inner: IO[bytes], progress: Callable[[int], None]) -> None:
        self._inner = inner
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        chunk = self._inner.read(size)
        if chunk:
            self._progress(len(chunk))
        return chunk


class S3Side:
    def __init__(self, client: Any, bucket: str, prefix: str = "", *, create: bool = False) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.description = f"s3://{bucket}/{self.prefix}"
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            if not (create and is_missing(exc)):
                raise MirrorError(f"bucket {bucket}: {_s3_reason(exc)}") from None
            client.create_bucket(Bucket=bucket)
        except BotoCoreError as exc:
            raise MirrorError(f"bucket {bucket}: {exc.__class__.__name__}") from None

    def entries(self) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) :]
                if key and not key.endswith("/"):
                    found[key] = Entry(key, int(item["Size"]), str(item["ETag"]).strip('"'))
        return found

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[IO[bytes]]:
        body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
        try:
            yield body
        finally:
            body.close()

    def write(
        self, key: str, data: IO[bytes], entry: Entry, progress: Callable[[int], None]
    ) -> None:
        extra = {"Metadata": {SOURCE_ETAG_META: entry.etag}} if entry.etag else {}
        self.client.upload_fileobj(
            _Counting(data, progress), self.bucket, self.prefix + key, ExtraArgs=extra
        )

    def same(self, source: Entry, target: Entry) -> bool:
        if source.size != target.size:
            return False
        if source.etag is None or source.etag == target.etag:
            return source.etag is not None
        # A multipart copy has another ETag: compare with the checksum it was written from.
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + target.key)
        except ClientError:
            return False
        return bool(head.get("Metadata", {}).get(SOURCE_ETAG_META) == source.etag)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def finish(self) -> None:
        return None


class FolderSide:
    """A folder: a source (the dev store) or a target, which keeps the manifest of checksums."""

    def __init__(self, root: Path, *, create: bool = False) -> None:
        if create:
            root.mkdir(parents=True, exist_ok=True)
        if not root.is_dir():
            raise MirrorError(f"{root} is not a folder")
        self.root = root.resolve()
        self.description = str(self.root)
        self._manifest_path = self.root / MANIFEST
        self._manifest: dict[str, dict[str, Any]] = {}
        if self._manifest_path.exists():
            with contextlib.suppress(ValueError, OSError):
                loaded = json.loads(self._manifest_path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self._manifest = loaded

    def path_of(self, key: str) -> Path:
        parts = key.split("/")
        if any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
            raise MirrorError(f"refusing the unsafe key {key!r}")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise MirrorError(f"refusing the key {key!r}: it leaves {self.root}")
        return path

    def _files(self) -> Iterator[tuple[str, os.stat_result]]:
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):  # the manifest, partial uploads and copies
                    continue
                path = Path(folder) / name
                yield path.relative_to(self.root).as_posix(), path.stat()

    def entries(self) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        for key, stat in self._files():
            known = self._manifest.get(key)
            if (
                known
                and known.get("size") == stat.st_size
                and known.get("mtime_ns") == stat.st_mtime_ns
            ):
                etag = known.get("etag")
            else:
                etag = file_md5(self.root / key)
            found[key] = Entry(key, stat.st_size, etag if isinstance(etag, str) else None)
        return found

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[IO[bytes]]:
        with self.path_of(key).open("rb") as handle:
            yield handle

    def write(
        self, key: str, data: IO[bytes], entry: Entry, progress: Callable[[int], None]
    ) -> None:
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            with partial.open("wb") as out:
                while chunk := data.read(CHUNK):
                    out.write(chunk)
                    progress(len(chunk))
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        stat = path.stat()
        self._manifest[key] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "etag": entry.etag,
        }

    def same(self, source: Entry, target: Entry) -> bool:
        return source.size == target.size and source.etag is not None and source.etag == target.etag

    def delete(self, key: str) -> None:
        path = self.path_of(key)
        path.unlink(missing_ok=True)
        self._manifest.pop(key, None)
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def finish(self) -> None:
        partial = self._manifest_path.with_name(MANIFEST + ".part")
        partial.write_text(json.dumps(self._manifest, sort_keys=True), encoding="utf-8")
        os.replace(partial, self._manifest_path)


def _s3_reason(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


@dataclass(frozen=True)
class S3Target:
    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str
    bucket: str
    prefix: str


def parse_target(
    target: str,
    *,
    endpoint: str | None,
    access_key: str | None,
    secret_key: str | None,
    region: str | None,
    defaults: Any,
) -> S3Target | Path:
    """`s3://bucket/prefix` (endpoint and keys default to the source's) or a folder path."""
    if not target.startswith("s3://"):
        if "://" in target:
            raise MirrorError(f"unsupported target {target!r}: use s3://bucket/prefix or a folder")
        return Path(target)
    parts = urlsplit(target)
    if not parts.netloc:
        raise MirrorError("the target s3://bucket/prefix names no bucket")
    endpoint = endpoint or defaults.s3_endpoint
    access_key = access_key or defaults.s3_access_key
    secret_key = secret_key or defaults.s3_secret_key
    if not (endpoint and access_key and secret_key):
        raise MirrorError(
            "the S3 target needs --endpoint, --access-key and --secret-key "
            "(they default to CARIOS_S3_ENDPOINT and its keys, which are not set)"
        )
    return S3Target(
        endpoint,
        access_key,
        secret_key,
        region or defaults.s3_region,
        parts.netloc,
        parts.path.strip("/"),
    )


def open_source(settings: Any) -> Side:
    """The deployment's attachment store, as configured."""
    if settings.s3_endpoint and settings.s3_access_key and settings.s3_secret_key:
        client = make_client(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key,
            settings.s3_region,
        )
        return S3Side(client, settings.s3_bucket)
    if not Path(settings.storage_dir).is_dir():
        raise MirrorError(f"the attachment folder {settings.storage_dir} does not exist")
    return FolderSide(Path(settings.storage_dir))


def open_target(target: S3Target | Path) -> Side:
    if isinstance(target, Path):
        return FolderSide(target, create=True)
    client = make_client(target.endpoint, target.access_key, target.secret_key, target.region)
    return S3Side(client, target.bucket, target.prefix, create=True)


class Progress(Protocol):
    def planned(self, files: int, total_bytes: int) -> None: ...

    def advance(self, count: int) -> None: ...


def mirror(
    source: Side,
    target: Side,
    *,
    remove: bool = False,
    progress: Progress | None = None,
    workers: int = 4,
) -> MirrorReport:
    _refuse_overlap(source, target)
    report = MirrorReport()
    wanted = source.entries()
    present = target.entries()
    to_copy: list[Entry] = []
    for key, entry in sorted(wanted.items()):
        existing = present.get(key)
        if existing is not None and target.same(entry, existing):
            report.skipped += 1
        else:
            to_copy.append(entry)
    if progress is not None:
        progress.planned(len(to_copy), sum(e.size for e in to_copy))

    def copy(entry: Entry) -> int:
        with source.open(entry.key) as data:
            target.write(entry.key, data, entry, progress.advance if progress else _ignore)
        return entry.size

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {pool.submit(copy, entry): entry for entry in to_copy}
            for future in as_completed(futures):
                entry = futures[future]
                try:
                    report.bytes_copied += future.result()
                    report.copied += 1
                except (OSError, ClientError, BotoCoreError, MirrorError) as exc:
                    report.failed += 1
                    report.errors.append(f"{entry.key}: {_reason(exc)}")
        if remove:
            for key in sorted(set(present) - set(wanted)):
                try:
                    target.delete(key)
                    report.removed += 1
                except (OSError, ClientError, BotoCoreError, MirrorError) as exc:
                    report.failed += 1
                    report.errors.append(f"{key}: {_reason(exc)}")
    finally:
        target.finish()
    return report


def _refuse_overlap(source: Side, target: Side) -> None:
    """A target inside the source would be copied into itself on every run."""
    if isinstance(source, S3Side) and isinstance(target, S3Side):
        same_store = source.client.meta.endpoint_url == target.client.meta.endpoint_url
        if same_store and source.bucket == target.bucket:
            raise MirrorError("the target is inside the source bucket: use another bucket")
    if (
        isinstance(source, FolderSide)
        and isinstance(target, FolderSide)
        and (target.root.is_relative_to(source.root) or source.root.is_relative_to(target.root))
    ):
        raise MirrorError("the target folder overlaps the attachment folder")


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return _s3_reason(exc)
    if isinstance(exc, MirrorError):
        return str(exc)
    return exc.__class__.__name__


def _ignore(_: int) -> None:
    return None
