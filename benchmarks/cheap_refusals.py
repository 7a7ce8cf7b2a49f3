"""What an anonymous 8 MiB JSON body costs the API, and whether it stalls the event loop.

    python -m benchmarks.cheap_refusals --requests 20

One `lethe serve` process (PostgreSQL, a fresh migrated database; Redis db 14 as broker).
For each path, `--requests` POSTs of an 8 MiB JSON array of small objects without an API
key are timed end to end (client send included, loopback), while a second thread polls
`/healthz` and records its worst latency (a stalled loop shows up there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.load import free_port, fresh_database, lethe_env, server

BROKER = "redis://127.0.0.1:6379/14"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=20)
    args = p.parse_args(argv)
    one = b'{"a":1},'
    limit = 8 * 1024 * 1024
    body = b"[" + one * ((limit - 16) // len(one)) + b'{"a":1}]'
    report: dict[str, Any] = {"body_bytes": len(body)}
    with tempfile.TemporaryDirectory() as tmp, fresh_database("refusals") as url:
        from app.core.migrate import upgrade

        upgrade(url)
        port = free_port()
        env = lethe_env(url, Path(tmp), LETHE_PORT=str(port), LETHE_BROKER_URL=BROKER)
        import sys

        with server([sys.executable, "-m", "lethe.cli", "serve"], env, port, "/healthz") as base:
            stop = threading.Event()
            health: list[float] = []

            def poll() -> None:
                with httpx.Client(base_url=base, timeout=30) as c:
                    while not stop.is_set():
                        t = time.perf_counter()
                        c.get("/healthz")
                        health.append(time.perf_counter() - t)
                        time.sleep(0.01)

            poller = threading.Thread(target=poll)
            poller.start()
            with httpx.Client(base_url=base, timeout=60) as c:
                for path in ("/v1/anything", "/v1/erasure-requests", "/opendsr/v1/requests"):
                    times, codes = [], set()
                    for _ in range(args.requests):
                        t = time.perf_counter()
                        r = c.post(path, content=body, headers={"Content-Type": "application/json"})
                        times.append(time.perf_counter() - t)
                        codes.add(r.status_code)
                    report[path] = {
                        "status": sorted(codes),
                        "median_ms": round(1000 * statistics.median(times), 1),
                        "max_ms": round(1000 * max(times), 1),
                    }
            stop.set()
            poller.join()
            report["healthz_max_ms_meanwhile"] = round(1000 * max(health), 1)
            report["healthz_median_ms_meanwhile"] = round(1000 * statistics.median(health), 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
