"""The composition root: the stores and observability objects one server process uses.

Built once from the settings and handed to `http/` (and later `realtime/` and the webhook worker).
Boot runs in the background so that `/healthz` answers at once and `/readyz` says 503 until
PostgreSQL is reachable and migrated.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from cariosan.blobs import BlobStore, open_blobs
from cariosan.config import Settings
from cariosan.db import schema
from cariosan.db.bootstrap import prepare_database
from cariosan.db.pool import Database, DatabaseUnreachable
from cariosan.domain.attachments import CleanupJob
from cariosan.domain.jwt_keys import KeyRing
from cariosan.domain.ratelimit import AuthFailures
from cariosan.domain.send_batch import SendBatcher
from cariosan.domain.token_checks import TokenChecks
from cariosan.ephemeral import EphemeralStore, open_ephemeral
from cariosan.jobs.retention import RetentionJob
from cariosan.jobs.sequencer import Sequencer
from cariosan.obs.logging import get_logger
from cariosan.obs.metrics import Metrics
from cariosan.realtime.bus import Bus, LocalBus, RedisBus
from cariosan.realtime.connection import SocketQuota
from cariosan.realtime.hub import Hub
from cariosan.realtime.presence import Presence
from cariosan.realtime.typing import TypingRelay
from cariosan.webhooks.worker import WebhookWorker

log = get_logger("cariosan.boot")


class BootFailed(Exception):
    """The server cannot start serving; the message is the one line an operator needs."""


@dataclass
class Readiness:
    ready: bool
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)


class Services:
    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.tracer_provider = tracer_provider
        self.database: Database | None = None
        self.ephemeral: EphemeralStore = open_ephemeral(settings)
        self.auth_failures = AuthFailures(self.ephemeral, settings.limits)
        self.blobs: BlobStore = open_blobs(settings)
        # Live events: wake-ups and ephemeral frames between processes, the local hub.
        redis_bus = None
        if settings.redis_url:
            redis_bus = RedisBus(settings.redis_url, settings.redis_prefix)
        self.bus: Bus = redis_bus or LocalBus()
        # The JWT secrets accepted: configured ones minus those retired deployment-wide.
        self.keyring = KeyRing(settings.jwt_secret, settings.jwt_secret_previous)
        self.hub = Hub(
            lambda: self.db,
            self.bus,
            self.metrics,
            keyring=self.keyring,
            check_seconds=settings.revocation_check_seconds,
        )
        # Gives committed events their seq and wakes live delivery (started at boot).
        self.sequencer = Sequencer(lambda: self.db, self.bus, self.metrics)
        # Group commit of the common send (domain/send_batch.py).
        self.sends = SendBatcher(lambda: self.db)
        # User-token checks of concurrent requests share a statement (domain/token_checks.py).
        self.token_checks = TokenChecks(lambda: self.db)
        self.sockets = SocketQuota(settings.limits.max_sockets_per_user)
        redis_client = redis_bus.client if redis_bus is not None else None
        self.typing = TypingRelay(self.bus, redis_client, settings.redis_prefix)
        node_id = redis_bus.node_id if redis_bus is not None else "local"
        self.presence = Presence(
            self.bus,
            None,
            redis_client,
            settings.redis_prefix,
            node_id,
            heartbeat_seconds=settings.presence_heartbeat_seconds,
            node_ttl_seconds=settings.presence_node_ttl_seconds,
        )
        self.migrated = False
        self.schema_version = 0
        self.boot_error: str | None = None
        # Sends webhook deliveries; started once boot has migrated the database.
        self.webhooks: WebhookWorker | None = None
        # Removes attachments never referenced by a message; started once boot has migrated.
        self.attachment_cleanup: CleanupJob | None = None
        # Trims the event log and finished webhook deliveries; started once boot has migrated.
        self.retention: RetentionJob | None = None

    @property
    def jwt_secrets(self) -> list[str]:
        """Secrets that verify user tokens: the current one, then the previous during a rotation,
        less any a newer configuration of the deployment retired (domain/jwt_keys.py)."""
        return self.keyring.accepted()

    @property
    def db(self) -> Database:
        """The database pool; routes are only reached once boot made it (see readiness)."""
        if self.database is None:
            from cariosan.errors import Unavailable

            raise Unavailable("the server is still starting: PostgreSQL is not migrated yet")
        return self.database

    async def boot(self) -> None:
        """Wait for PostgreSQL, migrate under the advisory lock, open the pool.

        Raises BootFailed with a one-line reason; the caller stops the process with it.
        """
        dsn = self.settings.require_database()
        started = time.monotonic()
        try:
            prepared = await prepare_database(
                dsn,
                self.settings.database_wait_seconds,
                pool_max=self.settings.database_pool_size,
            )
        except (DatabaseUnreachable, schema.MigrationError) as exc:
            self.boot_error = str(exc)
            raise BootFailed(str(exc)) from None
        self.database = prepared.database
        self.database.on_commit = self.sequencer.on_commit
        try:
            await self.keyring.register(self.database)
        except Exception as exc:
            # Not fatal: the hub's periodic check reads the retired secrets again.
            log.warning("jwt_keys_register_failed", error=exc.__class__.__name__, exc_info=exc)
        self.hub.start()
        self.hub.keys_changed()
        self.sequencer.start()
        self.presence.start(self.database)
        report = prepared.report
        for migration in report.applied_now:
            log.info("migration_applied", migration=migration.filename)
        if report.ahead:
            log.warning(
                "schema_ahead",
                message="the database has migrations this release does not know "
                "(a newer release ran here); serving anyway, since migrations are additive",
                unknown_versions=[a.version for a in report.ahead],
            )
        try:
            await self.blobs.prepare()
        except Exception as exc:
            # Attachments answer 503 until the store is back; chat itself keeps working.
            log.warning(
                "attachment_store_unavailable", kind=self.blobs.kind, error=exc.__class__.__name__
            )
        self.schema_version = report.schema_version
        self.metrics.schema_version.set(report.schema_version)
        self.metrics.pending_migrations.set(prepared.pending)
        self.migrated = True
        self.metrics.ready.set(1)
        self.webhooks = WebhookWorker(self.database, self.settings, self.metrics)
        self.webhooks.start()
        self.attachment_cleanup = CleanupJob(self.database, self.blobs, self.settings)
        self.attachment_cleanup.start()
        self.retention = RetentionJob(self.database, self.settings, self.metrics)
        self.retention.start()
        log.info(
            "boot_complete",
            schema_version=report.schema_version,
            seconds=round(time.monotonic() - started, 3),
        )

    async def refresh_operations(self) -> None:
        """Read the operations facts other processes change (a backup made by `cariosan backup
        create`, migrations applied by a newer release) into the gauges; called on each scrape
        of /metrics. Never raises: a scrape still answers while PostgreSQL is away."""
        if self.database is None:
            return
        from cariosan.db.backup import last_backup

        try:
            async with asyncio.timeout(2):
                async with self.database.connection() as conn:
                    backed_up = await last_backup(conn)
                    applied = await schema.applied_migrations(conn)
        except Exception as exc:
            log.warning("operations_metrics_unavailable", error=exc.__class__.__name__)
            return
        if backed_up is not None:
            self.metrics.last_backup.set(backed_up.timestamp())
        known = schema.load_migrations()
        done = {a.version for a in applied}
        self.metrics.schema_version.set(max(done, default=0))
        self.metrics.pending_migrations.set(sum(1 for m in known if m.version not in done))

    async def readiness(self) -> Readiness:
        checks: dict[str, dict[str, Any]] = {}
        ready = True
        if self.database is None or not self.migrated:
            ready = False
            # The reason (PostgreSQL's words, hosts) is in the log line `boot_failed`, not here:
            # /readyz is served to anyone who reaches the API port.
            checks["postgres"] = {
                "status": "error" if self.boot_error else "starting",
                "detail": "boot failed: see the server log (boot_failed)"
                if self.boot_error
                else "waiting for PostgreSQL and migrations",
            }
        else:
            try:
                await asyncio.wait_for(self.database.ping(), timeout=3)
                checks["postgres"] = {"status": "ok", "schema_version": self.schema_version}
            except Exception as exc:  # any failure here means "not ready", never a 500
                ready = False
                checks["postgres"] = {"status": "error", "detail": exc.__class__.__name__}
        checks["redis" if self.ephemeral.kind == "redis" else "ephemeral"] = await _probe(
            self.ephemeral.kind, self.ephemeral.ping()
        )
        checks["s3" if self.blobs.kind == "s3" else "attachments"] = await _probe(
            self.blobs.kind, self.blobs.ping()
        )
        self.metrics.ready.set(1 if ready else 0)
        return Readiness(ready=ready, checks=checks)

    async def close(self) -> None:
        if self.attachment_cleanup is not None:
            await self.attachment_cleanup.stop()
            self.attachment_cleanup = None
        if self.retention is not None:
            await self.retention.stop()
            self.retention = None
        await self.hub.close_connections()
        await self.presence.close()
        await self.typing.close()
        await self.sequencer.stop()
        await self.hub.close()
        if self.webhooks is not None:
            await self.webhooks.stop()
            self.webhooks = None
        if self.database is not None:
            await self.database.close()
            self.database = None
        await self.ephemeral.close()
        await self.blobs.close()
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush(timeout_millis=5000)


async def _probe(kind: str, check: Any) -> dict[str, Any]:
    # Redis and S3 are reported, not required: without them chat still works (degraded).
    try:
        await asyncio.wait_for(check, timeout=3)
    except Exception as exc:
        return {"status": "error", "kind": kind, "detail": exc.__class__.__name__}
    return {"status": "ok", "kind": kind}
