"""Workspaces (tenants) and their server-side API secrets."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from cariosan.db import workspaces as db
from cariosan.db.pool import Database
from cariosan.errors import NotFound, ValidationFailed

SECRET_PREFIX = "cs_"
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


async def rotate_secret(
    database: Database, workspace_id: uuid.UUID, grace_seconds: float = 0
) -> RotatedSecret:
    """A new API secret, returned once. Without grace the old ones stop working at once."""
    if grace_seconds < 0:
        raise ValidationFailed("the grace period cannot be negative")
    secret = new_secret()
    async with database.connection() as conn:
        if await db.get_workspace(conn, workspace_id) is None:
            raise NotFound(f"no such workspace: {workspace_id}")
        ends = await db.rotate_secret(conn, workspace_id, hash_secret(secret), grace_seconds)
    return RotatedSecret(workspace_id, secret, ends)
