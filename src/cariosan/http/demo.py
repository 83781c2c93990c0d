"""The demo chat app of `cariosan dev` at `/`, and the endpoint that gives it tokens.

Dev mode only: these routes exist when `Settings.demo_workspace_id` is set, which only
`cariosan dev` does. `POST /demo/token {"user_id"}` makes the user if needed and mints its JWT,
so anyone who reaches the page can be anyone: fine on a laptop, never on a server.

The app itself is built from `sdk/js/demo/` (TypeScript, on the SDK) into `demo/app.js` beside
this file, which the Python package ships: no Node at run time.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from litestar import MediaType, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, JSONBody

from cariosan.domain import users
from cariosan.services import Services

ASSETS = Path(__file__).parent / "demo"
_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
TOKEN_SECONDS = 12 * 3600


class DemoTokenIn(msgspec.Struct):
    user_id: str


class DemoTokenOut(msgspec.Struct):
    user_id: str
    token: str
    expires_at: datetime


@get("/", include_in_schema=False, media_type=MediaType.HTML, sync_to_thread=False)
def demo_page() -> Response[bytes]:
    return Response((ASSETS / "index.html").read_bytes(), headers={"Cache-Control": "no-cache"})


@get("/demo/{name:str}", include_in_schema=False, sync_to_thread=False)
def demo_asset(name: FromPath[str]) -> Response[bytes]:
    media_type = _TYPES.get(name)
    if media_type is None:
        raise NotFoundException(f"no demo file {name!r}")
    return Response(
        (ASSETS / name).read_bytes(), media_type=media_type, headers={"Cache-Control": "no-cache"}
    )


@post("/demo/token", include_in_schema=False, status_code=200)
async def demo_token(
    data: JSONBody[DemoTokenIn], services: NamedDependency[Services]
) -> DemoTokenOut:
    """A token for any user id of the dev workspace (the user is made on first sign-in)."""
    workspace = services.settings.demo_workspace_id
    assert workspace is not None  # the route is only mounted with it
    workspace_id = uuid.UUID(workspace)
    await users.upsert_user(
        services.db,
        workspace_id,
        data.user_id,
        name=None,
        image_url=None,
        role=None,
        data=None,
        fields_set=frozenset(),
        limits=services.settings.limits,
    )
    token, expires = await users.mint_token(
        services.db, services.settings.jwt_secret, workspace_id, data.user_id, TOKEN_SECONDS
    )
    return DemoTokenOut(
        user_id=data.user_id, token=token, expires_at=datetime.fromtimestamp(expires, UTC)
    )


ROUTES: list[Any] = [demo_page, demo_asset, demo_token]
