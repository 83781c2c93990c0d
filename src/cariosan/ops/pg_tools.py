"""The PostgreSQL client programs (pg_dump, pg_restore, psql) whose major version matches the
server's: a pg_dump older than the server refuses to dump it, and a dump restores only with a
pg_restore at least as new as the pg_dump that wrote it."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class PgToolMissing(Exception):
    """No client program of the server's major version was found; the message says what to
    install, in one line."""


def tool_major(path: Path) -> int | None:
    """The major version a client program reports with --version, or None."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return None
    match = _VERSION.search(out)
    return int(match.group(1)) if match else None


def candidates(name: str, major: int) -> list[Path]:
    """Where to look, in order: Debian's versioned directory, PATH, the embedded wheel."""
    found = [Path(f"/usr/lib/postgresql/{major}/bin/{name}")]
    on_path = shutil.which(name)
    if on_path:
        found.append(Path(on_path))
    try:
        from cariosan.ops.embedded_pg import EmbeddedPostgresError, bin_path

        with contextlib.suppress(EmbeddedPostgresError):
            found.append(bin_path(name))
    except ImportError:  # pragma: no cover - the module ships with cariosan
        pass
    return found


def find_tool(name: str, major: int) -> Path:
    """The first `name` of PostgreSQL `major`; PgToolMissing (one line) when there is none."""
    seen: list[str] = []
    for path in candidates(name, major):
        if not path.is_file() or not os.access(path, os.X_OK):
            continue
        found = tool_major(path)
        if found == major:
            return path
        seen.append(f"{path} is {found if found is not None else 'unknown'}")
    also = f" (found: {'; '.join(seen)})" if seen else ""
    raise PgToolMissing(
        f"no {name} of PostgreSQL {major}, the server's major version{also}: install the "
        f"PostgreSQL {major} client (Debian/Ubuntu: apt-get install postgresql-client-{major}) "
        f"or put its {name} on PATH"
    )


def libpq_env(dsn: str) -> dict[str, str]:
    """The environment for a client program: the caller's, minus PG* variables that could
    redirect it. The DSN itself is passed with -d / --dbname."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    # Keep passwords out of the process list when the DSN carries one.
    password = urlsplit(dsn).password
    if password:
        env["PGPASSWORD"] = unquote(password)
    return env


def without_password(dsn: str) -> str:
    """The DSN without its password (given to the tools through PGPASSWORD instead)."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}@{host}" if user else host
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def with_database(dsn: str, name: str) -> str:
    """The DSN of database `name` on the same server."""
    parts = urlsplit(dsn)
    return parts._replace(path=f"/{name}").geturl()
