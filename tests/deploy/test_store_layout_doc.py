"""docs/DEPLOYMENT.md's boto3 snippet, run as written against an S3 server holding a real
store: it checks a version's sha256 from the manifest and blobs alone, and catches a
corrupt blob. If the store's layout or assembly changes, this fails until the doc does."""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from models_store import open_store
from tests.models_store.conftest import s3_endpoint  # noqa: F401 - the moto server fixture
from tests.models_store.safetensors_builders import METADATA, tiny_model, to_bytes
from tests.models_store.store_harness import CREDENTIALS, REGION

ROOT = Path(__file__).resolve().parents[2]


def documented_check_version() -> Any:
    text = (ROOT / "docs" / "DEPLOYMENT.md").read_text()
    block = re.search(r"Checking a version with boto3 alone.*?```python\n(.*?)```", text, re.S)
    assert block, "DEPLOYMENT.md has no boto3 snippet"
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), "DEPLOYMENT.md", "exec"), namespace)
    return namespace["check_version"]


@pytest.mark.parametrize("prefix", ["checkpoints/prod", ""])
def test_the_documented_snippet_checks_a_stored_version(
    s3_endpoint: str,  # noqa: F811
    prefix: str,
) -> None:
    check_version = documented_check_version()
    bucket = f"doc-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION, **CREDENTIALS)
    s3.create_bucket(Bucket=bucket)
    store = open_store(
        f"s3://{bucket}/{prefix}",
        s3_endpoint_url=s3_endpoint,
        s3_region=REGION,
        s3_access_key_id=CREDENTIALS["aws_access_key_id"],
        s3_secret_access_key=CREDENTIALS["aws_secret_access_key"],
    )
    # version 1, and a version 2 that changed only its head (it shares the backbone blobs)
    weights = tiny_model(0)
    weights["counter"] = np.arange(3, dtype=np.int64)  # two item sizes: canonical order
    v1 = store.put_checkpoint(to_bytes(weights, METADATA)).manifest
    v2 = store.put_checkpoint(to_bytes({**weights, **tiny_model(0, head_seed=7)}, METADATA))
    assert 0 < v2.new_bytes < v2.total_bytes
    for manifest in (v1, v2.manifest):
        assert check_version(s3, bucket, prefix, manifest.sha256) == manifest.size
        assert hashlib.sha256(store.read_checkpoint(manifest)).hexdigest() == manifest.sha256

    # a blob whose bytes changed is caught, by name
    tensor = v2.manifest.tensors[-1]
    key = f"blobs/sha256/{tensor.digest[:2]}/{tensor.digest}"
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{key}" if prefix else key, Body=b"\0" * 8)
    with pytest.raises(ValueError, match=tensor.name):
        check_version(s3, bucket, prefix, v2.manifest.sha256)
