"""Server-level SQL: databases themselves, not rows in them."""

from __future__ import annotations

from cariosan.db.pool import connect


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def create_database_if_missing(admin_dsn: str, name: str) -> bool:
    """Create database `name` on the server of `admin_dsn`; True if it was created."""
    conn = await connect(admin_dsn)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await conn.execute(f"CREATE DATABASE {_quote_ident(name)}")
        return True
    finally:
        await conn.close()
