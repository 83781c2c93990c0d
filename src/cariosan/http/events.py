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


@get("/v1/events", tags=["events"])
async def list_events(
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    after_seq: FromQuery[Annotated[int, Parameter(ge=0, le=MAX_SEQ)]] = 0,
    limit: FromQuery[Annotated[int, Parameter(ge=1, le=events.MAX_PAGE)]] = 100,
) -> EventPage:
    """Persisted events after `after_seq`, oldest first; resume from `latest_seq`."""
    page, latest = await events.events_since(services.db, caller, after_seq, limit)
    return EventPage(events=page, latest_seq=latest)


ROUTES = [list_events]
