"""The statements one real `POST /v1/channels/{id}/messages` issues, taken from the server
itself so that the pgbench comparison cannot drift from what the code does.

How: the real app (create_app, uvicorn, its own pool) runs inside this process against the
bench's database for a moment, every pool connection carries an asyncpg query logger, and an
ASGI wrapper marks the request's context, so that statements of the request's task (its
transaction, the auth and access lookups, the pool's reset on release) are told apart from
those of the background jobs (sequencer, hub, webhooks). Why not the alternatives here:
pg_stat_statements needs `shared_preload_libraries` (a restart of a PostgreSQL shared with
others), and `log_statement` writes to the server's log, which a bench cannot count on reading.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import asyncpg
import httpx
import uvicorn
from tests.support.server import wait_ready

from bench.send_scripts import Statement
from cariosan.config import load_settings
from cariosan.http.app import create_app
from cariosan.obs.logging import configure_logging
from cariosan.server import uvicorn_options
from cariosan.services import Services

_IN_REQUEST: ContextVar[bool] = ContextVar("bench_send_in_request", default=False)
# Introspection asyncpg does once per connection and type; not what a warm server sends.
_INTROSPECTION = "pg_catalog.pg_type"
# Sends before the one captured: each pool connection has then prepared the send's statements
# and the server has cached the token, as during a long run.
_WARM_UP = 6

ASGI = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


@dataclass
class Captured:
    request: list[Statement] = field(default_factory=list)
    background: list[Statement] = field(default_factory=list)
    message_id: str = ""


def _marking(app: ASGI) -> ASGI:
    async def marked(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        token = _IN_REQUEST.set(scope["type"] == "http")
        try:
            await app(scope, receive, send)
        finally:
            _IN_REQUEST.reset(token)

    return marked


async def capture_send(env: dict[str, str], token: str, channel_id: str, text: str) -> Captured:
    """Send messages as the token's user into `channel_id` through an in-process server; the
    statements of the last send (its request, and what background jobs ran meanwhile)."""
    captured = Captured()
    recording = False

    def log(record: Any) -> None:
        # Called with call_soon from the query's task: its context says whose query it was.
        if recording and _INTROSPECTION not in record.query:
            where = captured.request if _IN_REQUEST.get() else captured.background
            where.append(Statement(record.query, tuple(record.args)))

    real_create_pool = asyncpg.create_pool

    def create_pool(*args: Any, **kwargs: Any) -> Any:
        given = kwargs.pop("init", None)

        async def init(conn: asyncpg.Connection) -> None:
            conn.add_query_logger(log)
            if given is not None:
                await given(conn)

        return real_create_pool(*args, init=init, **kwargs)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    settings = load_settings(
        {**env, "CARIOS_PORT": str(port), "CARIOS_PUBLIC_URL": f"http://127.0.0.1:{port}"},
        dotenv=None,
    )
    # As `cariosan serve` does at start: otherwise every request is logged at info.
    configure_logging(settings.log_level)
    failures: list[str] = []
    with mock.patch.object(asyncpg, "create_pool", create_pool):
        services = Services(settings)
        app = _marking(create_app(services, on_boot_failure=failures.append))
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            **uvicorn_options(settings, heartbeat=False),
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_ready(url, timeout=30)
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
                path = f"/v1/channels/{channel_id}/messages"
                for _ in range(_WARM_UP):
                    warm = await http.post(path, json={"text": "warm-up"})
                    assert warm.status_code == 201, warm.text
                recording = True
                sent = await http.post(path, json={"text": text})
                # The sequencer's round for this send has run when the request returns.
                recording = False
            if sent.status_code != 201:
                raise RuntimeError(f"the captured send failed: {sent.status_code} {sent.text}")
            captured.message_id = sent.json()["id"]
        finally:
            server.should_exit = True
            try:
                await asyncio.wait_for(serving, timeout=15)
            finally:
                sock.close()
    if failures:
        raise RuntimeError(f"the capture server did not boot: {failures[0]}")
    return captured
