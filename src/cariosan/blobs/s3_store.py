"""Attachment files in an S3-compatible bucket (MinIO in production, SeaweedFS in tests).

The credentials live in the boto3 client only: they are never logged, and errors are reported
by class name, never with the request that carried them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from cariosan.blobs.health import HealthCache, expiry
from cariosan.blobs.store import ObjectInfo, PresignedDownload, PresignedUpload
from cariosan.errors import Unavailable

T = TypeVar("T")

_MISSING = ("404", "NoSuchKey", "NotFound", "NoSuchBucket")
_CHANGED = ("412", "PreconditionFailed")
COPY_TIMEOUT_SECONDS = 120.0


def content_disposition(filename: str) -> str:
    """`attachment` with the name in ASCII and, when needed, RFC 5987 UTF-8 form."""
    from urllib.parse import quote

    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace('"', "_")
    ascii_name = ascii_name.replace("?", "_").replace("\\", "_")
    if ascii_name == filename:
        return f'attachment; filename="{ascii_name}"'
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def make_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    region: str,
    *,
    read_timeout: float = 10,
    attempts: int = 2,
) -> Any:
    """A boto3 S3 client as Cariosan uses it: path-style addressing, SigV4, short timeouts
    (bulk copies such as backups ask for a longer read timeout and more attempts)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=3,
            read_timeout=read_timeout,
            retries={"max_attempts": attempts, "mode": "standard"},
        ),
    )


def is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in _MISSING


def _info(key: str, found: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(
        key,
        int(found["ContentLength"]),
        str(found["ETag"]).strip('"'),
        content_type=found.get("ContentType"),
    )


class S3Store:
    kind = "s3"

    def __init__(
        self, endpoint: str, bucket: str, access_key: str, secret_key: str, region: str
    ) -> None:
        self.bucket = bucket
        self.client: Any = make_client(endpoint, access_key, secret_key, region)
        # The store copies a whole file before it answers (about 3 s for 100 MiB measured on
        # SeaweedFS here): the short timeout of the other calls would cut big copies off.
        self._copier: Any = make_client(
            endpoint, access_key, secret_key, region, read_timeout=COPY_TIMEOUT_SECONDS
        )
        self._health = HealthCache(self._check)
        self._prepared = False

    async def _call(self, work: Callable[[], T]) -> T:
        """Run a blocking boto3 call in a thread; an unreachable store becomes Unavailable."""
        try:
            return await asyncio.to_thread(work)
        except BotoCoreError as exc:
            self._health.failed()
            raise Unavailable(
                f"the attachment store is unavailable ({exc.__class__.__name__})"
            ) from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if status >= 500 or code in (
                "AccessDenied",
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
            ):
                self._health.failed()
                raise Unavailable(
                    f"the attachment store is unavailable ({code or status})"
                ) from None
            raise

    async def ping(self) -> None:
        await self._call(lambda: self.client.head_bucket(Bucket=self.bucket))

    async def prepare(self) -> None:
        def create_if_missing() -> None:
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                    raise
                self.client.create_bucket(Bucket=self.bucket)

        await self._call(create_if_missing)
        self._prepared = True

    async def _check(self) -> None:
        # A store that was down at boot gets its bucket once it answers.
        if not self._prepared:
            await self.prepare()
        else:
            await self.ping()

    async def ensure_available(self) -> None:
        await self._health.ensure()

    async def presign_put(
        self, key: str, content_type: str, size: int, expires_in: int
    ) -> PresignedUpload:
        expires_at = expiry(expires_in)
        url = self.client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ContentType": content_type,
                "ContentLength": size,
            },
            ExpiresIn=expires_in,
        )
        # Both headers are covered by the signature: S3 refuses another type or length.
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        return PresignedUpload(url=url, headers=headers, expires_at=expires_at)

    async def presign_get(
        self, key: str, filename: str, content_type: str, expires_in: int
    ) -> PresignedDownload:
        expires_at = expiry(expires_in)
        url = self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentDisposition": content_disposition(filename),
                "ResponseContentType": content_type,
            },
            ExpiresIn=expires_in,
        )
        return PresignedDownload(url=url, expires_at=expires_at)

    async def head(self, key: str) -> ObjectInfo | None:
        def work() -> ObjectInfo | None:
            try:
                found = self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if is_missing(exc):
                    return None
                raise
            return _info(key, found)

        return await self._call(work)

    async def copy(self, source: str, target: str, expected: ObjectInfo) -> ObjectInfo | None:
        def work() -> ObjectInfo | None:
            # CopyObject is done by the store itself, so no byte passes through this server;
            # its If-Match makes a PUT that lands between the HEAD and the copy fail the copy
            # rather than slip in. (One CopyObject takes up to 5 GiB.)
            condition = {} if expected.etag is None else {"CopySourceIfMatch": f'"{expected.etag}"'}
            try:
                self._copier.copy_object(
                    Bucket=self.bucket,
                    Key=target,
                    CopySource={"Bucket": self.bucket, "Key": source},
                    MetadataDirective="COPY",
                    **condition,
                )
            except ClientError as exc:
                if is_missing(exc) or exc.response.get("Error", {}).get("Code") in _CHANGED:
                    return None
                raise
            # What the copy holds, as the store reports it (not what the copy call claimed).
            copied = _info(target, self.client.head_object(Bucket=self.bucket, Key=target))
            if copied.size != expected.size or (
                expected.etag is not None and copied.etag != expected.etag
            ):
                self.client.delete_object(Bucket=self.bucket, Key=target)
                return None
            return copied

        return await self._call(work)

    async def list_keys(self, prefix: str) -> list[str]:
        def work() -> list[str]:
            paginator = self.client.get_paginator("list_objects_v2")
            return [
                str(item["Key"])
                for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                for item in page.get("Contents", [])
            ]

        return await self._call(work)

    async def delete(self, key: str) -> None:
        await self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=key))

    async def close(self) -> None:
        return None
