"""The audit log: `GET /v1/audit` for the backend and admin users."""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromQuery

from cariosan.domain import audit
from cariosan.domain.audit import AuditEntry
from cariosan.domain.auth import Caller
from cariosan.services import Services


class AuditPage(msgspec.Struct):
    entries: list[AuditEntry]
    next_cursor: str | None


@get("/v1/audit", tags=["moderation"])
async def read_audit(
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    actor: FromQuery[str | None] = None,
    action: FromQuery[str | None] = None,
    limit: FromQuery[int] = 50,
    cursor: FromQuery[str | None] = None,
) -> AuditPage:
    """Moderation and admin actions, newest first; filter by `actor` or `action`."""
    entries, next_cursor = await audit.read_for(
        services.db, caller, actor=actor, action=action, limit=limit, cursor=cursor
    )
    return AuditPage(entries=entries, next_cursor=next_cursor)


ROUTES = [read_audit]
