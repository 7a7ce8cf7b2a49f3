"""Shared checks for the reliability tests: submit concurrently, then prove the outcome."""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import select

from tests.support.requests import erasure_body


def submit_concurrently(
    post: Callable[[dict], Any],
    pool: list[str],
    n: int,
    threads: int = 8,
    per_request: int = 3,
    model: str = "digits-cnn",
) -> dict[str, set[str]]:
    """POST n requests from several threads; returns {request id: its sample ids}."""
    rng = random.Random(n)
    bodies = [erasure_body(rng.sample(pool, per_request), model=model) for _ in range(n)]
    with ThreadPoolExecutor(threads) as ex:
        responses = list(ex.map(post, bodies))
    out: dict[str, set[str]] = {}
    for body, resp in zip(bodies, responses, strict=True):
        assert resp.status_code == 202, resp.text
        out[resp.json()["id"]] = set(body["sample_ids"])
    return out


def assert_single_chain(rt: Any, model: str, requested: dict[str, set[str]]) -> list[Any]:
    """Versions 1..n each the child of the one before, each job published at most once,
    every request completed in some version, and the samples erased in the lineage are
    exactly the union of the requests."""
    from app.core.db import session_scope
    from app.erasure_requests.models import ErasureRequest
    from app.jobs.models import Job
    from app.registry.models import Model, ModelVersion, TrainingSample

    with session_scope(rt.session_factory, None) as s:
        m = s.scalar(select(Model).where(Model.name == model))
        versions = list(
            s.scalars(
                select(ModelVersion)
                .where(ModelVersion.model_id == m.id)
                .order_by(ModelVersion.number)
            )
        )
        numbers = [v.number for v in versions]
        assert numbers == list(range(1, len(versions) + 1)), numbers
        assert all(v.parent_number == v.number - 1 for v in versions[1:])
        job_ids = [v.job_id for v in versions[1:]]
        assert len(set(job_ids)) == len(job_ids), "a job published twice"
        succeeded = s.scalars(
            select(Job.id).where(Job.model_id == m.id, Job.status == "succeeded")
        ).all()
        assert set(succeeded) == set(job_ids)
        requests = {
            r.id: r
            for r in s.scalars(select(ErasureRequest).where(ErasureRequest.id.in_(list(requested))))
        }
        assert {r.status.value for r in requests.values()} == {"completed"}
        in_versions = {rid for v in versions for rid in v.request_ids}
        assert in_versions >= set(requested)
        for rid, req in requests.items():
            version = versions[req.result_version - 1]
            assert rid in version.request_ids
        erased = set(
            s.scalars(
                select(TrainingSample.sample_id).where(
                    TrainingSample.model_id == m.id, TrainingSample.erased_in_version.is_not(None)
                )
            )
        )
        union = set().union(*requested.values())
        assert erased == union
        assert versions[-1].erased_count == len(union)
        return versions
