"""Subject fan-out (issue 14's "Measured"): one subject's erasure request without a model,
across 20 registered models, from the POST to the parent `completed`, median of 10.

    python -m benchmarks.fanout [--models 20] [--runs 10] [--modes embedded,distributed]
                                [--json fanout.json]

Embedded: `lethe serve` on SQLite with its in-process worker. Distributed: `lethe serve`
on PostgreSQL (LETHE_TEST_POSTGRES_URL, a fresh database) with Redis
(LETHE_BENCH_BROKER_URL) as the broker and one `lethe worker -c 1`. The 20 models are the
demo model's checkpoint and training set registered under 20 names (trained once; the
store keeps one copy of the blobs), so each fan-out makes 20 children and 20 jobs. Every
run erases a different subject (an erased subject has no data left to fan out to).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from benchmarks.load import BROKER_URL, ROOT, free_port, fresh_database, lethe_env, server


def seed(database_url: str, data_dir: Path, broker: str | None, models: int) -> str:
    """Migrate, register the demo model under `models` names, create a key."""
    from app.auth.service import create_key
    from app.core.config import Settings
    from app.core.db import session_scope
    from app.core.migrate import upgrade
    from lethe.demo import seed_demo, train_demo
    from workers.runtime import build_runtime

    upgrade(database_url)
    settings = Settings(
        database_url=database_url, data_dir=data_dir, broker_url=broker, device="cpu"
    )
    rt = build_runtime(settings)
    artifacts = train_demo()
    for i in range(models):
        seed_demo(rt, name=f"digits-cnn-{i:02d}", artifacts=artifacts)
    with session_scope(rt.session_factory, None) as s:
        _, key = create_key(session=s, name="bench", scopes=["admin"])
    return key


def subjects(n: int) -> list[str]:
    from lethe.demo import DEMO_DATASET, DEMO_PARAMS
    from workers.pipeline import load_dataset

    train = load_dataset(DEMO_DATASET, DEMO_PARAMS).train
    return sorted(set(train.subjects))[:n]


class ParentFailed(RuntimeError):
    """The fan-out ended `failed`: the engine could not erase this subject (not timed)."""


MAX_FAILED = 5
"""Subjects whose fan-out may fail before the run gives up (each is reported)."""


def fan_out(c: httpx.Client, subject: str, models: int) -> float:
    """POST one subject's request naming no model; seconds until the parent completed."""
    body = {
        "subject_request_id": str(uuid.uuid4()),
        "regulation": "gdpr",
        "submitted_time": "2026-12-02T10:00:00Z",
        "subject_identities": [{"identity_type": "user_id", "identity_value": subject}],
    }
    start = time.perf_counter()
    resp = c.post("/v1/erasure-requests", json=body)
    resp.raise_for_status()
    parent = resp.json()
    if len(parent["models"]) != models:
        raise RuntimeError(f"fanned out to {len(parent['models'])} models, not {models}")
    while True:
        status = c.get(f"/v1/erasure-requests/{parent['id']}").json()
        if status["status"] == "completed":
            elapsed = time.perf_counter() - start
            break
        if status["status"] == "failed":
            reasons = sorted({ch["status_reason"] for ch in status["children"]})
            raise ParentFailed(f"{status['status_reason'][:60]}...; reasons: {reasons}")
        if status["status"] in ("canceled", "denied"):
            raise RuntimeError(f"parent {parent['id']} ended {status['status']}: {status}")
        time.sleep(0.05)
    versions = {ch["result_version"] for ch in status["children"]}
    if len(status["children"]) != models or None in versions:
        raise RuntimeError(f"parent completed without every child's version: {status}")
    return elapsed


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, fresh_database("fanout") as pg_url:
        data_dir = Path(tmp)
        if mode == "embedded":
            db_url, broker = f"sqlite:///{data_dir / 'lethe.db'}", None
        else:
            import redis

            db_url, broker = pg_url, BROKER_URL
            redis.Redis.from_url(broker).flushdb()
        key = seed(db_url, data_dir, broker, args.models)
        env = lethe_env(db_url, data_dir, **({"LETHE_BROKER_URL": broker} if broker else {}))
        worker = None
        if broker:
            log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - outlives this frame as the worker log
                prefix="lethe-bench-worker-", suffix=".log", delete=False
            )
            print(f"worker log: {log.name}", flush=True)
            worker = subprocess.Popen(
                [sys.executable, "-m", "lethe.cli", "worker", "-Q", "gpu,default", "-c", "1"],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        port = free_port()
        cmd = [sys.executable, "-m", "lethe.cli", "serve", "--port", str(port)]
        try:
            with (
                server(cmd, env, port, "/healthz") as url,
                httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as c,
            ):
                times: list[float] = []
                failed: list[dict[str, Any]] = []
                for index, subject in enumerate(subjects(args.runs + MAX_FAILED)):
                    try:
                        times.append(fan_out(c, subject, args.models))
                    except ParentFailed as exc:  # reported, not timed, not hidden
                        failed.append({"subject_index": index, "reason": str(exc)})
                        print(f"{mode}: subject {index} failed: {exc}", flush=True)
                        continue
                    print(f"{mode}: {times[-1]:.2f} s", flush=True)
                    if len(times) == args.runs:
                        break
        finally:
            if worker is not None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(timeout=30)
    return {
        "models": args.models,
        "runs": len(times),
        "median_s": round(statistics.median(times), 2),
        "min_s": round(min(times), 2),
        "max_s": round(max(times), 2),
        "times_s": [round(t, 2) for t in times],
        "failed_subjects": failed,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--modes", default="embedded,distributed")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    report = {mode: run_mode(mode, args) for mode in args.modes.split(",")}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
