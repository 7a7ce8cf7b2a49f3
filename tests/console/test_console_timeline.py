"""A request's timeline says where it is and, when it ended badly, why."""

from __future__ import annotations

from datetime import timedelta

from app.console.service import timeline
from app.erasure_requests.models import RequestStatus
from app.jobs.models import JobStatus
from tests.support.rows import T0, job_row, request_row


def test_a_failed_request_ends_with_its_reason_after_every_attempt() -> None:
    req = request_row(
        RequestStatus.failed,
        status_reason="verification gate refused every method: lau: UA 80.00 < 99.00",
        completed_at=T0 + timedelta(minutes=5),
    )
    steps = timeline(req=req, job=job_row(status=JobStatus.failed))
    assert [s.name for s in steps] == ["received", "queued", "running", "failed"]
    assert steps[2].detail == "attempt 2, worker gpu-1" and steps[2].state == "done"
    assert steps[-1].state == "failed" and "UA 80.00 < 99.00" in steps[-1].detail


def test_a_running_request_is_current_and_its_completion_still_to_come() -> None:
    steps = timeline(req=request_row(RequestStatus.running), job=job_row())
    assert [(s.name, s.state) for s in steps] == [
        ("received", "done"),
        ("queued", "done"),
        ("running", "current"),
        ("completed", "todo"),
    ]


def test_a_denied_request_shows_ground_reason_and_extension() -> None:
    req = request_row(
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
