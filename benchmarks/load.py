"""Load, scale and end-to-end benchmarks of the API (issue 7's "Load" figures).

    python -m benchmarks.load --workers 2 --duration 10 --runs 3 --json load.json

Runs on one machine: PostgreSQL (LETHE_TEST_POSTGRES_URL, default the local server; a
fresh database per run), Redis on 127.0.0.1:6379/8 as the broker so the API does not run
jobs itself, Lethe under uvicorn (`lethe serve --workers N`), and the reference app
(benchmarks/baseline_app.py: one INSERT+COMMIT / one SELECT) under uvicorn with the same
worker count. The load generator is an asyncio httpx client in this process, so it shares
the machine's cores with the servers: the ratio between Lethe and the reference, measured
in the same run, is the figure to compare; absolute numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get(
    "LETHE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BROKER_URL = os.environ.get("LETHE_BENCH_BROKER_URL", "redis://127.0.0.1:6379/8")
ROOT = Path(__file__).resolve().parent.parent
Result = tuple[int, float]  # status code, latency in seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def fresh_database(tag: str) -> Iterator[str]:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"lethe_bench_{tag}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def server(cmd: list[str], env: dict[str, str], port: int, ready_path: str) -> Iterator[str]:
    log = tempfile.NamedTemporaryFile(prefix="lethe-bench-", suffix=".log", delete=False)  # noqa: SIM115 - outlives this frame as the server log
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[:4]} exited; see {log.name}")
            try:
                if httpx.get(base + ready_path, timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[:4]} did not come up; see {log.name}")
            time.sleep(0.3)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def lethe_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
    env.update(
        {
            "LETHE_DATABASE_URL": database_url,
            "LETHE_DATA_DIR": str(data_dir),
            "LETHE_LOG_LEVEL": "WARNING",
            "LETHE_DEVICE": "cpu",
            **extra,
        }
    )
    return env


def seed(database_url: str, data_dir: Path, broker: str | None) -> tuple[str, list[str]]:
    """Migrate, register the demo model, create a key; returns (key, training ids)."""
    from app.core.config import Settings
    from app.core.db import session_scope
    from app.core.migrate import upgrade
    from lethe.demo import seed_demo
    from workers.runtime import build_runtime

    upgrade(database_url)
    settings = Settings(
        database_url=database_url, data_dir=data_dir, broker_url=broker, device="cpu"
    )
    rt = build_runtime(settings)
    seed_demo(rt)
    from app.auth.service import create_key
    from app.registry.models import TrainingSample

    with session_scope(rt.session_factory, None) as s:
        _, key = create_key(session=s, name="bench", scopes=["admin"])
        ids = list(s.scalars(select(TrainingSample.sample_id)))
    return key, ids


def body(ids: list[str], n: int = 10, model: str = "digits-cnn") -> dict[str, Any]:
    return {
        "subject_request_id": str(uuid.uuid4()),
        "regulation": "gdpr",
        "submitted_time": "2026-11-26T10:00:00Z",
        "model": model,
        "sample_ids": random.sample(ids, n),
    }


Call = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


async def _timed(client: httpx.AsyncClient, call: Call, out: list[Result]) -> None:
    start = time.perf_counter()
    try:
        status = (await call(client)).status_code
    except httpx.HTTPError:
        status = 0
    out.append((status, time.perf_counter() - start))


async def open_loop(base: str, call: Call, rate: float, duration: float) -> dict[str, Any]:
    """Offer `rate` requests per second for `duration` seconds, whatever the latency."""
    out: list[Result] = []
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        loop = asyncio.get_running_loop()
        start, tasks, i = loop.time(), [], 0
        while loop.time() - start < duration:
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_timed(client, call, out)))
            i += 1
        await asyncio.gather(*tasks)
        elapsed = loop.time() - start
    return summarize(out, elapsed, offered=rate)


async def closed_loop(base: str, call: Call, concurrency: int, duration: float) -> dict[str, Any]:
    """`concurrency` clients each sending the next request as soon as one returns."""
    out: list[Result] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        loop = asyncio.get_running_loop()
        stop = loop.time() + duration

        async def user() -> None:
            while loop.time() < stop:
                await _timed(client, call, out)

        start = loop.time()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        elapsed = loop.time() - start
    return summarize(out, elapsed, concurrency=concurrency)


def summarize(results: list[Result], elapsed: float, **extra: Any) -> dict[str, Any]:
    ok = sorted(lat for status, lat in results if 200 <= status < 300)
    errors: dict[str, int] = {}
    for status, _ in results:
        if not 200 <= status < 300:
            errors[str(status)] = errors.get(str(status), 0) + 1

    def pct(q: float) -> float | None:
        return round(1000 * ok[min(len(ok) - 1, int(q * len(ok)))], 1) if ok else None

    return {
        "ok": len(ok),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "throughput_rps": round(len(ok) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        **extra,
    }


def drain(base: str, pause: float = 3.0) -> None:
    """Let the server finish what an overload step left queued before the next step."""
    time.sleep(pause)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        start = time.perf_counter()
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(base + "/healthz", timeout=10)
        if time.perf_counter() - start < 0.05:
            return
        time.sleep(1)


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def load_phase(args: argparse.Namespace, report: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp, fresh_database("load") as db_url:
        data_dir = Path(tmp)
        key, ids = seed(db_url, data_dir, BROKER_URL)
        headers = {"X-API-Key": key}
        lethe_port, base_port = free_port(), free_port()
        lethe_cmd = [
            sys.executable,
            "-m",
            "lethe.cli",
            "serve",
            "--port",
            str(lethe_port),
            "--workers",
            str(args.workers),
        ]
        base_cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.baseline_app:app",
            "--port",
            str(base_port),
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
        ]
        created: list[str] = []
        items: list[str] = []
        posts_2xx = 0

        async def lethe_post(c: httpx.AsyncClient) -> httpx.Response:
            nonlocal posts_2xx
            r = await c.post("/v1/erasure-requests", json=body(ids), headers=headers)
            if r.status_code in (200, 202):
                posts_2xx += 1
                created.append(r.json()["id"])
            return r

        async def lethe_get(c: httpx.AsyncClient) -> httpx.Response:
            return await c.get(f"/v1/erasure-requests/{random.choice(created)}", headers=headers)

        async def base_post(c: httpx.AsyncClient) -> httpx.Response:
            r = await c.post("/items", json=body(ids), headers={"X-API-Key": "baseline"})
            if r.status_code == 202:
                items.append(r.json()["id"])
            return r

        async def base_get(c: httpx.AsyncClient) -> httpx.Response:
            return await c.get(f"/items/{random.choice(items)}", headers={"X-API-Key": "baseline"})

        env = lethe_env(db_url, data_dir, LETHE_BROKER_URL=BROKER_URL)
        base_env = {"BASELINE_DATABASE_URL": db_url, "BASELINE_KEY": "baseline"}
        with (
            server(lethe_cmd, env, lethe_port, "/healthz") as lethe,
            server(base_cmd, base_env, base_port, "/openapi.json") as ref,
        ):
            targets = {
                "lethe": (lethe, {"POST": lethe_post, "GET": lethe_get}),
                "baseline": (ref, {"POST": base_post, "GET": base_get}),
            }
            for url, calls in targets.values():
                asyncio.run(open_loop(url, calls["POST"], 20, 2))  # warm-up and data for GETs
            for op in ("POST", "GET"):
                fixed: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
                sat: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
                for name, (url, calls) in targets.items():
                    for rate in args.rates:
                        fixed[name].append(
                            asyncio.run(open_loop(url, calls[op], rate, args.duration))
                        )
                        drain(url)
                # Saturation runs alternate between the two apps, so a slow spell of the
                # (shared, virtual) machine weighs on both sides of the ratio alike.
                for _ in range(args.runs):
                    for name, (url, calls) in targets.items():
                        sat[name].append(
                            asyncio.run(
                                closed_loop(url, calls[op], args.concurrency, args.duration)
                            )
                        )
                        drain(url)
                for name in targets:
                    report["load"][f"{name} {op}"] = {
                        "fixed_rate": fixed[name],
                        "saturation_runs": sat[name],
                        "saturation_rps": spread([r["throughput_rps"] for r in sat[name]]),
                        "saturation_p50_ms": spread([r["p50_ms"] or 0 for r in sat[name]]),
                        "saturation_p99_ms": spread([r["p99_ms"] or 0 for r in sat[name]]),
                    }
                    print(
                        f"{name:8} {op:4} saturation "
                        f"{report['load'][f'{name} {op}']['saturation_rps']} rps",
                        flush=True,
                    )
                paired = [
                    a["throughput_rps"] / b["throughput_rps"]
                    for a, b in zip(sat["lethe"], sat["baseline"], strict=True)
                ]
                report["paired_ratios"][op] = [round(r, 3) for r in paired]
        for op in ("POST", "GET"):
            lethe_rps = report["load"][f"lethe {op}"]["saturation_rps"]["median"]
            base_rps = report["load"][f"baseline {op}"]["saturation_rps"]["median"]
            report["ratio"][op] = round(lethe_rps / base_rps, 3)
        report["zero_loss"] = check_zero_loss(db_url, posts_2xx)


def check_zero_loss(db_url: str, posts_2xx: int) -> dict[str, Any]:
    from app.audit import service as audit
    from app.core.db import make_engine, make_session_factory
    from app.erasure_requests.models import ErasureRequest

    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        stored = s.scalar(select(func.count()).select_from(ErasureRequest)) or 0
        verdict = audit.verify(session=s)
    engine.dispose()
    return {
        "posts_2xx": posts_2xx,
        "stored": stored,
        "equal": stored == posts_2xx,
        "audit_ok": verdict.ok,
        "audit_events": verdict.checked,
    }


def scale_phase(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """Register a 1,000,000-sample training set; p50 latency of 10,000-id requests."""
    from app.core.config import Settings
    from app.core.db import session_scope
    from app.core.migrate import upgrade
    from app.registry import service as registry
    from workers.runtime import build_runtime

    with tempfile.TemporaryDirectory() as tmp, fresh_database("scale") as db_url:
        key, _ = seed(db_url, Path(tmp), BROKER_URL)
        upgrade(db_url)
        rt = build_runtime(
            Settings(database_url=db_url, data_dir=Path(tmp), device="cpu", broker_url=BROKER_URL)
        )
        ids = [f"sample-{i:07d}" for i in range(args.scale_samples)]
        rows = (registry.SampleRow(sid, i % 10, None) for i, sid in enumerate(ids))
        start = time.perf_counter()
        with session_scope(rt.session_factory, None) as s:
            registry.register_model(
                session=s,
                name="million",
                architecture="digits-cnn",
                num_classes=10,
                dataset_id="synthetic",
                dataset_params={},
                samples=rows,
                checkpoint_sha256="0" * 64,
                checkpoint_size=0,
                stored_bytes=0,
                metrics={},
                actor="bench",
            )
        report["scale"]["register_seconds"] = round(time.perf_counter() - start, 2)
        report["scale"]["samples"] = len(ids)
        port = free_port()
        cmd = [sys.executable, "-m", "lethe.cli", "serve", "--port", str(port)]
        with server(
            cmd, lethe_env(db_url, Path(tmp), LETHE_BROKER_URL=BROKER_URL), port, "/healthz"
        ) as url:
            latencies = []
            with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as c:
                for _ in range(args.scale_requests):
                    payload = body(ids, n=10_000, model="million")
                    start = time.perf_counter()
                    r = c.post("/v1/erasure-requests", json=payload)
                    latencies.append(time.perf_counter() - start)
                    assert r.status_code == 202, r.text
                bad = body(ids, n=9_999, model="million")
                bad["sample_ids"].append("not-a-sample")
                start = time.perf_counter()
                refused = c.post("/v1/erasure-requests", json=bad)
                refused_s = time.perf_counter() - start
        report["scale"]["ten_thousand_ids_p50_ms"] = round(1000 * statistics.median(latencies), 1)
        report["scale"]["ten_thousand_ids_max_ms"] = round(1000 * max(latencies), 1)
        report["scale"]["ten_thousand_ids_requests"] = len(latencies)
        report["scale"]["unknown_id_refused"] = {
            "status": refused.status_code,
            "ms": round(1000 * refused_s, 1),
        }
        print(f"scale: {report['scale']}", flush=True)


def end_to_end_phase(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """POST → completed for a 10-sample request on the demo model, median of N."""
    for mode in ("embedded", "distributed"):
        with tempfile.TemporaryDirectory() as tmp, fresh_database("e2e") as pg_url:
            data_dir = Path(tmp)
            if mode == "embedded":
                db_url, broker = f"sqlite:///{data_dir / 'lethe.db'}", None
            else:
                db_url, broker = pg_url, "redis://127.0.0.1:6379/7"
                import redis

                redis.Redis.from_url(broker).flushdb()
            key, ids = seed(db_url, data_dir, broker)
            extra = {"LETHE_BROKER_URL": broker} if broker else {}
            env = lethe_env(db_url, data_dir, **extra)
            port = free_port()
            worker = None
            if broker:
                worker = subprocess.Popen(
                    [sys.executable, "-m", "lethe.cli", "worker", "-Q", "gpu,default", "-c", "1"],
                    cwd=ROOT,
                    env={**os.environ, **env},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            try:
                cmd = [sys.executable, "-m", "lethe.cli", "serve", "--port", str(port)]
                with (
                    server(cmd, env, port, "/healthz") as url,
                    httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as c,
                ):
                    times = []
                    for _ in range(args.e2e_requests):
                        start = time.perf_counter()
                        rid = c.post("/v1/erasure-requests", json=body(ids)).json()["id"]
                        while True:
                            status = c.get(f"/v1/erasure-requests/{rid}").json()["status"]
                            if status == "completed":
                                break
                            if status in ("failed", "canceled", "denied"):
                                raise RuntimeError(f"request {rid} ended {status}")
                            time.sleep(0.02)
                        times.append(time.perf_counter() - start)
            finally:
                if worker is not None:
                    os.killpg(worker.pid, signal.SIGTERM)
                    worker.wait(timeout=30)
            report["end_to_end"][mode] = {
                "median_s": round(statistics.median(times), 3),
                "min_s": round(min(times), 3),
                "max_s": round(max(times), 3),
                "requests": len(times),
            }
            print(f"end to end ({mode}): {report['end_to_end'][mode]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2, help="uvicorn processes for both apps")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per load step")
    p.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[25.0, 50.0],
        help="fixed offered loads (requests/s)",
    )
    p.add_argument("--concurrency", type=int, default=32, help="clients at saturation")
    p.add_argument("--runs", type=int, default=3, help="saturation runs (median reported)")
    p.add_argument("--scale-samples", type=int, default=1_000_000)
    p.add_argument("--scale-requests", type=int, default=10)
    p.add_argument("--e2e-requests", type=int, default=20)
    p.add_argument("--phases", default="load,scale,e2e")
    p.add_argument("--json", dest="json_path")
    args = p.parse_args(argv)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "workers": args.workers,
        "load": {},
        "ratio": {},
        "paired_ratios": {},
        "scale": {},
        "end_to_end": {},
        "args": vars(args),
    }
    phases = args.phases.split(",")
    if "load" in phases:
        load_phase(args, report)
    if "scale" in phases:
        scale_phase(args, report)
    if "e2e" in phases:
        end_to_end_phase(args, report)
    summary = ("ratio", "paired_ratios", "scale", "end_to_end")
    print(json.dumps({k: report[k] for k in summary}, indent=2))
    if "load" in phases:
        print(json.dumps(report.get("zero_loss"), indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
