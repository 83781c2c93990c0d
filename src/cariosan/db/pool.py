"""Connecting to PostgreSQL: a pool, waiting for the server at boot, and clear failures."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from cariosan.errors import Unavailable, ValidationFailed

# Errors that mean "the server is not there (yet)", worth waiting out at boot.
_TRANSIENT = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.TooManyConnectionsError,
)
# Errors that mean the store went away while serving: callers get 503 UNAVAILABLE.
_UNAVAILABLE = (
    *_TRANSIENT,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    # A pooled connection whose server shut down while it sat idle: the server's FATAL
    # ("terminating connection due to administrator command") arrived, the protocol waits for a
    # ReadyForQuery that never comes, and the next query, or the reset when the pool takes the
    # connection back, fails with "cannot switch to state N; another operation (2) is in
    # progress". Seen as 500s on every endpoint during a PostgreSQL restart
    # (tests/system/test_faults.py). The pool terminates the connection and opens a new one.
    asyncpg.exceptions.InternalClientError,
)


# The application_name of every pooled connection: `cariosan restore` refuses while one is open.
SERVER_APPLICATION_NAME = "cariosan-server"


# Errors about a value the client sent (SQLSTATE class 22, and 54000 "program limit").
REFUSED_VALUES = (asyncpg.exceptions.DataError, asyncpg.exceptions.ProgramLimitExceededError)


def refused_value(exc: Exception) -> ValidationFailed:
    """A client's value PostgreSQL cannot take (out of range, NUL in text, too big to index)
    as VALIDATION_FAILED, in our words: PostgreSQL's own text never reaches a client."""
    if isinstance(
        exc,
        asyncpg.exceptions.CharacterNotInRepertoireError
        | asyncpg.exceptions.UntranslatableCharacterError,
    ):
        return ValidationFailed("text may not contain the NUL character (\\u0000)")
    if isinstance(exc, asyncpg.exceptions.ProgramLimitExceededError):
        return ValidationFailed("a value in the request is too large to store")
    # Also raised before sending, e.g. an integer beyond int64 for a bigint parameter.
    return ValidationFailed("a value in the request is out of range or not valid")


class DatabaseUnreachable(Exception):
    """PostgreSQL could not be reached in time, or refused us; the message is one line."""


def describe_dsn(dsn: str) -> str:
    """host:port/dbname of a DSN, without credentials, for messages and logs."""
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    port = parts.port or 5432
    return f"{host}:{port}{parts.path or '/'}"


async def connect(dsn: str, timeout: float = 10.0) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=timeout)
    except _UNAVAILABLE as exc:
        raise Unavailable(f"PostgreSQL is unavailable: {exc.__class__.__name__}") from exc


async def wait_for_database(dsn: str, wait_seconds: float) -> None:
    """Return once PostgreSQL accepts a connection; raise DatabaseUnreachable after `wait_seconds`.

    Only "not there yet" errors are waited out; a wrong password or a missing database is an
    operator mistake and fails at once.
    """
    deadline = time.monotonic() + wait_seconds
    where = describe_dsn(dsn)
    delay = 0.2
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=min(5.0, max(wait_seconds, 0.5)))
        except _TRANSIENT as exc:
            if time.monotonic() + delay > deadline:
                raise DatabaseUnreachable(
                    f"PostgreSQL at {where} did not answer within {wait_seconds:g} s "
                    f"({_reason(exc)}): check CARIOS_DATABASE_URL and that PostgreSQL is running"
                ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        except asyncpg.exceptions.InvalidPasswordError:
            raise DatabaseUnreachable(
                f"PostgreSQL at {where} rejected the credentials: check CARIOS_DATABASE_URL"
            ) from None
        except asyncpg.exceptions.InvalidCatalogNameError:
            raise DatabaseUnreachable(
                f"PostgreSQL at {where}: the database does not exist; create it or fix "
                "CARIOS_DATABASE_URL"
            ) from None
        except (asyncpg.exceptions.PostgresError, ValueError) as exc:
            raise DatabaseUnreachable(
                f"PostgreSQL at {where} refused the connection: {_reason(exc)}"
            ) from None
        else:
            await conn.close()
            return


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


# Workspaces whose event log the current `Database.connection()`/`transaction()` block appended
# to (see `note_event`); handed to `Database.on_commit` once the block has committed.
_touched: ContextVar[set[uuid.UUID] | None] = ContextVar("cariosan_touched", default=None)

OnCommit = Callable[[set[uuid.UUID]], Awaitable[None]]


def note_event(workspace_id: uuid.UUID) -> None:
    """Record that the current database block appended an event of `workspace_id`."""
    touched = _touched.get()
    if touched is not None:
        touched.add(workspace_id)


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection that knows whether it took session state (`holds_session_state`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session_state = False

    def took_session_state(self) -> None:
        # A method, not an attribute set from outside: callers hold the pool's proxy, which
        # forwards calls to the connection but keeps attribute writes for itself.
        self.session_state = True


def holds_session_state(conn: asyncpg.Connection) -> None:
    """Mark `conn` as holding state beyond its transactions (a session advisory lock): the pool
    resets it before handing it out again."""
    if isinstance(conn, PooledConnection):
        conn.took_session_state()


async def _reset(conn: asyncpg.Connection) -> None:
    """Called by the pool after its own part (rolling back a transaction left open): the full
    reset (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`) only for a connection
    that took session state. Nothing else sets any (no SET, LISTEN, cursors or temporary tables
    outside a transaction), and the full reset is a round trip on every release: two per send
    (the auth lookup and the transaction), 10 % of a send's CPU."""
    if isinstance(conn, PooledConnection) and conn.session_state:
        await conn.execute(conn.get_reset_query())
        conn.session_state = False


class Database:
    """The connection pool. Every use goes through `connection()` or `transaction()` so that a
    vanished server surfaces as `Unavailable` (503), never as a 500.

    `on_commit`, when set, is awaited with the workspaces that got new events after the
    outermost block that appended them has committed (and its connection went back to the
    pool): the event sequencer numbers the events, so that once a write is acknowledged its
    events are in the log that catch-up reads.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.on_commit: OnCommit | None = None

    @contextmanager
    def _collect_events(self) -> Iterator[set[uuid.UUID] | None]:
        """The outermost block collects the workspaces written to; nested ones add to it."""
        if _touched.get() is not None:
            yield None
            return
        touched: set[uuid.UUID] = set()
        token = _touched.set(touched)
        try:
            yield touched
        finally:
            _touched.reset(token)

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 2, max_size: int = 20) -> Database:
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=60,
                connection_class=PooledConnection,
                reset=_reset,
                server_settings={
                    # How `cariosan restore` recognises a live server (pg_stat_activity).
                    "application_name": SERVER_APPLICATION_NAME,
                    # Short OLTP statements: compiling a plan with JIT costs more than it saves
                    # (tens of ms on a query whose estimate is big, e.g. over 1,000 channels).
                    "jit": "off",
                },
            )
        except _UNAVAILABLE as exc:
            raise Unavailable(f"PostgreSQL is unavailable: {_reason(exc)}") from exc
        return cls(pool)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        with self._collect_events() as touched:
            try:
                async with self._pool.acquire(timeout=10) as conn:
                    yield conn
            except _UNAVAILABLE as exc:
                raise Unavailable(f"PostgreSQL is unavailable: {_reason(exc)}") from exc
            except REFUSED_VALUES as exc:
                raise refused_value(exc) from exc
        # Only reached when the block ended without an exception, i.e. after its commit.
        if touched and self.on_commit is not None:
            await self.on_commit(touched)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def ping(self) -> None:
        """Raise when PostgreSQL does not answer a trivial query."""
        await self.fetchval("SELECT 1")

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await conn.fetchval(query, *args)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._pool.close(), timeout=10)
        except (TimeoutError, *_UNAVAILABLE):
            self._pool.terminate()
