"""Attachment endpoints: sign an upload, sign a download; and, for the local store of
`cariosan dev`, the routes that serve those signed URLs (`/v1/blobs/...`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec
from litestar import MediaType, Request, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import File

from cariosan.blobs.local_store import LocalStore
from cariosan.domain import attachments
from cariosan.domain.auth import Caller
from cariosan.errors import Forbidden, NotFound, ValidationFailed
from cariosan.services import Services


class UploadIn(msgspec.Struct):
    channel_id: str
    filename: str
    content_type: str
    size: int
    user_id: str | None = None


class UploadOut(msgspec.Struct):
    attachment_id: str
    upload_url: str
    upload_method: Literal["PUT"]
    upload_headers: dict[str, str]
    expires_at: datetime


class DownloadOut(msgspec.Struct):
    url: str
    expires_at: datetime
    filename: str
    content_type: str
    size: int


@post("/v1/attachments", status_code=201, tags=["attachments"])
async def create_attachment(
    data: JSONBody[UploadIn], caller: NamedDependency[Caller], services: NamedDependency[Services]
) -> UploadOut:
    """Record a pending attachment and return a presigned PUT (valid 15 minutes) to upload it
    straight to the store, with the headers the upload must carry."""
    created = await attachments.create_upload(
        services.db,
        services.blobs,
        services.settings,
        caller,
        channel_id=data.channel_id,
        filename=data.filename,
        content_type=data.content_type,
        size=data.size,
    )
    return UploadOut(
        attachment_id=str(created.attachment_id),
        upload_url=created.upload.url,
        upload_method="PUT",
        upload_headers=created.upload.headers,
        expires_at=created.upload.expires_at,
    )


@get("/v1/attachments/{attachment_id:str}", tags=["attachments"])
async def get_attachment(
    attachment_id: FromPath[str],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> DownloadOut:
    """A presigned GET (valid 15 minutes), for members of the attachment's channel only."""
    found = await attachments.download(
        services.db, services.blobs, services.settings, caller, attachment_id
    )
    return DownloadOut(
        url=found.url,
        expires_at=found.expires_at,
        filename=found.filename,
        content_type=found.content_type,
        size=found.size,
    )


# -- the local store's signed URLs (`cariosan dev`): no auth header, the signature is the auth --


def _local_store(services: Services) -> LocalStore:
    if not isinstance(services.blobs, LocalStore):
        raise NotFound("no such route")
    return services.blobs


def _key(path: str) -> str:
    return path.removeprefix("/")


@put(
    "/v1/blobs/{key:path}",
    status_code=200,
    include_in_schema=False,
    request_max_body_size=None,
)
async def upload_local_blob(
    key: FromPath[str],
    expires: FromQuery[int],
    signature: FromQuery[str],
    request: Request[Any, Any, Any],
    services: NamedDependency[Services],
) -> Response[bytes]:
    """Receive an upload signed by `POST /v1/attachments` (exactly the signed type and size).
    Answers as S3 does: 200 with an empty body."""
    store = _local_store(services)
    content_type = request.headers.get("content-type", "")
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise ValidationFailed("the upload must carry Content-Length")
    size = int(length)
    path = store.verify("PUT", _key(key), expires, signature, content_type, size)
    await store.receive(path, size, request.stream())
    return Response(content=b"", status_code=200, media_type=MediaType.TEXT)


@get("/v1/blobs/{key:path}", include_in_schema=False)
async def download_local_blob(
    key: FromPath[str],
    expires: FromQuery[int],
    signature: FromQuery[str],
    services: NamedDependency[Services],
) -> File:
    """Serve a download signed by `GET /v1/attachments/{id}`."""
    store = _local_store(services)
    path = store.verify("GET", _key(key), expires, signature)
    if not path.is_file():
        raise NotFound("no such file")
    if not path.is_relative_to(store.root.resolve()):  # path_for checked it; belt and braces
        raise Forbidden("no such file")
    return File(
        path=path,
        filename=path.name,
        content_disposition_type="attachment",
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        },
    )


ROUTES = [create_attachment, get_attachment, upload_local_blob, download_local_blob]
