"""Write-once records (the audit checkpoints): the first write of a key wins, a second one
writes nothing and says so, on both backends; with retention, S3 Object Lock keeps the
object from being deleted."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from tests.models_store.store_harness import Harness


def test_a_record_is_written_once(harness: Harness) -> None:
    store = harness.store
    assert store.put_record("audit/checkpoints/00000000000000000003.json", b'{"size": 3}')
    assert not store.put_record("audit/checkpoints/00000000000000000003.json", b'{"size": 1}')
    assert store.get_record("audit/checkpoints/00000000000000000003.json") == b'{"size": 3}'
    assert store.put_record("audit/checkpoints/00000000000000000007.json", b'{"size": 7}')
    assert store.list_records("audit/checkpoints") == [
        "audit/checkpoints/00000000000000000003.json",
        "audit/checkpoints/00000000000000000007.json",
    ]
    with pytest.raises(ValueError):
        store.put_record("../escape", b"x")


def test_filesystem_records_are_read_only(harness: Harness) -> None:
    if harness.kind != "filesystem":
        pytest.skip("file modes")
    harness.store.put_record("audit/checkpoints/1.json", b"{}")
    path = harness.root / "records" / "audit" / "checkpoints" / "1.json"
    assert not path.stat().st_mode & 0o222
    if os.geteuid() != 0:  # root ignores file modes
        with pytest.raises(PermissionError):
            path.open("wb")


def test_s3_object_lock_retains_a_record(s3_client: Any, s3_endpoint: str) -> None:
    from models_store import ModelStore
    from models_store.backends import S3Backend
    from tests.models_store.store_harness import CREDENTIALS, REGION

    bucket = f"lethe-lock-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = ModelStore(
        S3Backend(
            bucket,
            "models/v1",
            endpoint_url=s3_endpoint,
            region=REGION,
            access_key_id=CREDENTIALS["aws_access_key_id"],
            secret_access_key=CREDENTIALS["aws_secret_access_key"],
        )
    )
    key = "audit/checkpoints/00000000000000000001.json"
    assert store.put_record(key, b'{"size": 1}', retain_days=1)
    head = s3_client.head_object(Bucket=bucket, Key=f"models/v1/records/{key}")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    version = head["VersionId"]
    with pytest.raises(s3_client.exceptions.ClientError):
        s3_client.delete_object(Bucket=bucket, Key=f"models/v1/records/{key}", VersionId=version)
    assert store.get_record(key) == b'{"size": 1}'
