"""Attachment files: an S3 bucket (MinIO in production) or a local folder (`cariosan dev`)."""

from __future__ import annotations

from typing import Protocol


class BlobStore(Protocol):
    kind: str

    async def ping(self) -> None:
        """Raise when the store cannot be used right now."""

    async def prepare(self) -> None:
        """Create the bucket or folder if it is missing (at boot)."""

    async def close(self) -> None: ...
