"""/readyz and the log say which bucket, endpoint and error when the S3 store is not ready;
by default Lethe creates its missing bucket (LETHE_S3_CREATE_BUCKET)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from tests.models_store.conftest import s3_endpoint  # noqa: F401 - the moto server fixture
from tests.models_store.store_harness import CREDENTIALS, REGION
from tests.support.service import make_settings


def _app(tmp_path: Path, endpoint: str, bucket: str, **overrides: Any) -> Any:
    from app.core.migrate import upgrade
    from app.main import create_app

    url = f"sqlite:///{tmp_path / 'lethe.db'}"
    upgrade(url)
    settings = make_settings(
        tmp_path,
        url,
        store_url=f"s3://{bucket}/models",
        s3_endpoint_url=endpoint,
        s3_region=REGION,
        s3_access_key_id=CREDENTIALS["aws_access_key_id"],
        s3_secret_access_key=CREDENTIALS["aws_secret_access_key"],
        **overrides,
    )
    return create_app(settings)


def test_readyz_names_the_missing_bucket_and_endpoint(
    tmp_path: Path,
    s3_endpoint: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:12]}"
    app = _app(tmp_path, s3_endpoint, bucket, s3_create_bucket=False)
    with TestClient(app) as client, caplog.at_level("WARNING", logger="lethe.health"):
        resp = client.get("/readyz")
    assert resp.status_code == 503
    check = resp.json()["checks"]["store"]
    assert bucket in check and s3_endpoint in check and "does not exist" in check
    assert any(bucket in r.getMessage() and s3_endpoint in r.getMessage() for r in caplog.records)
    assert CREDENTIALS["aws_secret_access_key"] not in check


def test_readyz_creates_the_missing_bucket_by_default(
    tmp_path: Path,
    s3_endpoint: str,  # noqa: F811
) -> None:
    bucket = f"fresh-{uuid.uuid4().hex[:12]}"
    with TestClient(_app(tmp_path, s3_endpoint, bucket)) as client:
        resp = client.get("/readyz")
    assert resp.status_code == 200, resp.text
    assert resp.json()["checks"]["store"] == "ok"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION, **CREDENTIALS)
    assert bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}
