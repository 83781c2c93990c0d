"""The one settings object, built once from `CARIOS_*` variables (and `./.env`) and passed down."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error")
# Attachment content types accepted by default; `CARIOS_ATTACHMENT_TYPES` replaces the list.
DEFAULT_ATTACHMENT_TYPES = (
    "image/*",
    "video/*",
    "audio/*",
    "text/plain",
    "text/csv",
    "application/pdf",
    "application/zip",
)
# Seconds before each webhook delivery attempt (Standard Webhooks' schedule): immediately, 5 s,
# 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h; after the last one a delivery has failed.
WEBHOOK_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0)
MIN_JWT_SECRET_LENGTH = 32
_TOKEN = r"[a-z0-9][a-z0-9!#$&^_.+-]*"
_CONTENT_TYPE_PATTERN = re.compile(rf"^(\*|{_TOKEN})/(\*|{_TOKEN})$")


class ConfigError(Exception):
    """An operator mistake in the configuration; the message says what to fix, in one line."""


@dataclass(frozen=True)
class Limits:
    """Per-deployment limits (API.md defaults)."""

    max_message_chars: int = 10_000
    max_body_bytes: int = 1024 * 1024
    max_attachment_bytes: int = 100 * 1024 * 1024
    user_messages_per_second: int = 20
    user_requests_per_minute: int = 600
    workspace_requests_per_minute: int = 60_000
    # A page of events (`GET /v1/events`, a WebSocket `resume`) ends early, with `has_more`,
    # rather than grow past this many bytes of JSON.
    events_page_bytes: int = 1024 * 1024
    # The `data` object of a user, channel or message, as compact JSON (Stream allows 5 KiB).
    max_data_bytes: int = 5 * 1024
    # The largest WebSocket frame a client may send; the protocol layer refuses a bigger one
    # (close 1009) from its header, before reading it.
    ws_max_frame_bytes: int = 16 * 1024
    # Open WebSockets per user on one server process; one more is refused with close 4029.
    max_sockets_per_user: int = 20
    # Failed authentications (bad secret, forged or expired token) per client address.
    auth_failures_per_minute: int = 60
    # A request's head and body must arrive within this many seconds (slow clients: 408).
    request_read_seconds: float = 10.0
    # An idle kept-alive HTTP connection is closed after this many seconds. Longer than the idle
    # timeout of the proxies that usually sit in front (nginx and cloud load balancers: 60 s), so
    # they, not we, close idle connections: a server closing one just as the proxy or client
    # reuses it makes that request fail without an answer (a 502 at the proxy).
    http_keepalive_seconds: int = 75


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    # Lets several deployments (or test runs) share one Redis without seeing each other's keys.
    redis_prefix: str = "cariosan:"
    s3_endpoint: str | None = None
    s3_bucket: str = "cariosan"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"
    storage_dir: Path = Path(".cariosan/attachments")
    # Content types an attachment may declare: exact (`application/pdf`), `image/*`, or `*/*`.
    attachment_types: tuple[str, ...] = DEFAULT_ATTACHMENT_TYPES
    # Lifetime of presigned upload and download URLs (DESIGN.md: 15 minutes).
    attachment_url_seconds: int = 15 * 60
    # Pending attachments never referenced by a message are removed after this long.
    attachment_pending_seconds: int = 24 * 3600
    # How often each server process looks for such attachments.
    attachment_cleanup_interval_seconds: float = 300.0
    jwt_secret: str = ""
    jwt_secret_previous: str | None = None
    host: str = "0.0.0.0"
    port: int = 8080
    public_url: str = "http://localhost:8080"
    log_level: str = "info"
    # How long boot waits for PostgreSQL before giving up with a clear error.
    database_wait_seconds: float = 30.0
    # Connections one server process keeps to PostgreSQL at most: processes x this must stay
    # under the server's max_connections (100 by default), with room for backups and psql.
    database_pool_size: int = 20
    limits: Limits = field(default_factory=Limits)
    # Agree to permessage-deflate with WebSocket clients that ask for it. Off by default: each
    # socket then compresses every event on its own (an event to 5,000 sockets is 5,000
    # compressions, and each socket keeps its own compression state), where without it the
    # gateway builds an event's frame once for all (realtime/wire.py).
    ws_compression: bool = False
    # Webhooks may target private, loopback and link-local addresses (tests, trusted networks).
    webhook_allow_private: bool = False
    webhook_schedule: tuple[float, ...] = WEBHOOK_SCHEDULE
    webhook_timeout_seconds: float = 15.0
    # How long a claimed delivery stays with its worker before another may retry it.
    webhook_lease_seconds: float = 60.0
    # The retention job removes events older than this (clients further behind resync) and
    # finished webhook deliveries older than that; it runs every `retention_interval_seconds`.
    event_retention_seconds: float = 30 * 86400.0
    webhook_delivery_retention_seconds: float = 14 * 86400.0
    retention_interval_seconds: float = 300.0
    # With Redis: how often a server proves it is alive, and how long after its last proof a
    # server that died without a word stops counting (its users' presence goes offline).
    presence_heartbeat_seconds: float = 5.0
    presence_node_ttl_seconds: int = 15
    # How often each server checks its open sockets against the database for revoked tokens
    # (a backstop: revocations reach every node at once over the bus; this catches lost ones).
    revocation_check_seconds: float = 10.0
    # Standard OTEL_* variables, kept as given so the exporter reads them the standard way.
    otel: Mapping[str, str] = field(default_factory=dict)
    # `cariosan dev` only (never from the environment): the workspace whose users the demo chat
    # app at `/` signs in, through an endpoint that hands out their tokens. None: no demo.
    demo_workspace_id: str | None = None

    @property
    def tracing_enabled(self) -> bool:
        return (
            bool(
                self.otel.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or self.otel.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            )
            and self.otel.get("OTEL_SDK_DISABLED", "").lower() != "true"
        )

    @property
    def uses_s3(self) -> bool:
        return bool(self.s3_endpoint)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def require_database(self) -> str:
        if not self.database_url:
            raise ConfigError(
                "CARIOS_DATABASE_URL is not set: set it to a PostgreSQL DSN, "
                "e.g. postgresql://user:password@host:5432/cariosan"
            )
        return self.database_url

    def require_jwt_secret(self) -> str:
        if not self.jwt_secret:
            raise ConfigError(
                "CARIOS_JWT_SECRET is not set: set it to a random string of at least "
                f"{MIN_JWT_SECRET_LENGTH} characters (e.g. `openssl rand -hex 32`)"
            )
        if len(self.jwt_secret) < MIN_JWT_SECRET_LENGTH:
            raise ConfigError(
                f"CARIOS_JWT_SECRET is {len(self.jwt_secret)} characters long: it must have at "
                f"least {MIN_JWT_SECRET_LENGTH} (e.g. `openssl rand -hex 32`)"
            )
        if self.jwt_secret_previous is not None and (
            len(self.jwt_secret_previous) < MIN_JWT_SECRET_LENGTH
        ):
            raise ConfigError(
                f"CARIOS_JWT_SECRET_PREVIOUS must have at least {MIN_JWT_SECRET_LENGTH} characters"
            )
        return self.jwt_secret


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a `.env` file: KEY=VALUE lines, `#` comments, optional `export` and quotes."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return values
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {raw.strip()!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds_of(text: str) -> float:
    """`90s`, `30m`, `24h`, `7d` or plain seconds; ValueError for anything else."""
    value = text.strip().lower()
    unit = _DURATION_UNITS.get(value[-1:]) if value else None
    seconds = float(value[:-1] if unit else value) * (unit or 1)
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"not a duration: {text!r}")
    return seconds


def _duration(env: Mapping[str, str], name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        seconds = seconds_of(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a duration (use e.g. 30d, 12h, 90m)") from None
    if seconds <= 0:
        raise ConfigError(f"{name}={raw!r} must be longer than 0")
    return seconds


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} must be true or false")


def _schedule(env: Mapping[str, str], name: str) -> tuple[float, ...]:
    raw = (env.get(name) or "").strip()
    if not raw:
        return WEBHOOK_SCHEDULE
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} must be comma-separated seconds, e.g. 0,5,300,1800"
        ) from None
    if any(d < 0 or not math.isfinite(d) for d in delays):
        raise ConfigError(f"{name}={raw!r}: every delay must be 0 or more seconds")
    return delays


def _content_types(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return DEFAULT_ATTACHMENT_TYPES
    patterns = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    for pattern in patterns:
        if pattern != "*" and not _CONTENT_TYPE_PATTERN.match(pattern):
            raise ConfigError(
                f"{name}: {pattern!r} is not a content type (use e.g. image/*,application/pdf)"
            )
    return patterns


def _str(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value else None


def load_settings(
    environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")
) -> Settings:
    """Build the settings from the environment; `./.env` fills in what the environment lacks."""
    env: dict[str, str] = {}
    if dotenv is not None:
        env.update(read_dotenv(dotenv))
    env.update(os.environ if environ is None else environ)

    log_level = (env.get("CARIOS_LOG_LEVEL") or "info").lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"CARIOS_LOG_LEVEL={log_level!r} must be one of {', '.join(LOG_LEVELS)}")
    port = _int(env, "CARIOS_PORT", 8080)
    if port > 65535:
        raise ConfigError(f"CARIOS_PORT={port} is not a TCP port")

    s3_endpoint = _str(env, "CARIOS_S3_ENDPOINT")
    s3_access_key = _str(env, "CARIOS_S3_ACCESS_KEY")
    s3_secret_key = _str(env, "CARIOS_S3_SECRET_KEY")
    if s3_endpoint and not (s3_access_key and s3_secret_key):
        raise ConfigError(
            "CARIOS_S3_ENDPOINT is set but CARIOS_S3_ACCESS_KEY or CARIOS_S3_SECRET_KEY is not"
        )

    heartbeat = _int(env, "CARIOS_PRESENCE_HEARTBEAT_SECONDS", 5)
    node_ttl = _int(env, "CARIOS_PRESENCE_NODE_TTL_SECONDS", 15)
    if node_ttl <= heartbeat:
        raise ConfigError(
            f"CARIOS_PRESENCE_NODE_TTL_SECONDS={node_ttl} must be longer than "
            f"CARIOS_PRESENCE_HEARTBEAT_SECONDS={heartbeat}"
        )

    defaults = Limits()
    limits = Limits(
        max_message_chars=_int(env, "CARIOS_MAX_MESSAGE_CHARS", defaults.max_message_chars),
        max_body_bytes=_int(env, "CARIOS_MAX_BODY_BYTES", defaults.max_body_bytes),
        max_attachment_bytes=_int(
            env, "CARIOS_MAX_ATTACHMENT_BYTES", defaults.max_attachment_bytes
        ),
        user_messages_per_second=_int(
            env, "CARIOS_RATE_USER_MESSAGES_PER_SECOND", defaults.user_messages_per_second
        ),
        user_requests_per_minute=_int(
            env, "CARIOS_RATE_USER_REQUESTS_PER_MINUTE", defaults.user_requests_per_minute
        ),
        workspace_requests_per_minute=_int(
            env, "CARIOS_RATE_WORKSPACE_REQUESTS_PER_MINUTE", defaults.workspace_requests_per_minute
        ),
        events_page_bytes=_int(
            env, "CARIOS_EVENTS_PAGE_BYTES", defaults.events_page_bytes, minimum=4096
        ),
        max_data_bytes=_int(env, "CARIOS_MAX_DATA_BYTES", defaults.max_data_bytes),
        ws_max_frame_bytes=_int(
            env, "CARIOS_WS_MAX_FRAME_BYTES", defaults.ws_max_frame_bytes, minimum=1024
        ),
        max_sockets_per_user=_int(
            env, "CARIOS_MAX_SOCKETS_PER_USER", defaults.max_sockets_per_user
        ),
        auth_failures_per_minute=_int(
            env, "CARIOS_RATE_AUTH_FAILURES_PER_MINUTE", defaults.auth_failures_per_minute
        ),
        request_read_seconds=float(
            _int(env, "CARIOS_REQUEST_READ_SECONDS", int(defaults.request_read_seconds))
        ),
        http_keepalive_seconds=_int(
            env, "CARIOS_HTTP_KEEPALIVE_SECONDS", defaults.http_keepalive_seconds
        ),
    )

    return Settings(
        database_url=_str(env, "CARIOS_DATABASE_URL"),
        redis_url=_str(env, "CARIOS_REDIS_URL"),
        redis_prefix=env.get("CARIOS_REDIS_PREFIX") or "cariosan:",
        s3_endpoint=s3_endpoint,
        s3_bucket=env.get("CARIOS_S3_BUCKET") or "cariosan",
        s3_access_key=s3_access_key,
        s3_secret_key=s3_secret_key,
        s3_region=env.get("CARIOS_S3_REGION") or "us-east-1",
        storage_dir=Path(env.get("CARIOS_STORAGE_DIR") or ".cariosan/attachments"),
        attachment_types=_content_types(env, "CARIOS_ATTACHMENT_TYPES"),
        jwt_secret=env.get("CARIOS_JWT_SECRET", ""),
        jwt_secret_previous=_str(env, "CARIOS_JWT_SECRET_PREVIOUS"),
        host=env.get("CARIOS_HOST") or "0.0.0.0",
        port=port,
        public_url=(env.get("CARIOS_PUBLIC_URL") or "http://localhost:8080").rstrip("/"),
        log_level=log_level,
        database_wait_seconds=float(_int(env, "CARIOS_DATABASE_WAIT_SECONDS", 30, minimum=0)),
        database_pool_size=_int(env, "CARIOS_DATABASE_POOL_SIZE", 20, minimum=2),
        limits=limits,
        ws_compression=_bool(env, "CARIOS_WS_COMPRESSION", False),
        webhook_allow_private=_bool(env, "CARIOS_WEBHOOK_ALLOW_PRIVATE", False),
        webhook_schedule=_schedule(env, "CARIOS_WEBHOOK_SCHEDULE"),
        event_retention_seconds=_duration(
            env, "CARIOS_EVENT_RETENTION", Settings.event_retention_seconds
        ),
        webhook_delivery_retention_seconds=_duration(
            env, "CARIOS_WEBHOOK_DELIVERY_RETENTION", Settings.webhook_delivery_retention_seconds
        ),
        webhook_lease_seconds=float(
            _int(env, "CARIOS_WEBHOOK_LEASE_SECONDS", int(Settings.webhook_lease_seconds))
        ),
        presence_heartbeat_seconds=float(heartbeat),
        presence_node_ttl_seconds=node_ttl,
        revocation_check_seconds=_duration(
            env, "CARIOS_REVOCATION_CHECK_SECONDS", Settings.revocation_check_seconds
        ),
        otel={k: v for k, v in env.items() if k.startswith("OTEL_")},
    )
