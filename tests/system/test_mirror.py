"""`cariosan attachments mirror` as an operator runs it: a real process copying the attachment
bucket (SeaweedFS) to a second bucket and to a folder, only what changed, and `--remove`."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.services.provision import S3Service, new_bucket, s3_client
from tests.support.process import run_cli


def _env(s3: S3Service, bucket: str) -> dict[str, str]:
    return {
        "CARIOS_S3_ENDPOINT": s3.endpoint,
        "CARIOS_S3_BUCKET": bucket,
        "CARIOS_S3_ACCESS_KEY": s3.access_key,
        "CARIOS_S3_SECRET_KEY": s3.secret_key,
        "CARIOS_S3_REGION": s3.region,
    }


def _mirror(env: dict[str, str], cwd: Path, *args: str) -> dict[str, Any]:
    done = run_cli(["attachments", "mirror", *args, "--json"], env, cwd=cwd, timeout=120)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _counts(report: dict[str, Any]) -> tuple[int, int, int]:
    return report["copied"], report["skipped"], report["removed"]


def _bucket_contents(s3: S3Service, bucket: str, prefix: str = "") -> dict[str, bytes]:
    client = s3_client(s3)
    found = {}
    for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        found[item["Key"][len(prefix) :]] = body
    return found


def _folder_contents(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.fixture
def source(s3_service: S3Service) -> tuple[str, dict[str, bytes]]:
    """A source bucket with attachments, one of them big enough for a multipart upload."""
    bucket = f"mirror-src-{uuid.uuid4().hex[:8]}"
    new_bucket(s3_service, bucket)
    workspace = uuid.uuid4()
    files = {
        f"{workspace}/{uuid.uuid4()}/photo.png": os.urandom(70_000),
        f"{workspace}/{uuid.uuid4()}/notes café.txt": b"hello",
        f"{workspace}/{uuid.uuid4()}/big.bin": os.urandom(9 * 1024 * 1024),
    }
    client = s3_client(s3_service)
    for key, body in files.items():
        if len(body) > 8 * 1024 * 1024:
            import io

            client.upload_fileobj(io.BytesIO(body), bucket, key)  # multipart: ETag is not MD5
        else:
            client.put_object(Bucket=bucket, Key=key, Body=body)
    return bucket, files


def test_mirror_to_a_second_bucket_and_a_folder(
    s3_service: S3Service, source: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    bucket, files = source
    env = _env(s3_service, bucket)
    target_bucket = f"mirror-dst-{uuid.uuid4().hex[:8]}"
    new_bucket(s3_service, target_bucket)
    to_bucket = f"s3://{target_bucket}/backup/"
    folder = tmp_path / "copy"

    first = _mirror(env, tmp_path, to_bucket)
    assert _counts(first) == (3, 0, 0)
    assert first["bytes_copied"] == sum(len(b) for b in files.values())
    assert _bucket_contents(s3_service, target_bucket, "backup/") == files
    assert _counts(_mirror(env, tmp_path, str(folder))) == (3, 0, 0)
    assert _folder_contents(folder) == files

    # Nothing changed: nothing copied.
    assert _counts(_mirror(env, tmp_path, to_bucket)) == (0, 3, 0)
    assert _counts(_mirror(env, tmp_path, str(folder))) == (0, 3, 0)

    # One file deleted at the source, one changed (same size), one added.
    keys = sorted(files)
    client = s3_client(s3_service)
    deleted = next(k for k in keys if k.endswith("photo.png"))
    changed = next(k for k in keys if k.endswith(".txt"))
    added = f"{uuid.uuid4()}/{uuid.uuid4()}/new.pdf"
    client.delete_object(Bucket=bucket, Key=deleted)
    client.put_object(Bucket=bucket, Key=changed, Body=b"HELLO")
    client.put_object(Bucket=bucket, Key=added, Body=b"%PDF-1.4")
    expected = {k: v for k, v in files.items() if k != deleted} | {
        changed: b"HELLO",
        added: b"%PDF-1.4",
    }

    # Without --remove the deleted file stays in the target.
    assert _counts(_mirror(env, tmp_path, to_bucket)) == (2, 1, 0)
    assert deleted in _bucket_contents(s3_service, target_bucket, "backup/")
    # With --remove it goes, like `mc mirror --remove`.
    assert _counts(_mirror(env, tmp_path, to_bucket, "--remove")) == (0, 3, 1)
    assert _bucket_contents(s3_service, target_bucket, "backup/") == expected
    assert _counts(_mirror(env, tmp_path, str(folder), "--remove")) == (2, 1, 1)
    assert _folder_contents(folder) == expected
    assert _counts(_mirror(env, tmp_path, str(folder), "--remove")) == (0, 3, 0)

    # A file damaged in the folder copy is noticed (by its checksum) and copied again.
    damaged = folder / changed
    damaged.write_bytes(b"hellx")
    assert _counts(_mirror(env, tmp_path, str(folder))) == (1, 2, 0)
    assert damaged.read_bytes() == b"HELLO"


def test_mirror_text_output_and_target_options(
    s3_service: S3Service, source: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    bucket, _ = source
    env = _env(s3_service, bucket)
    done = run_cli(["attachments", "mirror", str(tmp_path / "f")], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "copied 3" in done.stdout and "skipped 0" in done.stdout and "removed 0" in done.stdout
    assert s3_service.secret_key not in done.stdout + done.stderr

    # The target's own credentials: wrong ones fail in one line, without a traceback.
    refused = run_cli(
        ["attachments", "mirror", "s3://elsewhere/x", "--access-key", "nobody",
         "--secret-key", "wrong-secret-value"],
        env,
        cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.startswith("cariosan: error:") and "Traceback" not in refused.stderr
    assert "wrong-secret-value" not in refused.stderr
    bad = run_cli(["attachments", "mirror", "ftp://host/x"], env, cwd=tmp_path)
    assert bad.returncode == 1 and "s3://bucket/prefix" in bad.stderr
    itself = run_cli(["attachments", "mirror", f"s3://{bucket}/copy"], env, cwd=tmp_path)
    assert itself.returncode == 1 and "inside the source bucket" in itself.stderr


def test_mirror_of_the_local_store(tmp_path: Path) -> None:
    """`cariosan dev` keeps files in CARIOS_STORAGE_DIR: that folder mirrors the same way."""
    store = tmp_path / "attachments"
    files = {f"{uuid.uuid4()}/{uuid.uuid4()}/a.txt": b"local", "w/x/b.bin": os.urandom(1000)}
    for key, body in files.items():
        (store / key).parent.mkdir(parents=True, exist_ok=True)
        (store / key).write_bytes(body)
    (store / "w" / "x" / ".b.bin.123.part").write_bytes(b"partial upload")
    env = {"CARIOS_STORAGE_DIR": str(store)}
    target = tmp_path / "mirror"
    assert _counts(_mirror(env, tmp_path, str(target))) == (2, 0, 0)
    assert _folder_contents(target) == files
    assert _counts(_mirror(env, tmp_path, str(target))) == (0, 2, 0)
    manifest = json.loads((target / ".cariosan-mirror.json").read_text())
    assert manifest["w/x/b.bin"]["etag"] == hashlib.md5(files["w/x/b.bin"]).hexdigest()
