"""`GET /v1/events`: the same events the WebSocket carries, for catch-up over REST."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromQuery, Parameter

from cariosan.domain import events
from cariosan.domain.auth import Caller
from cariosan.domain.ids import MAX_SEQ
from cariosan.services import Services


class EventPage(msgspec.Struct):
    events: list[dict[str, Any]]
    latest_seq: int
    # More events follow: ask again with `after_seq=latest_seq` (a page also ends early when
    # it reaches the byte budget, CARIOS_EVENTS_PAGE_BYTES).
    has_more: bool


@get("/v1/events", tags=["events"])
async def list_events(
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    after_seq: FromQuery[Annotated[int, Parameter(ge=0, le=MAX_SEQ)]] = 0,
    limit: FromQuery[Annotated[int, Parameter(ge=1, le=events.MAX_PAGE)]] = 100,
) -> EventPage:
    """Persisted events after `after_seq`, oldest first; resume from `latest_seq`.

    `410 EVENTS_EXPIRED` when `after_seq` is older than the kept log: refetch channels and
    history, then continue from the error's `latest_seq`."""
    page = await events.events_since(
        services.db, caller, after_seq, limit, services.settings.limits.events_page_bytes
    )
    return EventPage(events=page.events, latest_seq=page.latest_seq, has_more=page.has_more)


ROUTES = [list_events]
