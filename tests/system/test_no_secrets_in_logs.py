"""No credential in any log line at any level: a whole scenario at CARIOS_LOG_LEVEL=debug (users,
tokens, WebSockets by query and by header, a webhook with a key in its query string, S3 uploads
and downloads, a failed login, a backup), then every line of every process is searched for every
secret, token, signature and password the scenario used."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import websockets

from tests.conftest import JWT_SECRET
from tests.services.provision import S3Service, new_bucket
from tests.support.process import ServerProcess, run_cli, serve
from tests.support.webhook_receiver import Receiver

DB_PASSWORD = "pg-password-never-logged-7Q2"  # PostgreSQL trusts the test client: unused, kept


def _with_password(dsn: str) -> str:
    parts = urlsplit(dsn)
    netloc = f"{parts.username or 'postgres'}:{DB_PASSWORD}@{parts.hostname}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()


async def _live(server: ServerProcess, token: str) -> None:
    ws = server.url.replace("http://", "ws://")
    async with websockets.connect(f"{ws}/v1/ws?token={token}") as by_query:
        assert json.loads(await by_query.recv())["type"] == "connection.ready"
        await by_query.send(json.dumps({"type": "ping"}))
    headers = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(f"{ws}/v1/ws", additional_headers=headers) as by_header:
        assert json.loads(await by_header.recv())["type"] == "connection.ready"
        await by_header.send(json.dumps({"type": "resume", "after_seq": 0}))
        await asyncio.sleep(0.2)


def _scenario(server: ServerProcess, api_secret: str, receiver: Receiver) -> list[str]:
    """Runs the traffic; returns every secret value it used or was given."""
    secrets: list[str] = [api_secret]
    backend = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_secret}"})
    with backend:
        tokens = {}
        for user in ("alice", "bob"):
            assert backend.put(f"/v1/users/{user}", json={"name": user}).status_code == 200
            minted = backend.post(f"/v1/users/{user}/token")
            assert minted.status_code == 200, minted.text
            tokens[user] = minted.json()["token"]
        secrets += tokens.values()
        receiver_key = f"rk-{uuid.uuid4().hex}"
        secrets.append(receiver_key)
        hook = backend.post(
            "/v1/webhooks", json={"url": f"{receiver.url}?key={receiver_key}", "events": ["*"]}
        )
        assert hook.status_code == 201, hook.text
        secrets.append(hook.json()["secret"])
        wrong = httpx.get(
            f"{server.url}/v1/me", headers={"Authorization": "Bearer cs_wrongWrongWrong1234567"}
        )
        assert wrong.status_code == 401
        secrets.append("cs_wrongWrongWrong1234567")

    alice = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {tokens['alice']}"}
    )
    with alice:
        made = alice.post("/v1/channels", json={"id": "c", "type": "group", "members": ["bob"]})
        assert made.status_code == 201, made.text
        body = b"\x89PNG" + bytes(100)
        upload = alice.post(
            "/v1/attachments",
            json={
                "channel_id": "c",
                "filename": "p.png",
                "content_type": "image/png",
                "size": len(body),
            },
        )
        assert upload.status_code == 201, upload.text
        ticket = upload.json()
        secrets += parse_qs(urlsplit(ticket["upload_url"]).query).get("X-Amz-Signature", [])
        put = httpx.put(ticket["upload_url"], content=body, headers=ticket["upload_headers"])
        assert put.status_code == 200, put.text
        sent = alice.post(
            "/v1/channels/c/messages",
            json={"text": "with a file", "attachment_ids": [ticket["attachment_id"]]},
        )
        assert sent.status_code == 201, sent.text
        download = alice.get(f"/v1/attachments/{ticket['attachment_id']}")
        assert download.status_code == 200, download.text
        secrets += parse_qs(urlsplit(download.json()["url"]).query).get("X-Amz-Signature", [])
        assert httpx.get(download.json()["url"]).content == body

    asyncio.run(_live(server, tokens["bob"]))
    deadline = time.monotonic() + 30
    while not receiver.requests() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert receiver.requests(), "the webhook never arrived"
    secrets += [r.headers["webhook-signature"].split(",", 1)[1] for r in receiver.requests()]
    return secrets


def test_no_secret_reaches_any_log_line_at_debug(
    database_url: str, redis_url: str, redis_prefix: str, s3_service: S3Service, tmp_path: Path
) -> None:
    bucket = f"logs-{uuid.uuid4().hex[:12]}"
    new_bucket(s3_service, bucket)
    env = {
        "CARIOS_DATABASE_URL": _with_password(database_url),
        "CARIOS_REDIS_URL": redis_url,
        "CARIOS_REDIS_PREFIX": redis_prefix,
        "CARIOS_JWT_SECRET": JWT_SECRET,
        "CARIOS_S3_ENDPOINT": s3_service.endpoint,
        "CARIOS_S3_BUCKET": bucket,
        "CARIOS_S3_ACCESS_KEY": s3_service.access_key,
        "CARIOS_S3_SECRET_KEY": s3_service.secret_key,
        "CARIOS_S3_REGION": s3_service.region,
        "CARIOS_WEBHOOK_ALLOW_PRIVATE": "true",
        "CARIOS_LOG_LEVEL": "debug",
    }
    outputs: list[str] = []
    created = run_cli(["workspace", "create", "acme", "--json"], env)
    assert created.returncode == 0, created.stderr
    outputs.append(created.stderr)  # stdout is the one-time secret, meant to be shown
    api_secret = json.loads(created.stdout)["api_secret"]
    receiver = Receiver().start()
    try:
        with serve(env, tmp_path) as server:
            secrets = _scenario(server, api_secret, receiver)
            backup = run_cli(["backup", "create", "--out", str(tmp_path / "b")], env, timeout=120)
            assert backup.returncode == 0, backup.stderr
            outputs += [backup.stdout, backup.stderr]
            token = run_cli(
                ["token", "--workspace", json.loads(created.stdout)["id"], "--user", "alice"], env
            )
            assert token.returncode == 0, token.stderr
            outputs.append(token.stderr)
            secrets.append(token.stdout.strip())
        outputs.append(server.raw_log())
    finally:
        receiver.stop()
    secrets += [JWT_SECRET, DB_PASSWORD, s3_service.secret_key]
    logs = "\n".join(outputs)
    assert len(logs.splitlines()) > 50, "debug logging produced almost nothing"
    assert '"level": "debug"' in logs or '"level":"debug"' in logs
    for secret in secrets:
        assert secret and len(secret) >= 8, secret
        where = logs.find(secret)
        assert where < 0, f"a secret is logged: ...{logs[max(0, where - 200) : where + 50]}"
