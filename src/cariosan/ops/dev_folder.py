"""The data folder of `cariosan dev` (`./.cariosan` by default), shared with the other commands.

While `cariosan dev` runs it holds an exclusive lock on `dev.lock` (with its pid in it) and keeps
in `dev.env` the settings it serves with: the database URL on its fixed PostgreSQL port, the JWT
secret, the attachment folder, the public URL. A `cariosan` command run next to the folder, or
given `--data-dir`, reads `dev.env` instead of `CARIOS_*` variables. When no `cariosan dev` holds
the lock, the command takes it and runs the folder's PostgreSQL itself for its own duration, so
the commands work whether dev is running or not, and never both start the same server.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from cariosan.config import read_dotenv

DEFAULT_DATA_DIR = Path(".cariosan")
# Fixed, so that the settings written once stay true on every start (8080 is the HTTP port).
DEFAULT_POSTGRES_PORT = 54329
SETTINGS_FILE = "dev.env"
LOCK_FILE = "dev.lock"
DEV_DATABASE = "cariosan"
# What dev mode does not use: a command reading dev.env ignores these from the environment too.
_NOT_IN_DEV = ("CARIOS_REDIS_URL", "CARIOS_S3_")


def private_file(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


class DevFolder:
    """One data folder: its lock, its settings file and its PostgreSQL data dir."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: IO[str] | None = None

    @property
    def settings_file(self) -> Path:
        return self.path / SETTINGS_FILE

    @property
    def postgres_dir(self) -> Path:
        return self.path / "postgres"

    def exists(self) -> bool:
        return self.settings_file.is_file()

    # -- the lock -----------------------------------------------------------------------------

    def try_lock(self, purpose: str) -> bool:
        """Take the folder (True), or False if another live process holds it. `purpose`, like
        "dev" or "backup create", is shown to whoever finds the folder taken."""
        self.path.mkdir(parents=True, exist_ok=True)
        handle = (self.path / LOCK_FILE).open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {purpose}\n")
        handle.flush()
        self._lock = handle
        return True

    def holder(self) -> tuple[str, str]:
        """(pid, purpose) written by the process holding the lock, for messages."""
        try:
            text = (self.path / LOCK_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        pid, _, purpose = text.partition(" ")
        return pid or "unknown", purpose or "dev"

    def release(self) -> None:
        handle, self._lock = self._lock, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.truncate(0)
            handle.close()  # closing drops the flock

    # -- the settings ---------------------------------------------------------------------------

    def write_settings(self, values: dict[str, str]) -> None:
        lines = [
            "# Written by `cariosan dev` at each start: the settings it serves with.",
            "# `cariosan` commands run next to this folder (or with --data-dir) read them.",
            *(f"{key}={value}" for key, value in values.items()),
        ]
        private_file(self.settings_file, "\n".join(lines) + "\n")

    def read_settings(self) -> dict[str, str]:
        return read_dotenv(self.settings_file)

    def postgres_port(self) -> int:
        url = self.read_settings().get("CARIOS_DATABASE_URL", "")
        return urlsplit(url).port or DEFAULT_POSTGRES_PORT


def environment_with(
    folder: DevFolder, environ: dict[str, str], *, explicit: bool
) -> dict[str, str]:
    """`environ` with the folder's settings: over it when the folder was named (`--data-dir`),
    else only filling in what it lacks."""
    values = folder.read_settings()
    merged = {k: v for k, v in environ.items() if not k.startswith(_NOT_IN_DEV)}
    for key, value in values.items():
        if explicit or not merged.get(key):
            merged[key] = value
    return merged
