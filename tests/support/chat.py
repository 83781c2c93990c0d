"""Setting up chat state for tests through the public API, the way a customer's backend would."""

from __future__ import annotations

import httpx

from cariosan.domain.workspaces import NewWorkspace
from tests.support.server import RunningServer


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


async def make_user(
    server: RunningServer, workspace: NewWorkspace, user_id: str, *, role: str = "user"
) -> str:
    """Upsert a user and return a fresh token for it."""
    async with server.client(headers=bearer(workspace.api_secret)) as http:
        created = await http.put(f"/v1/users/{user_id}", json={"name": user_id, "role": role})
        assert created.status_code == 200, created.text
        minted = await http.post(f"/v1/users/{user_id}/token")
        assert minted.status_code == 200, minted.text
        token: str = minted.json()["token"]
        return token


def user_client(server: RunningServer, token: str) -> httpx.AsyncClient:
    return server.client(headers=bearer(token))


def backend_client(server: RunningServer, workspace: NewWorkspace) -> httpx.AsyncClient:
    return server.client(headers=bearer(workspace.api_secret))
