"""Fixtures for the model-store contract suite: one store per backend.

The S3 backend runs against moto's S3 server, started once per session on loopback, with a
fresh bucket per test.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from models_store import ModelStore
from models_store.backends import FilesystemBackend, S3Backend
from tests.models_store.store_harness import CREDENTIALS, REGION, Harness, MiB
from tests.support.services import free_port


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: str) -> Any:
    return boto3.session.Session().client(
        "s3", endpoint_url=s3_endpoint, region_name=REGION, **CREDENTIALS
    )


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    name = f"lethe-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["filesystem", "s3"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    if request.param == "filesystem":
        root = tmp_path / "store"
        return Harness("filesystem", ModelStore(FilesystemBackend(root)), root=root)
    endpoint = request.getfixturevalue("s3_endpoint")
    client = request.getfixturevalue("s3_client")
    bucket = request.getfixturevalue("s3_bucket")
    backend = S3Backend(
        bucket,
        "models/v1",
        endpoint_url=endpoint,
        region=REGION,
        access_key_id=CREDENTIALS["aws_access_key_id"],
        secret_access_key=CREDENTIALS["aws_secret_access_key"],
        # Small enough that the multipart path is exercised by a ~6 MiB tensor (S3's
        # minimum part size is 5 MiB).
        multipart_threshold=5 * MiB,
        multipart_chunksize=5 * MiB,
    )
    return Harness("s3", ModelStore(backend), client=client, bucket=bucket, prefix="models/v1")
