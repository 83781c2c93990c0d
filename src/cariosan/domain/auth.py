"""Who is calling: a workspace's backend (API secret) or one of its users (JWT)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from cariosan.db import users as user_rows
from cariosan.db import workspaces as workspace_rows
from cariosan.db.pool import Database
from cariosan.domain import permissions, tokens
from cariosan.domain.ids import customer_id
from cariosan.domain.token_checks import TokenChecks
from cariosan.domain.workspaces import SECRET_PREFIX, hash_secret
from cariosan.errors import Forbidden, NotFound, Unauthorized, ValidationFailed


@dataclass(frozen=True)
class Caller:
    workspace_id: uuid.UUID
    # The user acted as: the token's subject, or `user_id` named by the backend; None when the
    # backend calls for itself.
    user_id: str | None
    is_server: bool
    role: str = "user"

    @property
    def is_admin(self) -> bool:
        """The backend and admin users."""
        return self.is_server or self.role == permissions.ADMIN

    @property
    def is_workspace_mod(self) -> bool:
        """The backend, admin and moderator users: they moderate any channel."""
        return self.is_server or self.role in (permissions.ADMIN, permissions.MODERATOR)

    def capacities(self) -> set[permissions.Who]:
        return permissions.workspace_capacities(self.is_server, self.role)

    def require_user(self) -> str:
        if self.user_id is None:
            raise ValidationFailed("user_id is required when calling with the API secret")
        return self.user_id


async def authenticate(
    database: Database,
    token_checks: TokenChecks,
    jwt_secrets: list[str],
    credential: str,
    act_as: str | None,
) -> Caller:
    if credential.startswith(SECRET_PREFIX):
        async with database.connection() as conn:
            workspace_id = await workspace_rows.workspace_for_secret(conn, hash_secret(credential))
            if workspace_id is None:
                raise Unauthorized("the API secret is not valid")
            if act_as is None:
                return Caller(workspace_id, None, is_server=True, role="server")
            user_id = customer_id("user_id", act_as)
            role = await user_rows.auth_lookup(conn, workspace_id, user_id)
        if role is None:
            raise NotFound(f"no such user: {user_id}")
        return Caller(workspace_id, user_id, is_server=True, role=role)

    claims = tokens.verify(credential, jwt_secrets)
    if act_as is not None and act_as != claims.user_id:
        raise Forbidden("a user token cannot act as another user")
    check = await token_checks.check((claims.workspace_id, claims.user_id))
    if check is None:
        raise Unauthorized("the token's user does not exist or was deleted")
    if not token_still_valid(claims, check.tokens_valid_after):
        raise Unauthorized("the token was revoked: get a new one")
    return Caller(claims.workspace_id, claims.user_id, is_server=False, role=check.role)


def token_still_valid(claims: tokens.TokenClaims, valid_after: datetime | None) -> bool:
    """Minted at or after the user's `tokens_valid_after` (both on the database clock)."""
    return valid_after is None or claims.issued_at_us >= tokens.micros(valid_after)
