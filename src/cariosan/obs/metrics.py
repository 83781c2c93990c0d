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
        self.ready = Gauge(
            "cariosan_ready",
            "1 when this server is migrated and its database is reachable.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
