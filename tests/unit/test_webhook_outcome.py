"""A webhook attempt whose outcome cannot be stored because PostgreSQL just went away is an
expected outage (warning; the lease runs out and it is sent again under the same webhook-id),
not a crashed delivery logged as an error."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog

from cariosan.config import Settings
from cariosan.db import webhooks as rows
from cariosan.errors import Unavailable
from cariosan.obs.metrics import Metrics
from cariosan.webhooks.worker import WebhookWorker
from tests.conftest import JWT_SECRET


class _GoneDatabase:
    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        raise Unavailable("PostgreSQL is unavailable: ConnectionRefusedError")
        yield  # pragma: no cover - makes this a generator


async def test_an_outcome_lost_to_a_database_outage_is_a_warning(tmp_path: Path) -> None:
    settings = Settings(
        database_url="postgresql://unused", jwt_secret=JWT_SECRET, storage_dir=tmp_path
    )
    worker = WebhookWorker(_GoneDatabase(), settings, Metrics())  # type: ignore[arg-type]

    async def sent(claim: rows.Claim) -> tuple[int | None, str | None, float | None]:
        return 200, None, None

    worker.send = sent  # type: ignore[method-assign]
    claim = rows.Claim(
        workspace_id=uuid.uuid4(),
        id=uuid.uuid4(),
        endpoint_id=uuid.uuid4(),
        url="http://127.0.0.1:9/hook",
        secrets=["whsec_" + "A" * 32],
        body="{}",
        attempts=1,
        lease=uuid.uuid4(),
    )
    try:
        with structlog.testing.capture_logs() as logs:
            await worker.deliver(claim)  # raised Unavailable: the task "crashed" (an error log)
    finally:
        await worker.stop()
    [entry] = [e for e in logs if e["event"] == "webhook_outcome_not_recorded"]
    assert entry["log_level"] == "warning" and entry["delivery_id"] == str(claim.id)
