"""Server time of every console page with 10,000 erasure requests in the database.

    python -m benchmarks.console --requests 10000 --repeat 20 [--database-url URL] [--pages-only]

Builds a fresh SQLite database (or uses the given empty, migrated one), seeds the demo
model, inserts N requests spread over 60 days in every status (each with its
`request.received` audit event, sealed into the chain), one published version 2 with
recorded confidence histograms (synthetic counts of the stored shape: the page's cost does
not depend on their values), signs an audit checkpoint (as the API's checkpointer does every
interval), then signs in and times each page in-process (ASGI, no
network): the figure is the time from request to the last byte of the response, i.e. server
time plus a small test-client overhead. Prints one line per page: median and p95 in ms;
after Verify now, how long the background full walk it started took; last, the API's
synchronous full walk `GET /v1/audit/verify`.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any


def _seed(rt: Any, n: int) -> str:
    from sqlalchemy import insert, select

    from app.audit import service as audit
    from app.core.db import session_scope, utcnow
    from app.core.deadlines import add_months
    from app.erasure_requests.models import ErasureRequest, RequestStatus
    from app.registry.models import Model, ModelVersion

    rng = random.Random(0)
    now = utcnow()
    statuses = [s for s in RequestStatus]
    with session_scope(rt.session_factory, None) as s:
        model = s.scalar(select(Model).where(Model.name == "digits-cnn"))
        assert model is not None
        rows = []
        for i in range(n):
            received = now - timedelta(minutes=rng.randrange(60 * 24 * 60))
            status = statuses[i % len(statuses)]
            rows.append(
                {
                    "id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "subject_request_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "model_id": model.id,
                    "regulation": "gdpr",
                    "status": status,
                    "submitted_time": received,
                    "received_at": received,
                    "due_at": add_months(received, 1),
                    "updated_at": received,
                    "sample_count": 1 + i % 5,
                    "callback_urls": [],
                    "client": "key:bench",
                    "attempts": 0,
                }
            )
        s.execute(insert(ErasureRequest), rows)
        for row in rows:
            audit.append(
                session=s,
                type="request.received",
                actor="key:bench",
                subject=f"request:{row['id']}",
                data={"model": "digits-cnn", "samples": row["sample_count"]},
            )
        v1 = s.scalar(select(ModelVersion).where(ModelVersion.model_id == model.id))
        assert v1 is not None
        bins = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995]
        bins += [0.998, 0.999, 1.0]

        def group(n: int, skew: float) -> dict[str, Any]:
            counts = [int(n * (skew ** (16 - i)) / 3) + 1 for i in range(16)]
            q = {f"p{p}": round(min(1.0, 0.5 + p / 200), 4) for p in (5, 25, 50, 75, 95)}
            return {"n": sum(counts), "counts": counts, "quantiles": q}

        stage = {
            "bins": bins,
            "groups": {k: group(300, 0.8) for k in ("forget", "retain", "held_out")},
        }
        s.add(
            ModelVersion(
                model_id=model.id,
                number=2,
                parent_number=1,
                job_id=str(uuid.uuid4()),
                method="lau-calibrated",
                params={},
                metrics={
                    **dict(v1.metrics),
                    "parent": dict(v1.metrics),
                    "confidence": {"before": stage, "after": stage},
                },
                request_ids=[rows[0]["id"]],
                erased_count=5,
                checkpoint_sha256=v1.checkpoint_sha256,
                checkpoint_size=v1.checkpoint_size,
                stored_bytes=5160,
            )
        )
    with session_scope(rt.session_factory, None) as s:
        audit.seal(session=s)
    return str(rows[len(rows) // 2]["id"])


def _walk_ms(app: Any) -> float:
    """How long the last background full walk took, once it has finished (0: none yet)."""
    walk = getattr(app.state, "audit_walk", None)
    if walk is None or walk.state.started_at is None:
        return 0.0
    while walk.state.running:
        time.sleep(0.02)
    done = walk.state
    assert done.ok and done.started_at and done.finished_at, done
    return float((done.finished_at - done.started_at).total_seconds() * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--pages-only", action="store_true", help="skip Verify now and the export (whole chain)"
    )
    args = parser.parse_args(argv)

    from fastapi.testclient import TestClient

    from app.core.config import Settings
    from app.core.migrate import upgrade
    from app.main import create_app
    from lethe.demo import seed_demo
    from tests.support.service import create_key
    from workers.runtime import build_runtime

    data = Path(tempfile.mkdtemp(prefix="lethe-console-bench-"))
    url = args.database_url or f"sqlite:///{data / 'lethe.db'}"
    upgrade(url)
    settings = Settings(env="test", data_dir=data, database_url=url, device="cpu")
    rt = build_runtime(settings)
    seed_demo(rt)
    one = _seed(rt, args.requests)
    # as the API's checkpointer does every LETHE_AUDIT_CHECKPOINT_INTERVAL_S: Verify now's
    # quick check starts from the newest signed checkpoint
    from app.audit import checkpoints

    checkpoints.checkpoint_now(rt.session_factory, rt.store, checkpoints.signing_key(settings))
    key = create_key(rt, ["admin"], name="bench")
    app = create_app(settings, session_factory=rt.session_factory, store=rt.store)
    client = TestClient(app)
    form = client.get("/console/sign-in").text
    token = re.search(r'name="signin_token" value="([^"]+)"', form)
    assert token
    client.post("/console/sign-in", data={"api_key": key, "signin_token": token.group(1)})
    csrf_match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/audit").text)
    assert csrf_match
    csrf = csrf_match.group(1)

    pages: list[tuple[str, str]] = [
        ("GET", "/console/requests"),
        ("GET", "/console/requests?status=queued"),
        ("GET", "/console/requests?overdue=true"),
        ("GET", "/console/requests?model=digits-cnn&overdue=false"),
        ("GET", f"/console/requests/{one}"),
        ("GET", f"/console/requests/{one}/progress"),
        ("GET", "/console/models"),
        ("GET", "/console/models/digits-cnn"),
        ("GET", "/console/models/digits-cnn/versions/2"),
        ("GET", "/console/audit"),
        ("GET", "/console/audit?type=request.received"),
        ("GET", "/console/keys"),
        ("POST", "/console/audit/verify"),
        ("GET", "/console/audit/export.jsonl"),
        ("GET", "/v1/audit/verify"),
    ]
    if args.pages_only:
        pages = pages[:-3]
    print(f"{args.requests} requests, {url.split(':')[0]}, {args.repeat} calls per page")
    for method, path in pages:
        times = []
        walks: list[float] = []
        for _ in range(args.repeat):
            if path == "/console/audit/verify":  # a DPO waits for the walk before asking again
                walks.append(_walk_ms(app))
            started = time.perf_counter()
            if path.startswith("/v1/"):  # the API's full walk, with the key
                r = client.get(path, headers={"X-API-Key": key})
            elif method == "GET":
                r = client.get(path)
            else:
                r = client.post(path, data={"csrf_token": csrf})
            times.append((time.perf_counter() - started) * 1000)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        print(f"{method:4} {path:60} median {statistics.median(times):7.1f} ms  p95 {p95:7.1f} ms")
        if walks:
            walks = [*walks[1:], _walk_ms(app)]  # the walk each call started
            print(
                f"     the background full walk each started: median "
                f"{statistics.median(walks):7.1f} ms  max {max(walks):7.1f} ms"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
