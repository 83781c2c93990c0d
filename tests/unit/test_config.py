from __future__ import annotations

from pathlib import Path

import pytest

from cariosan.config import ConfigError, load_settings, read_dotenv
from cariosan.server import uvicorn_options

GOOD_SECRET = "x" * 32


def test_defaults_match_the_design_table() -> None:
    settings = load_settings({}, dotenv=None)
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.s3_endpoint is None
    assert settings.storage_dir == Path(".cariosan/attachments")
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert settings.public_url == "http://localhost:8080"
    assert settings.log_level == "info"
    assert settings.database_wait_seconds == 30
    assert settings.webhook_lease_seconds == 60
    assert (settings.presence_heartbeat_seconds, settings.presence_node_ttl_seconds) == (5, 15)
    assert not settings.tracing_enabled
    assert settings.limits.max_message_chars == 10_000
    assert settings.limits.max_body_bytes == 1024 * 1024


def test_kept_alive_connections_outlast_a_load_balancers_idle_timeout() -> None:
    # Proxies and load balancers close their idle upstream connections after 60 s; the server
    # must hold them longer, or it may close one just as the proxy reuses it.
    default = load_settings({}, dotenv=None)
    assert default.limits.http_keepalive_seconds > 60
    assert uvicorn_options(default)["timeout_keep_alive"] == default.limits.http_keepalive_seconds
    chosen = load_settings({"CARIOS_HTTP_KEEPALIVE_SECONDS": "120"}, dotenv=None)
    assert uvicorn_options(chosen, workers=True)["timeout_keep_alive"] == 120


def test_every_variable_is_read() -> None:
    env = {
        "CARIOS_DATABASE_URL": "postgresql://u:p@db:5432/c",
        "CARIOS_REDIS_URL": "redis://r:6379/0",
        "CARIOS_S3_ENDPOINT": "http://minio:9000",
        "CARIOS_S3_BUCKET": "files",
        "CARIOS_S3_ACCESS_KEY": "ak",
        "CARIOS_S3_SECRET_KEY": "sk",
        "CARIOS_S3_REGION": "eu-west-1",
        "CARIOS_STORAGE_DIR": "/var/files",
        "CARIOS_JWT_SECRET": GOOD_SECRET,
        "CARIOS_JWT_SECRET_PREVIOUS": "y" * 32,
        "CARIOS_HOST": "127.0.0.1",
        "CARIOS_PORT": "9000",
        "CARIOS_PUBLIC_URL": "https://chat.example.com/",
        "CARIOS_LOG_LEVEL": "DEBUG",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "CARIOS_WEBHOOK_LEASE_SECONDS": "5",
        "CARIOS_PRESENCE_HEARTBEAT_SECONDS": "1",
        "CARIOS_PRESENCE_NODE_TTL_SECONDS": "3",
        "CARIOS_REVOCATION_CHECK_SECONDS": "2s",
        "CARIOS_DATABASE_POOL_SIZE": "8",
    }
    s = load_settings(env, dotenv=None)
    assert s.database_url == "postgresql://u:p@db:5432/c"
    assert s.redis_url == "redis://r:6379/0"
    assert (s.s3_endpoint, s.s3_bucket, s.s3_access_key, s.s3_secret_key, s.s3_region) == (
        "http://minio:9000",
        "files",
        "ak",
        "sk",
        "eu-west-1",
    )
    assert s.storage_dir == Path("/var/files")
    assert s.require_jwt_secret() == GOOD_SECRET
    assert s.jwt_secret_previous == "y" * 32
    assert (s.host, s.port) == ("127.0.0.1", 9000)
    assert s.public_url == "https://chat.example.com"
    assert s.log_level == "debug"
    assert s.tracing_enabled
    assert s.webhook_lease_seconds == 5
    assert (s.presence_heartbeat_seconds, s.presence_node_ttl_seconds) == (1, 3)
    assert s.revocation_check_seconds == 2
    assert s.database_pool_size == 8
    assert load_settings({}, dotenv=None).database_pool_size == 20


def test_dotenv_fills_in_and_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# comment\n"
        "export CARIOS_PORT=9001\n"
        'CARIOS_PUBLIC_URL="http://chat.local:9001"\n'
        "CARIOS_LOG_LEVEL=warning  # inline comment\n"
        "\n"
        "CARIOS_HOST='10.0.0.1'\n"
    )
    s = load_settings({"CARIOS_HOST": "127.0.0.2"}, dotenv=dotenv)
    assert s.port == 9001
    assert s.public_url == "http://chat.local:9001"
    assert s.log_level == "warning"
    assert s.host == "127.0.0.2"


def test_missing_dotenv_is_fine(tmp_path: Path) -> None:
    assert read_dotenv(tmp_path / "absent") == {}


def test_malformed_dotenv_line_names_the_line(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("CARIOS_PORT=1\nthis is not a setting\n")
    with pytest.raises(ConfigError, match=r"\.env:2"):
        load_settings({}, dotenv=dotenv)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "CARIOS_JWT_SECRET is not set"),
        ({"CARIOS_JWT_SECRET": "short"}, "at least 32"),
        ({"CARIOS_JWT_SECRET": GOOD_SECRET, "CARIOS_JWT_SECRET_PREVIOUS": "s"}, "PREVIOUS"),
    ],
)
def test_jwt_secret_must_be_long_enough(env: dict[str, str], message: str) -> None:
    settings = load_settings(env, dotenv=None)
    with pytest.raises(ConfigError, match=message) as raised:
        settings.require_jwt_secret()
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CARIOS_PORT": "http"}, "CARIOS_PORT"),
        ({"CARIOS_PORT": "70000"}, "CARIOS_PORT"),
        ({"CARIOS_LOG_LEVEL": "loud"}, "CARIOS_LOG_LEVEL"),
        ({"CARIOS_S3_ENDPOINT": "http://minio:9000"}, "CARIOS_S3_ACCESS_KEY"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env, dotenv=None)


def test_database_url_is_required_by_serve() -> None:
    with pytest.raises(ConfigError, match="CARIOS_DATABASE_URL"):
        load_settings({}, dotenv=None).require_database()
