"""A workspace ban closes the user's sockets on every node (issue 14, point 2): real
`cariosan serve` processes sharing PostgreSQL and Redis.

The nodes run with their periodic check of open sockets set to an hour, so a socket closed here
was closed by the notice the banning node sent over Redis, not by that backstop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import JWT_SECRET
from tests.support.live import live, ws_url
from tests.support.process import ServerProcess, serve
from tests.system.test_realtime import Tenant


def _env(database_url: str, redis_url: str, prefix: str) -> dict[str, str]:
    return {
        "CARIOS_DATABASE_URL": database_url,
        "CARIOS_JWT_SECRET": JWT_SECRET,
        "CARIOS_REDIS_URL": redis_url,
        "CARIOS_REDIS_PREFIX": prefix,
        "CARIOS_REVOCATION_CHECK_SECONDS": "3600",
    }


@pytest.fixture
def nodes(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> Iterator[tuple[dict[str, str], list[ServerProcess]]]:
    env = _env(database_url, redis_url, redis_prefix)
    (tmp_path / "n1").mkdir()
    (tmp_path / "n2").mkdir()
    with serve(env, tmp_path / "n1") as one, serve(env, tmp_path / "n2") as two:
        yield env, [one, two]


async def _ws_refused(url: str, token: str) -> int | None:
    async with websockets.connect(ws_url(url, token)) as socket:
        try:
            await socket.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
    return None


async def test_a_workspace_ban_closes_the_users_sockets_on_every_node_with_4003(
    nodes: tuple[dict[str, str], list[ServerProcess]],
) -> None:
    env, (one, two) = nodes
    tenant = Tenant(env, one.url)
    await tenant.users(["alice", "bob"])
    backend = httpx.AsyncClient(
        base_url=one.url, headers={"Authorization": f"Bearer {tenant.secret}"}, timeout=30
    )
    async with backend:
        async with (
            live(one.url, tenant.tokens["alice"]) as a1,
            live(two.url, tenant.tokens["alice"]) as a2,
            live(two.url, tenant.tokens["bob"]) as b2,
        ):
            banned = await backend.post("/v1/bans", json={"user_id": "alice", "reason": "spam"})
            assert banned.status_code == 201, banned.text
            assert list(await asyncio.gather(a1.close_code(), a2.close_code())) == [4003, 4003]
            await b2.send({"type": "ping"})
            assert (await b2.next())["type"] == "pong"
        assert await _ws_refused(two.url, tenant.tokens["alice"]) == 4003
        # Unbanned through node two: both nodes let her in again.
        async with httpx.AsyncClient(
            base_url=two.url, headers={"Authorization": f"Bearer {tenant.secret}"}, timeout=30
        ) as via_two:
            assert (await via_two.delete("/v1/bans/alice")).status_code == 204
        async with live(one.url, tenant.tokens["alice"]) as again:
            assert again.ready["user_id"] == "alice"
