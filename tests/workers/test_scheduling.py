"""Scheduling rules: batching window, one active job per model (in the database), the
cumulative forget set, idempotent publishing, and Celery settings for long GPU jobs."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tests.support.checkpoints import accuracy_and_confidence, load_model
from tests.support.requests import download, erasure_body, training_ids, wait_for_status
from tests.support.rows import add_job


@pytest.mark.overrides(batch_window_s=3.0, policy_max_ta_drop=100.0)
def test_requests_inside_the_window_share_one_job(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    pool = training_ids(seeded)
    ids = []
    for i in range(5):
        resp = embedded_client.post(
            "/v1/erasure-requests", json=erasure_body(pool[i::97][:2]), headers=admin_headers
        )
        assert resp.json()["status"] == "received"  # waiting for the window to close
        ids.append(resp.json()["id"])
    done = [wait_for_status(embedded_client, rid, admin_headers, timeout=120) for rid in ids]
    assert {d["result_version"] for d in done} == {2}
    assert len({d["job_id"] for d in done}) == 1
    version = embedded_client.get("/v1/models/digits-cnn/versions/2", headers=admin_headers).json()
    assert sorted(version["request_ids"]) == sorted(ids)


def test_the_database_refuses_a_second_active_job_per_model(seeded: Any) -> None:
    from app.jobs.models import JobStatus

    add_job(seeded, JobStatus.running)
    add_job(seeded, JobStatus.succeeded)  # finished jobs do not count
    with pytest.raises(IntegrityError):
        add_job(seeded, JobStatus.queued)


def test_each_job_forgets_only_the_new_samples_and_never_relearns_the_earlier_ones(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    first, second = training_ids(seeded, label=3), training_ids(seeded, label=5)
    for forget in (first, second):
        resp = embedded_client.post(
            "/v1/erasure-requests", json=erasure_body(forget), headers=admin_headers
        )
        wait_for_status(embedded_client, resp.json()["id"], admin_headers, timeout=120)
    v3 = embedded_client.get("/v1/models/digits-cnn/versions/3", headers=admin_headers).json()
    assert v3["parent_number"] == 2 and v3["erased_count"] == len(first) + len(second)
    # v3 forgot only class 5 on top of v2, which had forgotten class 3 (no longer in retain)
    assert v3["metrics"]["forget_count"] == v3["metrics"]["new_forget_count"] == len(second)
    assert v3["metrics"]["erased_count"] == len(first) + len(second)
    blob, _ = download(
        embedded_client, "/v1/models/digits-cnn/versions/3/checkpoint", admin_headers
    )
    model = load_model(blob)
    assert accuracy_and_confidence(model, first)[0] < 5, "version 3 relearned class 3"
    assert accuracy_and_confidence(model, second)[0] < 5


def test_a_redelivered_job_publishes_nothing_the_second_time(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    from app.core.db import session_scope
    from app.jobs import flows
    from app.jobs.attempt import Claim
    from app.registry.models import ModelVersion
    from workers.pipeline import run_job

    resp = embedded_client.post(
        "/v1/erasure-requests",
        json=erasure_body(training_ids(seeded, label=2)),
        headers=admin_headers,
    )
    done = wait_for_status(embedded_client, resp.json()["id"], admin_headers, timeout=120)
    assert run_job(done["job_id"], seeded) == "not-claimed"

    with session_scope(seeded.session_factory, None) as s:
        version = s.scalar(select(ModelVersion).where(ModelVersion.number == 2))
        claim = Claim(
            job_id=done["job_id"],
            attempt=1,
            model_id=version.model_id,
            model_name="digits-cnn",
            architecture="digits-cnn",
            num_classes=10,
            dataset_id="sklearn-digits",
            dataset_params={},
            base_version=1,
            base_sha256="",
            base_metrics={},
            request_ids=[done["id"]],
            new_sample_ids=[],
            erased_sample_ids=[],
        )
        outcome = flows.Outcome("lau", {}, {}, "0" * 64, 1, 1)
        again = flows.publish(
            session=s, claim=claim, outcome=outcome, settings=seeded.settings, worker="test"
        )
        assert again is not None and again.id == version.id
    versions = embedded_client.get("/v1/models/digits-cnn/versions", headers=admin_headers).json()
    assert [v["number"] for v in versions["items"]] == [1, 2]


def test_celery_is_configured_for_long_gpu_jobs() -> None:
    from app.core.config import Settings
    from workers.celery_app import GPU_QUEUE, RUN_JOB, make_celery

    settings = Settings(
        broker_url="redis://127.0.0.1:6379/9", job_time_limit_s=1800, visibility_timeout_s=3600
    )
    conf = make_celery(settings).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_routes[RUN_JOB]["queue"] == GPU_QUEUE
    assert conf.task_soft_time_limit == 1800
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.task_time_limit < conf.broker_transport_options["visibility_timeout"] == 3600
    with pytest.raises(ValueError, match="VISIBILITY_TIMEOUT"):
        Settings(job_time_limit_s=3600, visibility_timeout_s=3600)


def test_beat_runs_one_housekeeping_task_at_its_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.config import Settings
    from workers.celery_app import HOUSEKEEPING, make_celery

    conf = make_celery(Settings(housekeeping_interval_s=7)).conf
    assert [(e["task"], e["schedule"]) for e in conf.beat_schedule.values()] == [(HOUSEKEEPING, 7)]
    # the setting's old name still works, in the environment and as a keyword
    monkeypatch.setenv("LETHE_REAPER_INTERVAL_S", "3")
    assert Settings().housekeeping_interval_s == 3
    assert Settings(reaper_interval_s=2).housekeeping_interval_s == 2
    monkeypatch.setenv("LETHE_HOUSEKEEPING_INTERVAL_S", "5")
    assert Settings().housekeeping_interval_s == 5
