"""Workspaces (tenants) and their server-side API secrets."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from cariosan.db import workspaces as db
from cariosan.db.pool import Database
from cariosan.domain import audit
from cariosan.errors import NotFound, ValidationFailed

SECRET_PREFIX = "cs_"
_CHOSEN_SECRET = re.compile(r"cs_[A-Za-z0-9_-]{32,200}")
MAX_NAME_LENGTH = 200


@dataclass(frozen=True)
class NewWorkspace:
    id: uuid.UUID
    name: str
    api_secret: str


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


async def create_workspace(database: Database, name: str) -> NewWorkspace:
    """Create a workspace with its first API secret; the secret is returned once, stored hashed."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValidationFailed(f"workspace name must have 1 to {MAX_NAME_LENGTH} characters")
    secret = new_secret()
    workspace_id = uuid.uuid4()
    async with database.connection() as conn:
        await db.insert_workspace(conn, workspace_id, name, hash_secret(secret))
    return NewWorkspace(id=workspace_id, name=name, api_secret=secret)


async def list_workspaces(database: Database) -> list[db.WorkspaceRow]:
    async with database.connection() as conn:
        return await db.list_workspaces(conn)


@dataclass(frozen=True)
class RotatedSecret:
    workspace_id: uuid.UUID
    api_secret: str
    previous_valid_until: datetime | None


def check_chosen_secret(secret: str) -> str:
    """An operator-chosen secret must look like ours: `cs_` and 32+ URL-safe characters."""
    if not _CHOSEN_SECRET.fullmatch(secret):
        raise ValidationFailed(
            "an API secret is 'cs_' followed by at least 32 letters, digits, '-' or '_' "
            "(e.g. cs_$(openssl rand -hex 24))"
        )
    return secret


async def rotate_secret(
    database: Database,
    workspace_id: uuid.UUID,
    grace_seconds: float = 0,
    chosen: str | None = None,
) -> RotatedSecret:
    """A new API secret (`chosen`, or a generated one returned once). Without grace the old
    ones stop working at once.

    A chosen secret lets the backend be deployed with it first, then the rotation run: the
    order the operations page asks for."""
    if grace_seconds < 0:
        raise ValidationFailed("the grace period cannot be negative")
    secret = new_secret() if chosen is None else check_chosen_secret(chosen)
    async with database.transaction() as conn:
        if await db.get_workspace(conn, workspace_id) is None:
            raise NotFound(f"no such workspace: {workspace_id}")
        ends = await db.rotate_secret(conn, workspace_id, hash_secret(secret), grace_seconds)
        await audit.record(
            conn,
            workspace_id,
            actor=audit.OPERATOR,
            action=audit.SECRET_ROTATED,
            target=f"workspace:{workspace_id}",
            data={"grace_seconds": grace_seconds},
        )
    return RotatedSecret(workspace_id, secret, ends)
