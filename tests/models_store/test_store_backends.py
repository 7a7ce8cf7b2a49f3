"""What is specific to each backend: URLs, on-disk / in-bucket layout, reachability."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from models_store import ModelStore, StoreError, open_store
from models_store.backends import FilesystemBackend, S3Backend
from tests.models_store.safetensors_builders import METADATA, tiny_model, to_bytes
from tests.models_store.store_harness import CREDENTIALS, REGION


def test_importing_the_store_loads_neither_torch_nor_numpy() -> None:
    code = (
        "import sys, models_store; "
        "bad = sorted({'torch', 'numpy'} & set(sys.modules)); "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# filesystem --------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["file-url", "path", "relative"])
def test_open_store_filesystem_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    root = tmp_path / "store"
    monkeypatch.chdir(tmp_path)
    url = {"file-url": root.as_uri(), "path": str(root), "relative": "store"}[form]
    store = open_store(url)
    assert isinstance(store.backend, FilesystemBackend)
    assert store.backend.root == root
    assert not root.exists()  # opening creates nothing
    store.ping()
    assert root.is_dir()


def test_filesystem_layout_and_rerun_rewrites_nothing(tmp_path: Path) -> None:
    store = open_store(tmp_path.as_uri())
    manifest = store.put_checkpoint(to_bytes(tiny_model(), METADATA)).manifest

    manifest_path = tmp_path / "manifests" / f"{manifest.sha256}.json"
    assert json.loads(manifest_path.read_bytes())["sha256"] == manifest.sha256
    paths = [tmp_path / "blobs" / "sha256" / t.digest[:2] / t.digest for t in manifest.tensors]
    assert all(p.is_file() for p in paths)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert files == sorted({manifest_path, *paths})  # no temp files left behind

    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}
    store.put_checkpoint(to_bytes(tiny_model(), METADATA))
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files} == before


def test_filesystem_orphan_temp_file_is_ignored(tmp_path: Path) -> None:
    """A crash after the temp file was written but before the rename: no blob exists."""
    store = open_store(str(tmp_path))
    digest = "ab" * 32
    orphan = tmp_path / "blobs" / "sha256" / "ab" / f".{digest}.x1y2.tmp"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half a tensor")
    assert not store.has_blob(digest)
    payload = b"the real bytes"
    digest = store.put_blob(payload)
    assert store.get_blob(digest) == payload


def test_filesystem_ping_fails_when_root_is_unusable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="not usable"):
        open_store(str(blocker / "store")).ping()


@pytest.mark.parametrize("url", ["http://example.com/x", "file://otherhost/x", "", "ftp://x"])
def test_open_store_refuses_unknown_urls(url: str) -> None:
    with pytest.raises(ValueError):
        open_store(url)


# s3 ----------------------------------------------------------------------------------------


def _s3_store(url: str, endpoint: str, create_bucket: bool = False) -> ModelStore:
    return open_store(
        url,
        s3_endpoint_url=endpoint,
        s3_region=REGION,
        s3_access_key_id=CREDENTIALS["aws_access_key_id"],
        s3_secret_access_key=CREDENTIALS["aws_secret_access_key"],
        s3_create_bucket=create_bucket,
    )


def test_open_store_s3_url_uses_bucket_and_prefix(
    s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    store = _s3_store(f"s3://{s3_bucket}/lethe/prod/", s3_endpoint)
    assert isinstance(store.backend, S3Backend)
    assert store.url == f"s3://{s3_bucket}/lethe/prod"
    store.ping()
    manifest = store.put_checkpoint(to_bytes(tiny_model(), METADATA)).manifest

    listed = s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    keys = {item["Key"] for item in listed}
    assert f"lethe/prod/manifests/{manifest.sha256}.json" in keys
    digest = manifest.tensors[0].digest
    assert f"lethe/prod/blobs/sha256/{digest[:2]}/{digest}" in keys
    assert all(key.startswith("lethe/prod/") for key in keys)
    assert store.read_checkpoint(manifest)[:8] == manifest.header[:8]

    bare = _s3_store(f"s3://{s3_bucket}", s3_endpoint)
    assert bare.url == f"s3://{s3_bucket}"
    assert not bare.has_manifest(manifest.sha256)  # other prefix, other store


def test_s3_ping_fails_for_missing_bucket_naming_bucket_and_endpoint(s3_endpoint: str) -> None:
    with pytest.raises(StoreError) as raised:
        _s3_store("s3://no-such-bucket-here/x", s3_endpoint).ping()
    message = str(raised.value)
    assert "'no-such-bucket-here'" in message and s3_endpoint in message
    assert "does not exist" in message and "LETHE_S3_CREATE_BUCKET" in message


def test_s3_ping_creates_a_missing_bucket_when_allowed(
    s3_endpoint: str, s3_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = f"created-{uuid.uuid4().hex[:12]}"
    store = _s3_store(f"s3://{bucket}/models", s3_endpoint, create_bucket=True)
    with caplog.at_level("WARNING", logger="lethe.store"):
        store.ping()
    assert bucket in {b["Name"] for b in s3_client.list_buckets()["Buckets"]}
    assert any(bucket in r.getMessage() for r in caplog.records)
    store.ping()  # it exists now: nothing to create
    manifest = store.put_checkpoint(to_bytes(tiny_model(), METADATA)).manifest
    assert store.read_checkpoint(manifest)[:8] == manifest.header[:8]


def test_s3_ping_fails_when_server_is_down() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreError, match="not reachable"):
        _s3_store("s3://bucket/x", f"http://127.0.0.1:{port}").ping()


def test_s3_explicit_settings_win_over_aws_environment(
    s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Explicit arguments win over whatever AWS_* variables the process has."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    store = _s3_store(f"s3://{s3_bucket}", s3_endpoint)
    store.ping()
    assert os.environ["AWS_ACCESS_KEY_ID"] == "from-env"
