"""Overload: open-loop offered load at a multiple of the measured saturation rate.

    python -m benchmarks.overload --duration 60 --factor 2 --json overload.json

One `lethe serve` process (PostgreSQL, a fresh database; Redis db 14 as the broker, so the
API does not run jobs itself). First the saturation rate of `POST /v1/erasure-requests`
(with an Idempotency-Key) is measured with a closed loop; then `factor` times that rate is
offered open-loop for `duration` seconds. The generator is schedule-based: request i is
due at start + i/rate and its latency is counted from that due time, not from when the
client got round to sending it (no coordinated omission). Clients give up after
`--timeout` seconds.

Checks afterwards: no 500; p99 of accepted (2xx) requests; every 2xx request is stored;
every request that was stored but not answered 2xx (shed, timed out) has its response
stored under its Idempotency-Key, so a retry replays it (and the retry is made).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, select

from benchmarks.load import free_port, fresh_database, lethe_env, seed, server

BROKER = "redis://127.0.0.1:6379/14"


def _body(ids: list[str]) -> dict[str, Any]:
    return {
        "subject_request_id": str(uuid.uuid4()),
        "regulation": "gdpr",
        "submitted_time": "2026-11-26T10:00:00Z",
        "model": "digits-cnn",
        "sample_ids": random.sample(ids, 10),
    }


async def _send(host: str, port: int, payload: bytes, timeout: float) -> int:
    """POST one request on its own connection (HTTP/1.1, `Connection: close`); the status
    code, or 0 when the server did not answer within `timeout`. A client of its own rather
    than httpx: httpx's pool gets slower with every request queued in it, which at a few
    thousand pending requests makes the generator, not the server, the bottleneck."""

    async def exchange() -> int:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(payload)
            await writer.drain()
            line = await reader.readline()
            await reader.read()  # to EOF: the whole answer
            return int(line.split()[1])
        finally:
            writer.close()

    try:
        return await asyncio.wait_for(exchange(), timeout)
    except (TimeoutError, OSError, ValueError, IndexError):
        return 0


def _request(host: str, port: int, key: str, idem: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/erasure-requests HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nIdempotency-Key: {idem}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + data


async def _post(
    base: str, key: str, ids: list[str], due: float, out: list[Any], timeout: float
) -> None:
    host, port = base.removeprefix("http://").split(":")
    body = _body(ids)
    idem = uuid.uuid4().hex
    status = await _send(host, int(port), _request(host, int(port), key, idem, body), timeout)
    out.append((status, time.perf_counter() - due, body, idem))


async def closed(base: str, key: str, ids: list[str], concurrency: int, seconds: float) -> float:
    out: list[Any] = []
    stop = time.perf_counter() + seconds

    async def user() -> None:
        while time.perf_counter() < stop:
            await _post(base, key, ids, time.perf_counter(), out, 30)

    start = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return sum(1 for s, *_ in out if 200 <= s < 300) / elapsed


async def open_loop(
    base: str, key: str, ids: list[str], rate: float, seconds: float, timeout: float
) -> list[Any]:
    out: list[Any] = []
    start, tasks, i = time.perf_counter(), [], 0
    while (due := start + i / rate) < start + seconds:
        # sleep(0) when behind: the requests already due get sent meanwhile
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(_post(base, key, ids, due, out, timeout)))
        i += 1
    await asyncio.gather(*tasks)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--factor", type=float, default=2.0)
    p.add_argument("--saturation-seconds", type=float, default=15)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--max-in-flight", type=int, default=None, help="LETHE_MAX_IN_FLIGHT_REQUESTS")
    p.add_argument(
        "--rate", type=float, default=None, help="offer this rate, not factor × saturation"
    )
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    report: dict[str, Any] = {"args": vars(args) | {"json": str(args.json)}}
    with tempfile.TemporaryDirectory() as tmp, fresh_database("overload") as db_url:
        data_dir = Path(tmp)
        key, ids = seed(db_url, data_dir, BROKER)
        port = free_port()
        extra = {"LETHE_BROKER_URL": BROKER, "LETHE_PORT": str(port)}
        if args.max_in_flight:
            extra["LETHE_MAX_IN_FLIGHT_REQUESTS"] = str(args.max_in_flight)
        env = lethe_env(db_url, data_dir, **extra)
        cmd = [sys.executable, "-m", "lethe.cli", "serve"]
        with server(cmd, env, port, "/healthz") as base:
            saturation = asyncio.run(
                closed(base, key, ids, args.concurrency, args.saturation_seconds)
            )
            rate = args.rate or args.factor * saturation
            report["saturation_rps"] = round(saturation, 1)
            report["offered_rps"] = round(rate, 1)
            out = asyncio.run(open_loop(base, key, ids, rate, args.duration, args.timeout))
            time.sleep(3)
            engine = create_engine(db_url)
            from app.erasure_requests.models import ErasureRequest
            from app.idempotency.models import IdempotencyKey

            with engine.connect() as c:
                stored = set(c.scalars(select(ErasureRequest.subject_request_id)))
                keys = dict(c.execute(select(IdempotencyKey.key, IdempotencyKey.state)).all())
            engine.dispose()
            ok = sorted(lat for s, lat, *_ in out if 200 <= s < 300)
            statuses: dict[str, int] = {}
            for s, *_ in out:
                statuses[str(s)] = statuses.get(str(s), 0) + 1
            unanswered_but_stored = [
                (b, idem)
                for s, _, b, idem in out
                if not 200 <= s < 300 and b["subject_request_id"] in stored
            ]
            replays: dict[str, int] = {}
            with httpx.Client(base_url=base, timeout=30) as client:
                for b, idem in unanswered_but_stored:  # the client's retry
                    resp = client.post(
                        "/v1/erasure-requests",
                        json=b,
                        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idem},
                    )
                    tag = f"{resp.status_code} replayed={resp.headers.get('idempotent-replayed')}"
                    replays[tag] = replays.get(tag, 0) + 1
            report.update(
                {
                    "sent": len(out),
                    "statuses": statuses,
                    "accepted": len(ok),
                    "p50_ms": round(1000 * ok[len(ok) // 2], 1) if ok else None,
                    "p99_ms": round(1000 * ok[min(len(ok) - 1, int(0.99 * len(ok)))], 1)
                    if ok
                    else None,
                    "max_ms": round(1000 * ok[-1], 1) if ok else None,
                    "accepted_not_stored": sum(
                        1
                        for s, _, b, _ in out
                        if 200 <= s < 300 and b["subject_request_id"] not in stored
                    ),
                    "stored_without_2xx": len(unanswered_but_stored),
                    "stored_without_2xx_not_replayable": sum(
                        1 for _, idem in unanswered_but_stored if keys.get(idem) != "completed"
                    ),
                    "replays": replays,
                }
            )
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
