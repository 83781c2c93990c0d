"""Server-side webhook endpoints: register, list, delete, rotate the secret, the delivery log,
replay."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec
from litestar import delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from cariosan.db.webhooks import DeliveryRow, EndpointRow
from cariosan.domain import webhooks
from cariosan.domain.auth import Caller
from cariosan.services import Services


class WebhookIn(msgspec.Struct):
    url: str
    events: list[str]


class WebhookOut(msgspec.Struct):
    id: str
    url: str
    events: list[str]
    # False once the receiver answered 410 Gone (a replay enables it again).
    enabled: bool
    disabled_reason: str | None
    created_at: datetime


class WebhookWithSecret(msgspec.Struct):
    id: str
    url: str
    events: list[str]
    # `whsec_` + base64: shown only here; verify the `webhook-signature` header with it.
    secret: str
    enabled: bool
    created_at: datetime


class WebhookList(msgspec.Struct):
    webhooks: list[WebhookOut]


class DeliveryOut(msgspec.Struct):
    id: str
    event_type: str
    seq: int
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime


class DeliveryPage(msgspec.Struct):
    deliveries: list[DeliveryOut]
    next_cursor: str | None


def webhook_out(row: EndpointRow) -> WebhookOut:
    return WebhookOut(
        id=str(row.id),
        url=row.url,
        events=row.events,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        created_at=row.created_at,
    )


def with_secret(row: EndpointRow, secret: str) -> WebhookWithSecret:
    return WebhookWithSecret(
        id=str(row.id),
        url=row.url,
        events=row.events,
        secret=secret,
        enabled=row.enabled,
        created_at=row.created_at,
    )


def delivery_out(row: DeliveryRow) -> DeliveryOut:
    return DeliveryOut(
        id=str(row.id),
        event_type=row.event_type,
        seq=row.seq,
        status=row.status,
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        # Only a pending delivery has a next attempt.
        next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
        created_at=row.created_at,
    )


@post("/v1/webhooks", status_code=201, tags=["webhooks"])
async def create_webhook(
    data: JSONBody[WebhookIn], server: NamedDependency[Caller], services: NamedDependency[Services]
) -> WebhookWithSecret:
    """Register an endpoint for event types (or `["*"]`); the signing secret is shown only here."""
    row, secret = await webhooks.register_endpoint(
        services.db,
        server.workspace_id,
        data.url,
        data.events,
        allow_private=services.settings.webhook_allow_private,
    )
    return with_secret(row, secret)


@get("/v1/webhooks", tags=["webhooks"])
async def list_webhooks(
    server: NamedDependency[Caller], services: NamedDependency[Services]
) -> WebhookList:
    rows = await webhooks.list_endpoints(services.db, server.workspace_id)
    return WebhookList(webhooks=[webhook_out(r) for r in rows])


@delete("/v1/webhooks/{webhook_id:str}", status_code=204, tags=["webhooks"])
async def delete_webhook(
    webhook_id: FromPath[str], server: NamedDependency[Caller], services: NamedDependency[Services]
) -> None:
    """Remove the endpoint and its delivery log; nothing more is sent to it."""
    await webhooks.delete_endpoint(services.db, server.workspace_id, webhook_id)


@post("/v1/webhooks/{webhook_id:str}/rotate-secret", status_code=200, tags=["webhooks"])
async def rotate_webhook_secret(
    webhook_id: FromPath[str], server: NamedDependency[Caller], services: NamedDependency[Services]
) -> WebhookWithSecret:
    """A new signing secret; for 24 hours requests carry signatures with both old and new."""
    row, secret = await webhooks.rotate_secret(services.db, server.workspace_id, webhook_id)
    return with_secret(row, secret)


@get("/v1/webhooks/{webhook_id:str}/deliveries", tags=["webhooks"])
async def list_deliveries(
    webhook_id: FromPath[str],
    server: NamedDependency[Caller],
    services: NamedDependency[Services],
    status: FromQuery[Literal["pending", "succeeded", "failed"] | None] = None,
    limit: FromQuery[int] = 50,
    cursor: FromQuery[str | None] = None,
) -> DeliveryPage:
    """The endpoint's deliveries, newest first; pass `next_cursor` back as `cursor`."""
    rows, next_cursor = await webhooks.list_deliveries(
        services.db, server.workspace_id, webhook_id, status=status, limit=limit, cursor=cursor
    )
    return DeliveryPage(deliveries=[delivery_out(r) for r in rows], next_cursor=next_cursor)


class ReplayAccepted(msgspec.Struct):
    """A replay was queued: the delivery is pending again, due now."""

    delivery_id: str
    status: Literal["pending"]


@post(
    "/v1/webhooks/{webhook_id:str}/deliveries/{delivery_id:str}/replay",
    status_code=202,
    tags=["webhooks"],
)
async def replay_delivery(
    webhook_id: FromPath[str],
    delivery_id: FromPath[str],
    server: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> ReplayAccepted:
    """Send the delivery again (same `webhook-id` and body), due now with a fresh schedule."""
    await webhooks.replay_delivery(services.db, server.workspace_id, webhook_id, delivery_id)
    return ReplayAccepted(delivery_id=delivery_id, status="pending")


ROUTES = [
    create_webhook,
    list_webhooks,
    delete_webhook,
    rotate_webhook_secret,
    list_deliveries,
    replay_delivery,
]
