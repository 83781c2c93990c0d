"""Attachment files: S3 when configured, a local folder otherwise."""

from __future__ import annotations

from cariosan.blobs.local_store import LocalStore
from cariosan.blobs.s3_store import S3Store
from cariosan.blobs.store import BlobStore
from cariosan.config import Settings


def open_blobs(settings: Settings) -> BlobStore:
    if settings.s3_endpoint and settings.s3_access_key and settings.s3_secret_key:
        return S3Store(
            settings.s3_endpoint,
            settings.s3_bucket,
            settings.s3_access_key,
            settings.s3_secret_key,
            settings.s3_region,
        )
    return LocalStore(settings.storage_dir)


__all__ = ["BlobStore", "LocalStore", "S3Store", "open_blobs"]
