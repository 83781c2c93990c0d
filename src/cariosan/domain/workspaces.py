"""Workspaces (tenants) and their server-side API secrets."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from cariosan.db import workspaces as db
from cariosan.db.pool import Database
from cariosan.errors import ValidationFailed

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
