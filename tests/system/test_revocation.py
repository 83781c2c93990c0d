"""Revocation reaches every node at once (issue 11, point 3): real `cariosan serve` processes
sharing PostgreSQL and Redis.

The nodes run with their periodic check of open sockets set to an hour, so a socket closed here
was closed by the notice the acting node sent over Redis, not by that backstop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import JWT_SECRET
from tests.support.live import live, ws_url
from tests.support.process import ServerProcess, serve
from tests.system.test_realtime import Tenant

NEW_JWT_SECRET = "rotated-jwt-secret-abcdefghijklmnopqrstuvwxyz"


def _env(database_url: str, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {
        "CARIOS_DATABASE_URL": database_url,
        "CARIOS_JWT_SECRET": JWT_SECRET,
        "CARIOS_REDIS_URL": redis_url,
        "CARIOS_REDIS_PREFIX": prefix,
        "CARIOS_REVOCATION_CHECK_SECONDS": "3600",
        **extra,
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


async def _status(url: str, token: str) -> int:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        return response.status_code


async def _ws_refused(url: str, token: str) -> int | None:
    async with websockets.connect(ws_url(url, token)) as socket:
        try:
            await socket.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
    return None


async def test_revoke_and_both_deletes_close_the_users_sockets_on_every_node(
    nodes: tuple[dict[str, str], list[ServerProcess]],
) -> None:
    env, (one, two) = nodes
    tenant = Tenant(env, one.url)
    await tenant.users(["alice", "bob", "carol", "dave"])
    channel = await tenant.channel("carol", ["bob"])
    backend = httpx.AsyncClient(
        base_url=one.url, headers={"Authorization": f"Bearer {tenant.secret}"}, timeout=30
    )
    async with backend:
        # Revoked through node one: the sockets on both nodes go.
        async with (
            live(one.url, tenant.tokens["alice"]) as a1,
            live(two.url, tenant.tokens["alice"]) as a2,
        ):
            assert (await backend.post("/v1/users/alice/revoke-tokens")).status_code == 204
            assert list(await asyncio.gather(a1.close_code(), a2.close_code())) == [4001, 4001]
        assert await _status(two.url, tenant.tokens["alice"]) == 401
        assert await _ws_refused(two.url, tenant.tokens["alice"]) == 4001

        # Hard-deleted through node one while connected to node two; carol, on node one,
        # is told that bob left the channel.
        async with (
            live(two.url, tenant.tokens["bob"]) as b2,
            live(one.url, tenant.tokens["carol"]) as carol,
        ):
            deleted = await backend.delete("/v1/users/bob", params={"mode": "hard"})
            assert deleted.status_code == 204
            assert await b2.close_code() == 4001
            [removed] = await carol.events(1, types=("member.removed",))
            assert (removed["channel_id"], removed["member"]["user_id"]) == (channel, "bob")

        # Anonymized through node one while connected to node two.
        async with live(two.url, tenant.tokens["dave"]) as d2:
            assert (await backend.delete("/v1/users/dave")).status_code == 204
            assert await d2.close_code() == 4001
        assert await _status(two.url, tenant.tokens["dave"]) == 401


async def test_a_retired_jwt_secret_closes_its_sockets_on_every_node(
    nodes: tuple[dict[str, str], list[ServerProcess]], tmp_path: Path
) -> None:
    env, (one, two) = nodes
    tenant = Tenant(env, one.url)
    await tenant.users(["alice", "bob"])
    channel = await tenant.channel("bob", ["alice"])
    old = tenant.tokens["alice"]
    with ExitStack() as started:
        async with live(two.url, old) as alice:
            # Step one of a rotation: a node with the new secret that keeps the old one. The
            # old token's socket stays open and keeps receiving.
            (tmp_path / "n3").mkdir()
            both = {**env, "CARIOS_JWT_SECRET": NEW_JWT_SECRET}
            both["CARIOS_JWT_SECRET_PREVIOUS"] = JWT_SECRET
            started.enter_context(serve(both, tmp_path / "n3"))
            async with tenant.http("bob") as bob:
                sent = await bob.post(f"/v1/channels/{channel}/messages", json={"text": "still"})
                assert sent.status_code == 201
            [event] = await alice.events(1, types=("message.new",))
            assert event["message"]["text"] == "still"

            # Step two: a node started with the new secret alone retires the old one.
            (tmp_path / "n4").mkdir()
            new_only = {**env, "CARIOS_JWT_SECRET": NEW_JWT_SECRET}
            four = started.enter_context(serve(new_only, tmp_path / "n4"))
            assert await alice.close_code() == 4001

        # Every node refuses the old token now, those still configured with its secret too.
        for node in (one, two, four):
            assert await _status(node.url, old) == 401
        assert await _ws_refused(one.url, old) == 4001
        async with httpx.AsyncClient(base_url=four.url, timeout=30) as http:
            minted = await http.post(
                "/v1/users/alice/token", headers={"Authorization": f"Bearer {tenant.secret}"}
            )
        assert await _status(four.url, minted.json()["token"]) == 200
