"""A blob of a published version rots on disk (same size, different bytes). Downloading
that version through a real HTTP server never hands the client the recorded checkpoint or
the bad bytes: the stream stops before the corrupt tensor. `store.verify` and the
operator's `lethe store verify` report it; other versions stay sound and downloadable."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.faults.fault_checks import NO_GATE, ApiServer, assert_recovered
from tests.support.processes import settings_env
from tests.support.requests import erasure_body, training_ids, wait_for_status
from tests.support.service import create_key, make_settings

CHECKPOINT = "/v1/models/digits-cnn/versions/{}/checkpoint"


def store_verify(settings: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
    env.update(settings_env(settings))
    return subprocess.run(
        [sys.executable, "-m", "lethe.cli", "store", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def fetch(client: httpx.Client, path: str, **headers: str) -> tuple[int, dict, bytes, str | None]:
    """Status, headers, the bytes received and the transport error, if the stream broke."""
    received = bytearray()
    with client.stream("GET", path, headers=headers) as resp:
        try:
            for chunk in resp.iter_raw():
                received += chunk
        except httpx.HTTPError as exc:
            return resp.status_code, dict(resp.headers), bytes(received), repr(exc)
    return resp.status_code, dict(resp.headers), bytes(received), None


def test_corrupt_blob_is_never_served_and_verify_reports_it(
    postgres_url: str, tmp_path: Path, demo_artifacts: Any
) -> None:
    from lethe.demo import seed_demo
    from workers.runtime import build_runtime

    settings = make_settings(tmp_path, postgres_url, **NO_GATE)
    rt = build_runtime(settings)
    seed_demo(rt, artifacts=demo_artifacts)
    headers = {"X-API-Key": create_key(rt, ["admin"])}
    server = ApiServer(settings, tmp_path / "api.log")
    try:
        with httpx.Client(base_url=server.base, headers=headers, timeout=30) as client:
            resp = client.post("/v1/erasure-requests", json=erasure_body(training_ids(rt, limit=3)))
            assert resp.status_code == 202, resp.text
            request_id = resp.json()["id"]
            assert wait_for_status(client, request_id, headers, timeout=90)["result_version"] == 2
            sound = store_verify(settings)
            assert sound.returncode == 0, sound.stderr
            assert "2 version(s) checked, 0 with problems" in sound.stdout

            recorded = {
                v["number"]: v["checkpoint_sha256"]
                for v in client.get("/v1/models/digits-cnn/versions").json()["items"]
            }
            v1, v2 = (rt.store.get_manifest(recorded[n]) for n in (1, 2))
            shared = {t.digest for t in v1.tensors}
            offset, bad = next((o, t) for o, t in v2.segments() if t.digest not in shared)
            blob = settings.data_dir / "store" / "blobs" / "sha256" / bad.digest[:2] / bad.digest
            original = blob.read_bytes()
            rotten = bytearray(original)
            middle = len(rotten) // 2
            rotten[middle : middle + 8] = bytes(b ^ 0xFF for b in rotten[middle : middle + 8])
            blob.write_bytes(bytes(rotten))

            status, got_headers, body, broke = fetch(client, CHECKPOINT.format(2))
            if status == 200:  # headers went out first: the stream must stop short
                assert broke is not None, "a corrupt checkpoint was served in full"
                assert int(got_headers["content-length"]) == v2.size
                assert len(body) <= offset, "bytes of the corrupt tensor reached the client"
            else:  # or the API refused up front
                assert status >= 500 and "problem+json" in got_headers["content-type"], status
            assert hashlib.sha256(body).hexdigest() != recorded[2]
            assert bytes(rotten) not in body and original not in body

            # A range inside the corrupt tensor gives nothing either.
            ranged = f"bytes={offset}-{offset + bad.length - 1}"
            status, _, body, broke = fetch(client, CHECKPOINT.format(2), Range=ranged)
            assert body == b"" and (broke is not None or status >= 500), (status, broke)

            # The API process survived, and the untouched version is still served whole.
            status, _, body, broke = fetch(client, CHECKPOINT.format(1))
            assert (status, broke) == (200, None)
            assert hashlib.sha256(body).hexdigest() == recorded[1]
    finally:
        server.stop()

    problems = rt.store.verify(v2)
    assert len(problems) == 1 and bad.digest in problems[0] and "corrupt" in problems[0]
    assert rt.store.verify(v1) == []
    found = store_verify(settings)
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"digits-cnn v2 ({recorded[2]})" in found.stderr and bad.digest in found.stderr
    assert "v1" not in found.stderr
    assert "2 version(s) checked, 1 with problems" in found.stdout
    assert_recovered(rt, [request_id])
