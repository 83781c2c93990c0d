"""The dev data folder: which settings a command gets, what dev writes, what the docs say."""

from __future__ import annotations

from pathlib import Path

from cariosan.config import load_settings
from cariosan.ops.dev import dev_values
from cariosan.ops.dev_folder import DevFolder, environment_with

ROOT = Path(__file__).resolve().parents[2]
DSN = "postgresql://postgres@127.0.0.1:54329/cariosan"


def _folder(tmp_path: Path) -> DevFolder:
    folder = DevFolder(tmp_path / ".cariosan")
    folder.write_settings(dev_values(DSN, "j" * 64, folder.path, "127.0.0.1", 8080))
    return folder


def test_dev_writes_what_commands_need_privately(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    assert folder.settings_file.stat().st_mode & 0o077 == 0
    settings = load_settings(environment_with(folder, {}, explicit=True), dotenv=None)
    assert settings.database_url == DSN and settings.require_jwt_secret() == "j" * 64
    assert settings.storage_dir == (folder.path / "attachments").resolve()
    assert settings.public_url == "http://127.0.0.1:8080"
    # Loopback webhook receivers work in dev (docs/webhooks.md says so).
    assert settings.webhook_allow_private
    assert settings.database_wait_seconds == 5
    assert folder.postgres_port() == 54329


def test_named_folder_wins_found_folder_fills_in(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    env = {
        "CARIOS_DATABASE_URL": "postgresql://prod/db",
        "CARIOS_S3_ENDPOINT": "http://minio:9000",
        "CARIOS_REDIS_URL": "redis://r",
        "CARIOS_LOG_LEVEL": "debug",
    }
    named = environment_with(folder, env, explicit=True)
    assert named["CARIOS_DATABASE_URL"] == DSN and named["CARIOS_LOG_LEVEL"] == "debug"
    assert "CARIOS_S3_ENDPOINT" not in named and "CARIOS_REDIS_URL" not in named
    found = environment_with(folder, env, explicit=False)
    assert found["CARIOS_DATABASE_URL"] == "postgresql://prod/db"
    assert found["CARIOS_JWT_SECRET"] == "j" * 64


def test_the_lock_is_held_by_one_process_at_a_time(tmp_path: Path) -> None:
    first, second = DevFolder(tmp_path / "d"), DevFolder(tmp_path / "d")
    assert first.try_lock("dev")
    # flock is per open file description: a second open in this process conflicts too.
    assert not second.try_lock("backup create")
    pid, purpose = second.holder()
    assert purpose == "dev" and pid.isdigit()
    first.release()
    assert second.try_lock("backup create")
    second.release()


def test_docs_say_dev_allows_loopback_webhooks() -> None:
    text = (ROOT / "docs" / "webhooks.md").read_text(encoding="utf-8")
    assert "In dev mode" in text and "http://127.0.0.1:9000/hook" in text
    ops = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "## Against `cariosan dev`" in ops and "--data-dir" in ops
