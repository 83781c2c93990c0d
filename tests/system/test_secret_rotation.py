"""Rotating secrets as the operations page promises, against real `cariosan serve` processes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from cariosan_client import ChatClient, ServerClient, Unauthorized
from tests.conftest import JWT_SECRET
from tests.support.process import run_cli, serve

NEW_JWT_SECRET = "rotated-jwt-secret-abcdefghijklmnopqrstuvwxyz"


def _env(database_url: str, **extra: str) -> dict[str, str]:
    return {"CARIOS_DATABASE_URL": database_url, "CARIOS_JWT_SECRET": JWT_SECRET, **extra}


def _status(url: str, secret: str) -> int:
    response = httpx.put(
        url + "/v1/users/probe", json={}, headers={"Authorization": f"Bearer {secret}"}
    )
    return response.status_code


def test_rotate_secret_stops_the_old_one_at_once_or_after_grace(
    database_url: str, tmp_path: Path
) -> None:
    env = _env(database_url)
    created = json.loads(run_cli(["workspace", "create", "acme", "--json"], env).stdout)
    first = created["api_secret"]
    with serve(env, tmp_path) as server:
        assert _status(server.url, first) == 200

        rotated = run_cli(["rotate-secret", "--workspace", created["id"], "--json"], env)
        assert rotated.returncode == 0, rotated.stderr
        second = json.loads(rotated.stdout)
        assert second["workspace_id"] == created["id"]
        assert second["previous_valid_until"] is None
        assert _status(server.url, first) == 401, "the old secret must stop working at once"
        assert _status(server.url, second["api_secret"]) == 200

        graced = run_cli(
            ["rotate-secret", "--workspace", created["id"], "--grace", "1h", "--json"], env
        )
        third = json.loads(graced.stdout)
        assert third["previous_valid_until"] is not None
        assert _status(server.url, second["api_secret"]) == 200, "valid during the grace period"
        assert _status(server.url, third["api_secret"]) == 200

        run_cli(["rotate-secret", "--workspace", created["id"]], env)
        assert _status(server.url, second["api_secret"]) == 401
        assert _status(server.url, third["api_secret"]) == 401


def test_backend_first_then_rotate_with_a_chosen_secret(database_url: str, tmp_path: Path) -> None:
    """The operations page's order: the backend gets the new secret first, then rotate."""
    env = _env(database_url)
    created = json.loads(run_cli(["workspace", "create", "acme", "--json"], env).stdout)
    chosen = "cs_" + "a1b2c3d4" * 5
    with serve(env, tmp_path) as server:
        rotated = run_cli(
            ["rotate-secret", "--workspace", created["id"], "--secret", chosen, "--json"], env
        )
        assert rotated.returncode == 0, rotated.stderr
        assert json.loads(rotated.stdout)["api_secret"] == chosen
        assert _status(server.url, chosen) == 200
        assert _status(server.url, created["api_secret"]) == 401
        reused = run_cli(["rotate-secret", "--workspace", created["id"], "--secret", chosen], env)
        assert reused.returncode == 1 and "already in use" in reused.stderr
        weak = run_cli(["rotate-secret", "--workspace", created["id"], "--secret", "cs_short"], env)
        assert weak.returncode == 1 and "at least 32" in weak.stderr
        assert "Traceback" not in reused.stderr + weak.stderr


@pytest.mark.parametrize(
    "args", [["--workspace", "not-a-uuid"], ["--workspace", "%s", "--grace", "soon"]]
)
def test_rotate_secret_bad_arguments(args: list[str], database_url: str) -> None:
    args = [a.replace("%s", "00000000-0000-0000-0000-000000000000") for a in args]
    result = run_cli(["rotate-secret", *args], _env(database_url))
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_rotate_secret_of_unknown_workspace(database_url: str) -> None:
    result = run_cli(
        ["rotate-secret", "--workspace", "00000000-0000-0000-0000-000000000000"],
        _env(database_url),
    )
    assert result.returncode == 1
    assert "no such workspace" in result.stderr


async def _me(url: str, token: str) -> str:
    async with ChatClient(url, token=token) as chat:
        return (await chat.me()).user.id


def test_new_jwt_secret_logs_everyone_out_unless_previous_is_kept(
    database_url: str, tmp_path: Path
) -> None:
    env = _env(database_url)
    workspace = json.loads(run_cli(["workspace", "create", "acme", "--json"], env).stdout)

    async def mint(url: str) -> str:
        async with ServerClient(url, workspace["api_secret"]) as server:
            await server.upsert_user("alice", name="Alice")
            return (await server.create_token("alice")).token

    with serve(env, tmp_path) as server:
        old_token = asyncio.run(mint(server.url))
        assert asyncio.run(_me(server.url, old_token)) == "alice"

    with serve(_env(database_url, CARIOS_JWT_SECRET=NEW_JWT_SECRET), tmp_path) as server:
        with pytest.raises(Unauthorized) as refused:
            asyncio.run(_me(server.url, old_token))
        assert refused.value.code == "UNAUTHORIZED"
        new_token = asyncio.run(mint(server.url))
        assert asyncio.run(_me(server.url, new_token)) == "alice"

    smooth = _env(
        database_url, CARIOS_JWT_SECRET=NEW_JWT_SECRET, CARIOS_JWT_SECRET_PREVIOUS=JWT_SECRET
    )
    with serve(smooth, tmp_path) as server:
        assert asyncio.run(_me(server.url, old_token)) == "alice"
        assert asyncio.run(_me(server.url, new_token)) == "alice"


def test_token_command_mints_a_working_token(database_url: str, tmp_path: Path) -> None:
    env = _env(database_url)
    workspace = json.loads(run_cli(["workspace", "create", "acme", "--json"], env).stdout)
    with serve(env, tmp_path) as server:
        httpx.put(
            server.url + "/v1/users/bob",
            json={},
            headers={"Authorization": f"Bearer {workspace['api_secret']}"},
        )
        minted = run_cli(
            ["token", "--workspace", workspace["id"], "--user", "bob", "--ttl", "60"], env
        )
        assert minted.returncode == 0, minted.stderr
        assert asyncio.run(_me(server.url, minted.stdout.strip())) == "bob"
        missing = run_cli(["token", "--workspace", workspace["id"], "--user", "ghost"], env)
        assert missing.returncode == 1
        assert "no such user" in missing.stderr
