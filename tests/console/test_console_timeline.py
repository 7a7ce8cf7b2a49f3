"""A request's timeline says where it is and, when it ended badly, why."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.console.service import timeline
from app.erasure_requests.models import ErasureRequest, RequestStatus
from app.jobs.models import Job, JobStatus

T0 = datetime(2026, 12, 1, 9, 0)


def _request(status: RequestStatus, **kw: object) -> ErasureRequest:
    values: dict[str, object] = {
        "id": "r1",
        "status": status,
        "received_at": T0,
        "sample_count": 3,
        "regulation": "gdpr",
        "status_reason": None,
    }
    values.update(kw)
    return ErasureRequest(**values)


def _job(**kw: object) -> Job:
    values: dict[str, object] = {
        "id": "j1",
        "status": JobStatus.running,
        "created_at": T0 + timedelta(seconds=1),
        "started_at": T0 + timedelta(seconds=2),
        "attempts": 2,
        "worker": "gpu-1",
    }
    values.update(kw)
    return Job(**values)


def test_a_failed_request_ends_with_its_reason_after_every_attempt() -> None:
    req = _request(
        RequestStatus.failed,
        status_reason="verification gate refused every method: lau: UA 80.00 < 99.00",
        completed_at=T0 + timedelta(minutes=5),
    )
    steps = timeline(req=req, job=_job(status=JobStatus.failed))
    assert [s.name for s in steps] == ["received", "queued", "running", "failed"]
    assert steps[2].detail == "attempt 2, worker gpu-1" and steps[2].state == "done"
    assert steps[-1].state == "failed" and "UA 80.00 < 99.00" in steps[-1].detail


def test_a_running_request_is_current_and_its_completion_still_to_come() -> None:
    steps = timeline(req=_request(RequestStatus.running), job=_job())
    assert [(s.name, s.state) for s in steps] == [
        ("received", "done"),
        ("queued", "done"),
        ("running", "current"),
        ("completed", "todo"),
    ]


def test_a_denied_request_shows_ground_reason_and_extension() -> None:
    req = _request(
        RequestStatus.denied,
        denial_ground="legal_claims",
        status_reason="pending litigation",
        completed_at=T0 + timedelta(days=3),
        extended_at=T0 + timedelta(days=1),
        extension_months=2,
        extension_reason="complex",
    )
    steps = timeline(req=req, job=None)
    assert [s.name for s in steps] == ["received", "deadline extended", "denied"]
    assert steps[1].detail == "+2 month(s): complex"
    assert steps[2].detail == "legal_claims: pending litigation"
