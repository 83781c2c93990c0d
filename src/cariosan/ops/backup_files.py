"""The attachment files as backup and restore see them: every object of the configured bucket,
or every file of the local attachment folder, listed, copied out and copied back.

Synchronous on purpose: the CLI runs it in a plain loop with a progress bar.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from cariosan.config import Settings


class UnsafeKey(Exception):
    """A key that cannot be a relative path inside a folder (empty part, `.` or `..`)."""


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or "\0" in p or "\\" in p for p in parts):
        raise UnsafeKey(f"attachment key {key!r} is not a safe relative path")
    return key


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int


class FileStore(Protocol):
    description: str

    def list(self) -> Iterator[StoredFile]: ...

    def download(self, key: str, target: Path) -> None: ...

    def upload(self, source: Path, key: str) -> None: ...

    def delete(self, key: str) -> None: ...


class FolderFiles:
    """The local attachment folder (`CARIOS_STORAGE_DIR`). Hidden files (uploads in progress,
    `.name.part`) are not attachments and are skipped."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = f"folder {root}"

    def list(self) -> Iterator[StoredFile]:
        if not self.root.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                yield StoredFile(key, path.stat().st_size)

    def download(self, key: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.root / check_key(key), target)

    def upload(self, source: Path, key: str) -> None:
        path = self.root / check_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.restore.part")
        shutil.copyfile(source, partial)
        os.replace(partial, path)

    def delete(self, key: str) -> None:
        (self.root / check_key(key)).unlink(missing_ok=True)


class BucketFiles:
    """Every object of the S3 bucket (MinIO in the compose stack)."""

    def __init__(self, client: Any, bucket: str, endpoint: str) -> None:
        self.client = client
        self.bucket = bucket
        self.description = f"bucket {bucket} at {endpoint}"

    def list(self) -> Iterator[StoredFile]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                yield StoredFile(item["Key"], int(item["Size"]))

    def download(self, key: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as handle:
            self.client.download_fileobj(self.bucket, key, handle)

    def upload(self, source: Path, key: str) -> None:
        with source.open("rb") as handle:
            self._put(handle, key)

    def _put(self, handle: BinaryIO, key: str) -> None:
        self.client.upload_fileobj(handle, self.bucket, key)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            self.client.create_bucket(Bucket=self.bucket)


def open_files(settings: Settings) -> FileStore:
    """The configured attachment store: S3 when `CARIOS_S3_ENDPOINT` is set, else the folder."""
    if settings.s3_endpoint and settings.s3_access_key and settings.s3_secret_key:
        from cariosan.blobs.s3_store import make_client

        client = make_client(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key,
            settings.s3_region,
            read_timeout=60,
            attempts=3,
        )
        return BucketFiles(client, settings.s3_bucket, settings.s3_endpoint)
    return FolderFiles(settings.storage_dir)
