"""Server-side user endpoints: upsert, read, delete, mint a token."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from litestar import delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from cariosan.db.users import UserRow
from cariosan.domain import privacy, users
from cariosan.domain.auth import Caller
from cariosan.domain.views import UserView
from cariosan.services import Services


class UserIn(msgspec.Struct, forbid_unknown_fields=False):
    name: str | msgspec.UnsetType | None = msgspec.UNSET
    image_url: str | msgspec.UnsetType | None = msgspec.UNSET
    role: Literal["user", "moderator", "admin"] | msgspec.UnsetType = msgspec.UNSET
    data: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class TokenIn(msgspec.Struct):
    ttl_seconds: int = 3600


class TokenOut(msgspec.Struct):
    token: str
    expires_at: datetime


def user_out(row: UserRow) -> UserView:
    return UserView(
        id=row.id,
        name=row.name,
        image_url=row.image_url,
        role=row.role,
        data=row.data,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_active_at=row.last_active_at,
        deleted_at=row.deleted_at,
    )


def _value(value: Any) -> Any:
    return None if value is msgspec.UNSET else value


@put("/v1/users/{user_id:str}", status_code=200, tags=["users"])
async def upsert_user(
    user_id: FromPath[str],
    data: JSONBody[UserIn],
    server: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> UserView:
    """Create or update a user (only the fields given change)."""
    fields = frozenset(
        f for f in ("name", "image_url", "role", "data") if getattr(data, f) is not msgspec.UNSET
    )
    row, _ = await users.upsert_user(
        services.db,
        server.workspace_id,
        user_id,
        name=_value(data.name),
        image_url=_value(data.image_url),
        role=_value(data.role),
        data=_value(data.data),
        fields_set=fields,
        limits=services.settings.limits,
    )
    return user_out(row)


@get("/v1/users/{user_id:str}", tags=["users"])
async def get_user(
    user_id: FromPath[str], server: NamedDependency[Caller], services: NamedDependency[Services]
) -> UserView:
    return user_out(await users.get_user(services.db, server.workspace_id, user_id))


@delete("/v1/users/{user_id:str}", status_code=204, tags=["users"])
async def delete_user(
    user_id: FromPath[str],
    server: NamedDependency[Caller],
    services: NamedDependency[Services],
    mode: FromQuery[Literal["anonymize", "hard"]] = "anonymize",
) -> None:
    """Anonymize (default: messages stay, the person's details go) or hard-delete a user."""
    await users.delete_user(
        services.db,
        services.hub,
        server.workspace_id,
        user_id,
        mode,
        services.blobs,
        services.settings.attachment_url_seconds,
    )


@post("/v1/users/{user_id:str}/revoke-tokens", status_code=204, tags=["users"])
async def revoke_tokens(
    user_id: FromPath[str], server: NamedDependency[Caller], services: NamedDependency[Services]
) -> None:
    """Refuse every token of the user issued before now (REST and WebSocket); its open sockets
    are closed with 4001 on every node. Tokens minted afterwards work."""
    await users.revoke_tokens(services.db, services.hub, server.workspace_id, user_id)


@post("/v1/users/{user_id:str}/token", status_code=200, tags=["users"])
async def create_token(
    user_id: FromPath[str],
    server: NamedDependency[Caller],
    services: NamedDependency[Services],
    data: JSONBody[TokenIn | None] = None,
) -> TokenOut:
    """Mint a user JWT for the client app (default lifetime one hour)."""
    ttl = (data or TokenIn()).ttl_seconds
    token, expires = await users.mint_token(
        services.db, services.settings.jwt_secret, server.workspace_id, user_id, ttl
    )
    return TokenOut(token=token, expires_at=datetime.fromtimestamp(expires, UTC))


# Privacy and the user directory (issue 14, points 6 and 7).


class UserPage(msgspec.Struct):
    users: list[UserView]
    next_cursor: str | None


@get("/v1/users", tags=["users"])
async def list_users(
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    q: FromQuery[str | None] = None,
    limit: FromQuery[int] = 50,
    cursor: FromQuery[str | None] = None,
) -> UserPage:
    """The user directory, by id. The backend sees every active user; a user (or the backend
    with `user_id`) itself and the users it shares a channel with. `q`: the id or the name
    starts with it, ignoring case."""
    found, next_cursor = await users.list_users(
        services.db, caller, q=q, limit=limit, cursor=cursor
    )
    return UserPage(users=[user_out(row) for row in found], next_cursor=next_cursor)


@get("/v1/users/{user_id:str}/export", tags=["users"])
async def export_user(
    user_id: FromPath[str], caller: NamedDependency[Caller], services: NamedDependency[Services]
) -> dict[str, Any]:
    """Everything stored about the user as one JSON document: profile, memberships, messages
    (replies and deleted ones too), reactions, read state, audit entries, and its attachments
    with download URLs valid 15 minutes. Recorded in the audit log (`user.exported`)."""
    return await privacy.export_for(services.db, services.blobs, services.settings, caller, user_id)


ROUTES = [
    upsert_user,
    get_user,
    delete_user,
    revoke_tokens,
    create_token,
    # Privacy and the user directory (issue 14, points 6 and 7).
    list_users,
    export_user,
]
