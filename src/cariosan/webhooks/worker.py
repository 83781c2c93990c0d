"""The outbox worker: one per server process, sends due webhook deliveries and records outcomes.

Each round claims due rows in one short statement (`FOR UPDATE SKIP LOCKED`, committed at once,
the rows pushed a lease into the future), then POSTs them with no transaction open, then records
each outcome fenced by the claim's lease. Several servers therefore never send the same attempt
at once, and one killed mid-call leaves its rows to be retried by anyone once the lease ends.
"""

from __future__ import annotations

import asyncio
import functools
import random
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from cariosan import __version__
from cariosan.config import Settings
from cariosan.db import webhooks as rows
from cariosan.db.pool import Database
from cariosan.domain.events import webhook_bodies
from cariosan.errors import Unavailable
from cariosan.obs.logging import get_logger
from cariosan.obs.metrics import Metrics
from cariosan.waiting import wait_set
from cariosan.webhooks import signing
from cariosan.webhooks.guard import TargetRefused, check_target

log = get_logger("cariosan.webhooks")

JITTER = 0.1
MAX_RETRY_AFTER = 24 * 3600.0
MAX_ERROR = 500
GONE = "not sent: the event is no longer in the log (its content was deleted, or it was trimmed)"
STATS_EVERY = 5.0


def next_delay(schedule: Sequence[float], attempts: int, retry_after: float | None) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones (None: no attempt left).

    `schedule[n]` is the delay before attempt n+1, ±10 % jitter so that receivers coming back
    are not hit by every retry at once; a `Retry-After` asks for at least that long.
    """
    if attempts >= len(schedule):
        return None
    delay = schedule[attempts] * random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds (it may be a number or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@functools.cache
def tls_context() -> ssl.SSLContext:
    """Built once per process: httpx would load the whole CA bundle for each new client (about
    70 ms of CPU), and a test suite or a restarting worker makes many."""
    return httpx.create_ssl_context()


class WebhookWorker:
    def __init__(
        self,
        database: Database,
        settings: Settings,
        metrics: Metrics,
        *,
        poll_interval: float = 0.5,
        max_in_flight: int = 32,
        per_endpoint: int = 8,
    ) -> None:
        self.database = database
        self.settings = settings
        self.metrics = metrics
        self.poll_interval = poll_interval
        self.max_in_flight = max_in_flight
        self.per_endpoint = per_endpoint
        self._tasks: set[asyncio.Task[None]] = set()
        # Attempts in flight per endpoint: a full endpoint is skipped until one finishes.
        self._busy: Counter[uuid.UUID] = Counter()
        # Set when there may be something to claim: a wake-up or a finished attempt.
        self._signal = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._stats_at = 0.0
        self._client = httpx.AsyncClient(
            verify=tls_context(),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(settings.webhook_timeout_seconds),
            # Requests go to checked IP addresses with the name in Host/SNI: a pooled TLS
            # connection could be reused for another name on the same address, so none is kept.
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"user-agent": f"Cariosan-Webhooks/{__version__}"},
        )

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="cariosan-webhooks")

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._signal.set()

    async def stop(self, grace: float = 3.0) -> None:
        """Stop claiming; give attempts in flight `grace` seconds, then abandon them (their
        lease runs out and another worker retries them)."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._client.aclose()

    async def _run(self) -> None:
        failures = 0
        while True:
            self._signal.clear()
            free = self.max_in_flight - len(self._tasks)
            claimed: list[rows.Claim] = []
            try:
                if free > 0:
                    full = [e for e, n in self._busy.items() if n >= self.per_endpoint]
                    async with self.database.connection() as conn:
                        claimed = await rows.claim_due(
                            conn,
                            free,
                            self.settings.webhook_lease_seconds,
                            per_endpoint=self.per_endpoint,
                            skip_endpoints=full,
                        )
                if time.monotonic() - self._stats_at >= STATS_EVERY:
                    await self.refresh_stats()
                failures = 0
            except Exception as exc:  # the database went away: keep trying, quietly
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning(
                        "webhook_worker_db_error", error=exc.__class__.__name__, exc_info=exc
                    )
                await asyncio.sleep(min(0.5 * failures, 5.0))
                continue
            try:
                claimed = await self._with_bodies(claimed)
            except Exception as exc:  # the database went away: the leases run out, retried
                log.warning("webhook_worker_db_error", error=exc.__class__.__name__, exc_info=exc)
                claimed = []
            for claim in claimed:
                self._busy[claim.endpoint_id] += 1
                task = asyncio.create_task(self.deliver(claim))
                self._tasks.add(task)
                task.add_done_callback(functools.partial(self._finished, claim.endpoint_id))
            if claimed and len(claimed) == free:
                continue  # more may be due: claim again while there is room
            await wait_set(self._signal, self.poll_interval)
            await asyncio.sleep(0.01)  # let attempts finishing together share one claim

    async def _with_bodies(self, claimed: list[rows.Claim]) -> list[rows.Claim]:
        """Make the body of each claim from its event as reads show it now (so a message
        edited or deleted before delivery is sent in its current form); a claim whose event
        is gone is recorded as failed and dropped."""
        wanted = [(c.workspace_id, c.seq) for c in claimed if not c.body]
        if not wanted:
            return claimed
        bodies = await webhook_bodies(self.database, wanted)
        ready: list[rows.Claim] = []
        for claim in claimed:
            if claim.body:
                ready.append(claim)
            elif (body := bodies.get((claim.workspace_id, claim.seq))) is not None:
                ready.append(replace(claim, body=body))
            else:
                async with self.database.connection() as conn:
                    await rows.record_attempt(
                        conn, claim, status="failed", status_code=None, error=GONE
                    )
                self.metrics.webhook_deliveries.labels("failed").inc()
        return ready

    def _finished(self, endpoint_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._busy[endpoint_id] -= 1
        if self._busy[endpoint_id] <= 0:
            del self._busy[endpoint_id]
        self._signal.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook_delivery_crashed", exc_info=task.exception())

    async def refresh_stats(self) -> None:
        async with self.database.connection() as conn:
            depth, oldest = await rows.queue_stats(conn)
        self.metrics.webhook_queue_depth.set(depth)
        self.metrics.webhook_oldest_pending_age.set(oldest)
        self._stats_at = time.monotonic()

    async def send(self, claim: rows.Claim) -> tuple[int | None, str | None, float | None]:
        """One attempt: (HTTP status or None, error or None, Retry-After seconds or None)."""
        try:
            target = await check_target(
                claim.url, allow_private=self.settings.webhook_allow_private
            )
        except TargetRefused as exc:
            return None, f"refused: {exc}", None
        body = claim.body.encode()
        headers = signing.headers(claim.secrets, str(claim.id), int(time.time()), body)
        headers["host"] = target.host
        extensions = {"sni_hostname": target.sni} if target.sni else None
        request = self._client.build_request(
            "POST", target.url, content=body, headers=headers, extensions=extensions
        )
        try:
            async with asyncio.timeout(self.settings.webhook_timeout_seconds):
                response = await self._client.send(request, stream=True)
                await response.aclose()  # the receiver's body is not ours to read
        except TimeoutError:
            return None, f"timed out after {self.settings.webhook_timeout_seconds:g} s", None
        except httpx.HTTPError as exc:
            detail = str(exc).strip()
            return None, f"{exc.__class__.__name__}: {detail}"[:MAX_ERROR], None
        code = response.status_code
        if 200 <= code < 300:
            return code, None, None
        if 300 <= code < 400:
            return code, f"HTTP {code}: redirects are not followed", None
        retry_after = (
            retry_after_seconds(response.headers.get("retry-after")) if code in (429, 503) else None
        )
        return code, f"HTTP {code}", retry_after

    async def deliver(self, claim: rows.Claim) -> None:
        code, error, retry_after = await self.send(claim)
        try:
            await self._record(claim, code, error, retry_after)
        except Unavailable as exc:
            # Sent, but PostgreSQL went away before the outcome was stored: an expected outage,
            # not a crash. The lease runs out and the delivery is sent again under the same
            # webhook-id, which receivers deduplicate on.
            log.warning(
                "webhook_outcome_not_recorded",
                delivery_id=str(claim.id),
                status_code=code,
                error=exc.message,
            )

    async def _record(
        self,
        claim: rows.Claim,
        code: int | None,
        error: str | None,
        retry_after: float | None,
    ) -> None:
        async with self.database.connection() as conn:
            if error is None:
                await rows.record_attempt(
                    conn, claim, status="succeeded", status_code=code, error=None
                )
                self.metrics.webhook_deliveries.labels("succeeded").inc()
                return
            if code == 410:
                await rows.disable_endpoint(conn, claim, code, "HTTP 410: the receiver is gone")
                self.metrics.webhook_deliveries.labels("disabled").inc()
                log.warning(
                    "webhook_endpoint_disabled",
                    endpoint_id=str(claim.endpoint_id),
                    workspace_id=str(claim.workspace_id),
                )
                return
            delay = next_delay(self.settings.webhook_schedule, claim.attempts, retry_after)
            if delay is None:
                await rows.record_attempt(
                    conn, claim, status="failed", status_code=code, error=error
                )
                self.metrics.webhook_deliveries.labels("failed").inc()
                log.warning(
                    "webhook_delivery_failed",
                    delivery_id=str(claim.id),
                    attempts=claim.attempts,
                    error=error,
                )
                return
            await rows.record_attempt(
                conn, claim, status="pending", status_code=code, error=error, retry_in=delay
            )
            self.metrics.webhook_deliveries.labels("retrying").inc()
