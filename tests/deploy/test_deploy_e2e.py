"""The distributed deployment end to end on this machine: the API as a uvicorn subprocess
(`lethe serve`), two Celery worker processes, PostgreSQL, Redis and an S3 server on
loopback (moto), all configured by LETHE_* variables only. A request submitted over HTTP
completes, and the checkpoint downloaded through the API has the recorded sha256."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tests.support.processes import WorkerProcess, settings_env
from tests.support.requests import submit, training_ids, wait_for_status
from tests.support.service import create_key, make_settings
from tests.support.services import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
S3 = {"aws_access_key_id": "lethe-test", "aws_secret_access_key": "lethe-test-secret"}
REGION = "us-east-1"
BUCKET = "lethe-e2e"

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **S3).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


class ApiProcess:
    """`python -m lethe.cli serve` (what the `lethe serve` entry point runs)."""

    def __init__(self, settings: Any, log_path: Path):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
        env.update(settings_env(settings))
        cmd = [sys.executable, "-m", "lethe.cli", "serve", "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port)]
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(self._up, timeout=60, what="the API to answer /healthz")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the API exited:\n{self.log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def stack(
    postgres_url: str, redis_url: str, s3_server: str, tmp_path: Path, demo_artifacts: Any
) -> Iterator[Any]:
    from lethe.demo import seed_demo
    from workers.runtime import build_runtime

    settings = make_settings(
        tmp_path,
        postgres_url,
        broker_url=redis_url,
        store_url=f"s3://{BUCKET}/models",
        s3_endpoint_url=s3_server,
        s3_region=REGION,
        s3_access_key_id=S3["aws_access_key_id"],
        s3_secret_access_key=S3["aws_secret_access_key"],
    )
    rt = build_runtime(settings)
    assert seed_demo(rt, artifacts=demo_artifacts)
    started: list[Any] = []
    try:
        with ThreadPoolExecutor(3) as pool:
            futures = [
                pool.submit(WorkerProcess, settings, tmp_path / "w1.log", name="w1", beat=True),
                pool.submit(WorkerProcess, settings, tmp_path / "w2.log", name="w2"),
                pool.submit(ApiProcess, settings, tmp_path / "api.log"),
            ]
            errors = []
            for f in futures:
                try:
                    started.append(f.result())
                except Exception as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]
        yield rt, started[-1], started[:2]
    finally:
        for proc in started:
            proc.stop()


def test_a_request_over_http_completes_and_the_checkpoint_comes_from_s3(stack: Any) -> None:
    rt, api, workers = stack
    headers = {"X-API-Key": create_key(rt, ["admin"])}
    forget = training_ids(rt, label=3)
    with httpx.Client(base_url=api.url, timeout=30) as client:
        ready = client.get("/readyz")
        assert ready.json()["checks"] == {"database": "ok", "store": "ok", "broker": "ok"}

        accepted = submit(client, forget, headers)
        done = wait_for_status(client, accepted["id"], headers, timeout=90)
        assert done["result_version"] == 2

        version = client.get("/v1/models/digits-cnn/versions/2", headers=headers).json()
        assert version["erased_sample_ids"] == sorted(forget)
        download = client.get("/v1/models/digits-cnn/versions/2/checkpoint", headers=headers)
        assert download.status_code == 200, download.text
        digest = hashlib.sha256(download.content).hexdigest()
        assert digest == version["checkpoint_sha256"] == download.headers["X-Checkpoint-Sha256"]

    # The checkpoint lives in the S3 bucket; nothing fell back to a local filesystem store.
    s3 = boto3.client("s3", endpoint_url=rt.settings.s3_endpoint_url, region_name=REGION, **S3)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert f"models/manifests/{digest}.json" in keys
    assert not (rt.settings.data_dir / "store").exists()
    # Two consumers, one publication: the job was claimed and published exactly once.
    logs = [w.log_path.read_text() for w in workers]
    assert sum(log.count("s: 'published'") for log in logs) == 1
