"""Prometheus metrics, in a registry owned by the app (not the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Every metric the server exports. Labels hold route templates, never raw paths, so a
    scan of random URLs cannot blow up the number of series."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "cariosan_http_requests",
            "HTTP requests served, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "cariosan_http_request_duration_seconds",
            "HTTP request latency, by method and route template.",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.schema_version = Gauge(
            "cariosan_schema_version",
            "Highest migration version applied to the database.",
            registry=self.registry,
        )
        self.pending_migrations = Gauge(
            "cariosan_pending_migrations",
            "Migrations this release ships that the database does not have yet.",
            registry=self.registry,
        )
        self.last_backup = Gauge(
            "cariosan_last_backup_timestamp_seconds",
            "Unix time of the last successful `cariosan backup create` (0: none recorded).",
            registry=self.registry,
        )
        self.ready = Gauge(
            "cariosan_ready",
            "1 when this server is migrated and its database is reachable.",
            registry=self.registry,
        )

        self.ws_connections = Gauge(
            "cariosan_ws_connections",
            "WebSocket connections open on this process.",
            registry=self.registry,
        )
        self.ws_events_sent = Counter(
            "cariosan_ws_events_sent",
            "Frames sent to WebSocket clients, by kind (event: persisted with a seq; other).",
            ["kind"],
            registry=self.registry,
        )
        self.ws_fanout_latency = Histogram(
            "cariosan_ws_fanout_latency_seconds",
            "From an event's write (its transaction) to its hand-off to this process's "
            "WebSockets: once per event for the sockets written at once, once per frame for a "
            "socket that had it queued.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.ws_slow_consumers = Counter(
            "cariosan_ws_slow_consumers_dropped",
            "WebSockets closed because their send queue overflowed (code 4009).",
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "cariosan_webhook_deliveries",
            "Webhook delivery attempts by outcome: succeeded, retrying (failed, will retry), "
            "failed (no attempt left), disabled (HTTP 410 disabled the endpoint).",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_queue_depth = Gauge(
            "cariosan_webhook_queue_depth",
            "Webhook deliveries pending (due, waiting for a retry, or in flight), all workspaces.",
            registry=self.registry,
        )
        self.webhook_oldest_pending_age = Gauge(
            "cariosan_webhook_oldest_pending_age_seconds",
            "Age of the oldest pending webhook delivery (0 when none is pending).",
            registry=self.registry,
        )
        self.events_sequenced = Counter(
            "cariosan_events_sequenced",
            "Events this process gave their public seq to (the sequencer).",
            registry=self.registry,
        )
        self.events_trimmed = Counter(
            "cariosan_events_trimmed",
            "Events and finished webhook deliveries removed by the retention job.",
            ["kind"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
