"""The server against a real S3 server (SeaweedFS): bucket made at boot, status in /readyz."""

from __future__ import annotations

import uuid

from cariosan.config import Settings
from tests.services.provision import S3Service, s3_client
from tests.support.server import start_server


async def test_bucket_is_created_at_boot_and_reported(
    settings: Settings, s3_service: S3Service
) -> None:
    bucket = f"cariosan-{uuid.uuid4().hex[:12]}"
    with_s3 = settings.with_overrides(
        s3_endpoint=s3_service.endpoint,
        s3_bucket=bucket,
        s3_access_key=s3_service.access_key,
        s3_secret_key=s3_service.secret_key,
        s3_region=s3_service.region,
    )
    async with start_server(with_s3) as running, running.client() as http:
        ready = (await http.get("/readyz")).json()
    assert ready["checks"]["s3"] == {"status": "ok", "kind": "s3"}
    names = [b["Name"] for b in s3_client(s3_service).list_buckets()["Buckets"]]
    assert bucket in names
    assert s3_service.secret_key not in str(ready)


async def test_s3_down_is_reported_but_not_fatal(settings: Settings) -> None:
    down = settings.with_overrides(
        s3_endpoint="http://127.0.0.1:9",
        s3_access_key="k",
        s3_secret_key="s",
    )
    async with start_server(down) as running, running.client() as http:
        response = await http.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["s3"]["status"] == "error"
