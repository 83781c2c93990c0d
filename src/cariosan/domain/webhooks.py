"""Webhook endpoints of a workspace and their delivery log: register, list, delete, rotate the
signing secret, list deliveries, replay one.

Deliveries are created by the event log itself (`db/events.append_event`) and sent by the worker
(`webhooks/worker.py`); nothing here sends anything.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from cariosan.db import webhooks as rows
from cariosan.db.pool import Database
from cariosan.domain import audit, cursors
from cariosan.domain.ids import server_id
from cariosan.errors import NotFound, ValidationFailed
from cariosan.webhooks.guard import ip_literal, is_public
from cariosan.webhooks.signing import new_secret

# The persisted event types (API.md); "*" subscribes to every one, new ones included.
EVENT_TYPES = frozenset(
    {
        "message.new",
        "message.updated",
        "message.deleted",
        "reaction.new",
        "reaction.deleted",
        "member.added",
        "member.removed",
        "member.updated",
        "channel.created",
        "channel.updated",
        "channel.deleted",
        "read.updated",
        "audit.recorded",
        # Bans (issue 14, point 2).
        "user.banned",
        "user.unbanned",
        # Flags (issue 14 point 4): for moderators and webhooks only.
        "message.flagged",
        "flag.resolved",
        # Pins and slow mode (issue 14 point 5).
        "message.pinned",
        "message.unpinned",
    }
)
STATUSES = ("pending", "succeeded", "failed")
MAX_URL = 2048
MAX_ENDPOINTS = 100
MAX_PAGE = 200
# After a rotation the old secret keeps signing, next to the new one, for a day.
ROTATION_GRACE_SECONDS = 24 * 3600


def check_url(url: str, *, allow_private: bool) -> str:
    """An http(s) URL with a host and no credentials; an IP literal must be public unless
    private targets are allowed (host names are checked again at every send)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise ValidationFailed(f"url must have 1 to {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValidationFailed("url is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationFailed("url must start with http:// or https://")
    if not parts.hostname:
        raise ValidationFailed("url must name a host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValidationFailed("url must not contain credentials")
    if port == 0:
        raise ValidationFailed("url has an invalid port")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValidationFailed("url must not contain whitespace or control characters")
    literal = ip_literal(parts.hostname)
    if literal is not None and not allow_private and not is_public(literal):
        raise ValidationFailed(
            "url points to a private, loopback or link-local address "
            "(allowed only with CARIOS_WEBHOOK_ALLOW_PRIVATE=true)"
        )
    return url


def check_events(events: list[str]) -> list[str]:
    if not isinstance(events, list) or not events:
        raise ValidationFailed('events must list event types, or be ["*"]')
    unknown = [e for e in events if e != "*" and e not in EVENT_TYPES]
    if unknown:
        raise ValidationFailed(
            f"unknown event type {unknown[0]!r}: use {', '.join(sorted(EVENT_TYPES))} or *"
        )
    return ["*"] if "*" in events else sorted(set(events))


async def register_endpoint(
    database: Database,
    workspace_id: uuid.UUID,
    url: str,
    events: list[str],
    *,
    allow_private: bool,
) -> tuple[rows.EndpointRow, str]:
    """A new endpoint and its signing secret (returned this once)."""
    url = check_url(url, allow_private=allow_private)
    events = check_events(events)
    secret = new_secret()
    async with database.transaction() as conn:
        if len(await rows.list_endpoints(conn, workspace_id)) >= MAX_ENDPOINTS:
            raise ValidationFailed(f"a workspace may have at most {MAX_ENDPOINTS} webhooks")
        endpoint = await rows.insert_endpoint(conn, workspace_id, uuid.uuid4(), url, events, secret)
    return endpoint, secret


async def list_endpoints(database: Database, workspace_id: uuid.UUID) -> list[rows.EndpointRow]:
    async with database.connection() as conn:
        return await rows.list_endpoints(conn, workspace_id)


async def delete_endpoint(database: Database, workspace_id: uuid.UUID, endpoint_id: str) -> None:
    key = server_id("webhook", endpoint_id)
    async with database.connection() as conn:
        if not await rows.delete_endpoint(conn, workspace_id, key):
            raise NotFound("no such webhook")


async def rotate_secret(
    database: Database, workspace_id: uuid.UUID, endpoint_id: str
) -> tuple[rows.EndpointRow, str]:
    """A new signing secret; the old one signs too (a second signature) for 24 hours."""
    key = server_id("webhook", endpoint_id)
    secret = new_secret()
    async with database.transaction() as conn:
        endpoint = await rows.rotate_secret(conn, workspace_id, key, secret, ROTATION_GRACE_SECONDS)
        if endpoint is None:
            raise NotFound("no such webhook")
        await audit.record(
            conn,
            workspace_id,
            actor=audit.BACKEND,
            action=audit.SECRET_ROTATED,
            target=f"webhook:{key}",
        )
    return endpoint, secret


async def list_deliveries(
    database: Database,
    workspace_id: uuid.UUID,
    endpoint_id: str,
    *,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[rows.DeliveryRow], str | None]:
    """A page of the endpoint's deliveries, newest first, and the cursor of the next page."""
    key = server_id("webhook", endpoint_id)
    if status is not None and status not in STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}")
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}")
    before = cursors.decode_with_uuid(cursor) if cursor else None
    async with database.connection() as conn:
        if not await rows.endpoint_exists(conn, workspace_id, key):
            raise NotFound("no such webhook")
        page = await rows.list_deliveries(
            conn, workspace_id, key, status=status, limit=limit + 1, before=before
        )
    more = len(page) > limit
    page = page[:limit]
    return page, cursors.encode(page[-1].created_at, str(page[-1].id)) if more else None


async def replay_delivery(
    database: Database, workspace_id: uuid.UUID, endpoint_id: str, delivery_id: str
) -> None:
    """Send the delivery again, as soon as a worker gets to it, with the same id and body."""
    key = server_id("webhook", endpoint_id)
    delivery = server_id("delivery", delivery_id)
    async with database.transaction() as conn:
        if not await rows.replay_delivery(conn, workspace_id, key, delivery):
            raise NotFound("no such delivery")
