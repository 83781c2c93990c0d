"""Attachment files: S3 when configured, a local folder otherwise."""

from __future__ import annotations

from cariosan.blobs.local_store import LocalStore, derive_signing_key
from cariosan.blobs.s3_store import S3Store
from cariosan.blobs.store import BlobStore, ObjectInfo, PresignedDownload, PresignedUpload
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
    return LocalStore(
        settings.storage_dir,
        settings.public_url,
        derive_signing_key(settings.jwt_secret) if settings.jwt_secret else b"",
    )


__all__ = [
    "BlobStore",
    "LocalStore",
    "ObjectInfo",
    "PresignedDownload",
    "PresignedUpload",
    "S3Store",
    "open_blobs",
]
