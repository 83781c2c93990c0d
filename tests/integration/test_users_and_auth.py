"""Users, tokens and authentication over real HTTP (raw httpx: the wire format is the contract)."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest

from cariosan.config import Limits, Settings
from cariosan.domain.workspaces import NewWorkspace, create_workspace
from tests.conftest import JWT_SECRET
from tests.support.server import RunningServer, start_server
from tests.support.windows import fresh_window


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here works in a workspace of its own: one server serves them all."""
    return shared_server


def _server(workspace: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {workspace.api_secret}"}


async def test_upsert_get_and_update_a_user(server: RunningServer, workspace: NewWorkspace) -> None:
    async with server.client(headers=_server(workspace)) as http:
        created = await http.put("/v1/users/alice", json={"name": "Alice", "data": {"team": "a"}})
        assert created.status_code == 200, created.text
        user = created.json()
        assert user["id"] == "alice" and user["name"] == "Alice" and user["role"] == "user"
        assert user["data"] == {"team": "a"}
        updated = await http.put("/v1/users/alice", json={"role": "admin"})
        assert updated.json()["name"] == "Alice", "fields not given are kept"
        assert updated.json()["role"] == "admin"
        fetched = await http.get("/v1/users/alice")
        assert fetched.json()["role"] == "admin"
        assert (await http.get("/v1/users/nobody")).json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "content"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"role": "emperor"}', "application/json"),
        (b'{"name": 42}', "application/json"),
        (b'{"data": "not an object"}', "application/json"),
    ],
)
async def test_malformed_or_invalid_bodies_are_422(
    server: RunningServer, workspace: NewWorkspace, body: bytes, content: str
) -> None:
    async with server.client(headers=_server(workspace)) as http:
        response = await http.put("/v1/users/bob", content=body, headers={"content-type": content})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "VALIDATION_FAILED"
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]


async def test_bad_user_id_is_422(server: RunningServer, workspace: NewWorkspace) -> None:
    async with server.client(headers=_server(workspace)) as http:
        response = await http.put("/v1/users/" + "x" * 65, json={})
        weird = await http.put("/v1/users/a%20b", json={})
    assert response.status_code == 422
    assert weird.status_code == 422


async def test_body_over_the_limit_is_413(server: RunningServer, workspace: NewWorkspace) -> None:
    async with server.client(headers=_server(workspace)) as http:
        response = await http.put("/v1/users/big", json={"name": "x" * (1024 * 1024 + 10)})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_minted_token_authenticates_the_user(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    async with server.client(headers=_server(workspace)) as http:
        await http.put("/v1/users/carol", json={"name": "Carol"})
        minted = await http.post("/v1/users/carol/token", json={"ttl_seconds": 120})
        assert minted.status_code == 200, minted.text
        default = await http.post("/v1/users/carol/token")
        assert default.status_code == 200, default.text
        missing = await http.post("/v1/users/ghost/token")
        assert missing.status_code == 404
    token = minted.json()["token"]
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "carol"
    assert claims["ws"] == str(workspace.id)
    assert claims["exp"] - claims["iat"] == 120
    assert "T" in minted.json()["expires_at"]
    # A user token may not call server-side endpoints.
    async with server.client(headers={"Authorization": f"Bearer {token}"}) as http:
        forbidden = await http.get("/v1/users/carol")
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "FORBIDDEN"


def _token(claims: dict[str, object], secret: str = JWT_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


async def test_bad_credentials_are_401(
    server: RunningServer, workspace: NewWorkspace, other_workspace: NewWorkspace
) -> None:
    async with server.client(headers=_server(workspace)) as http:
        await http.put("/v1/users/dave", json={})
    now = int(time.time())
    good = {"sub": "dave", "ws": str(workspace.id), "iat": now, "exp": now + 60}
    unsigned = jwt.encode(good, key=None, algorithm="none")  # type: ignore[arg-type]
    credentials = {
        "missing": None,
        "not bearer": "Basic abc",
        "garbage": "Bearer not-a-token",
        "wrong secret": "Bearer " + _token(good, "another-secret-that-is-long-enough-123"),
        "expired": "Bearer " + _token({**good, "iat": now - 120, "exp": now - 60}),
        "alg none": "Bearer " + unsigned,
        "other workspace": "Bearer " + _token({**good, "ws": str(other_workspace.id)}),
        "unknown workspace": "Bearer " + _token({**good, "ws": str(uuid.uuid4())}),
        "no exp": "Bearer " + _token({"sub": "dave", "ws": str(workspace.id), "iat": now}),
        "bad api secret": "Bearer cs_" + "x" * 43,
    }
    async with httpx.AsyncClient(base_url=server.url) as http:
        for name, header in credentials.items():
            headers = {"Authorization": header} if header else {}
            response = await http.get("/v1/users/dave", headers=headers)
            assert response.status_code == 401, name
            assert response.json()["error"]["code"] == "UNAUTHORIZED", name


async def test_other_workspace_secret_sees_nothing(
    server: RunningServer, workspace: NewWorkspace, other_workspace: NewWorkspace
) -> None:
    async with server.client(headers=_server(workspace)) as http:
        await http.put("/v1/users/erin", json={"name": "Erin"})
    async with server.client(headers=_server(other_workspace)) as http:
        assert (await http.get("/v1/users/erin")).status_code == 404
        assert (await http.delete("/v1/users/erin")).status_code == 404
        assert (await http.post("/v1/users/erin/token")).status_code == 404
    async with server.client(headers=_server(workspace)) as http:
        assert (await http.get("/v1/users/erin")).json()["name"] == "Erin"


async def test_delete_anonymize_and_hard(server: RunningServer, workspace: NewWorkspace) -> None:
    async with server.client(headers=_server(workspace)) as http:
        await http.put("/v1/users/frank", json={"name": "Frank", "image_url": "http://x/f.png"})
        token = (await http.post("/v1/users/frank/token")).json()["token"]
        assert (await http.delete("/v1/users/frank")).status_code == 204
        anonymized = (await http.get("/v1/users/frank")).json()
        assert anonymized["name"] is None and anonymized["image_url"] is None
        assert anonymized["deleted_at"] is not None
        await http.put("/v1/users/gina", json={"name": "Gina"})
        assert (await http.delete("/v1/users/gina", params={"mode": "hard"})).status_code == 204
        assert (await http.get("/v1/users/gina")).status_code == 404
        assert (await http.delete("/v1/users/gina")).status_code == 404
        assert (await http.delete("/v1/users/x", params={"mode": "bogus"})).status_code == 422
    # A deleted user's tokens stop working.
    async with server.client(headers={"Authorization": f"Bearer {token}"}) as http:
        assert (await http.get("/v1/me")).status_code in (401, 404)


@pytest.fixture(params=["memory", "redis"])
def limited_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """A workspace limit of 5 requests a minute, counted in memory or in real Redis."""
    tight = settings.with_overrides(limits=Limits(workspace_requests_per_minute=5))
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        tight = tight.with_overrides(redis_url=url, redis_prefix=prefix)
    return tight


async def test_rate_limit_headers_and_429(limited_settings: Settings) -> None:
    async with start_server(limited_settings) as running:
        async with running.client() as probe:
            kind = (await probe.get("/readyz")).json()["checks"]
        ws = await create_workspace(running.services.db, "limited")
        async with running.client(headers=_server(ws)) as http:
            await fresh_window(needed=10)
            statuses = []
            for _ in range(7):
                response = await http.get("/v1/users/nobody")
                statuses.append(response.status_code)
            assert statuses[:5] == [404] * 5
            assert statuses[5:] == [429, 429]
            assert response.json()["error"]["code"] == "RATE_LIMITED"
            assert int(response.headers["retry-after"]) >= 1
            assert response.headers["x-ratelimit-limit"] == "5"
            assert response.headers["x-ratelimit-remaining"] == "0"
            assert int(response.headers["x-ratelimit-reset"]) >= 1
    expected = "redis" if limited_settings.redis_url else "ephemeral"
    assert kind[expected]["status"] == "ok"
