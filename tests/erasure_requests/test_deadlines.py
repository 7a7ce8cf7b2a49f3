"""Art. 12(3) deadlines: one calendar month from receipt, clamped at month ends; one
extension of at most two more months; denial on an Art. 17(3) ground; both audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.requests import submit, training_ids
from tests.support.rows import backdate, update_request


def at(y: int, m: int, d: int, h: int = 12) -> datetime:
    return datetime(y, m, d, h, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("received", "months", "due"),
    [
        (at(2026, 1, 31), 1, at(2026, 2, 28)),  # 31 Jan -> 28 Feb
        (at(2028, 1, 31), 1, at(2028, 2, 29)),  # leap year
        (at(2100, 1, 31), 1, at(2100, 2, 28)),  # century, not a leap year
        (at(2000, 1, 30), 1, at(2000, 2, 29)),  # 400-year leap year
        (at(2026, 12, 31), 1, at(2027, 1, 31)),  # year boundary
        (at(2026, 12, 15), 3, at(2027, 3, 15)),  # extended across the year
        (at(2026, 11, 30), 3, at(2027, 2, 28)),
        (at(2027, 11, 30), 3, at(2028, 2, 29)),
        (at(2026, 3, 31), 1, at(2026, 4, 30)),
        (at(2026, 8, 31), 3, at(2026, 11, 30)),
        (at(2026, 2, 28), 1, at(2026, 3, 28)),  # no snapping to month end
    ],
)
def test_add_months_clamps_to_the_end_of_shorter_months(
    received: datetime, months: int, due: datetime
) -> None:
    from app.core.deadlines import add_months

    assert add_months(received, months) == due


def test_days_left_rounds_up_and_goes_negative() -> None:
    from app.core.deadlines import days_left

    now = at(2026, 2, 1)
    assert days_left(now + timedelta(hours=1), now) == 1
    assert days_left(now + timedelta(days=27, hours=23), now) == 28
    assert days_left(now, now) == 0
    assert days_left(now - timedelta(days=2), now) == -2


def test_extend_once_by_at_most_two_months_from_receipt(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    created = submit(api_client, training_ids(seeded, limit=1), admin_headers)
    rid = created["id"]
    backdate(seeded, rid, at(2026, 11, 30))
    url = f"/v1/erasure-requests/{rid}"
    assert api_client.get(url, headers=admin_headers).json()["due_at"].startswith("2026-12-30")
    for months in (0, 3):
        bad = api_client.post(
            f"{url}/extend", json={"months": months, "reason": "r"}, headers=admin_headers
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/body/months"
    assert (
        api_client.post(f"{url}/extend", json={"months": 2}, headers=admin_headers).status_code
        == 422
    )
    resp = api_client.post(
        f"{url}/extend",
        json={"months": 2, "reason": "the erasure spans 40 models"},
        headers=admin_headers,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["due_at"].startswith("2027-02-28")  # 30 Nov + 3 months, clamped
    assert body["extension_months"] == 2 and body["extension_reason"].startswith("the erasure")
    again = api_client.post(
        f"{url}/extend", json={"months": 1, "reason": "more"}, headers=admin_headers
    )
    assert again.status_code == 409 and "already extended" in again.json()["detail"]
    events = api_client.get(
        f"/v1/audit?type=request.extended&subject=request:{rid}", headers=admin_headers
    ).json()["items"]
    assert len(events) == 1
    assert events[0]["data"]["months"] == 2 and events[0]["data"]["due_at"].startswith("2027-02-28")


def test_deny_with_a_ground_and_reason(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    rid = submit(api_client, training_ids(seeded, limit=1), admin_headers)["id"]
    url = f"/v1/erasure-requests/{rid}"
    bad = api_client.post(
        f"{url}/deny", json={"ground": "because", "reason": "x"}, headers=admin_headers
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/body/ground"
    resp = api_client.post(
        f"{url}/deny",
        json={"ground": "legal_claims", "reason": "evidence in case 2026-C-114"},
        headers=admin_headers,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "denied" and body["denial_ground"] == "legal_claims"
    assert body["status_reason"] == "evidence in case 2026-C-114" and body["overdue"] is False
    assert (
        api_client.post(
            f"{url}/deny", json={"ground": "legal_claims", "reason": "x"}, headers=admin_headers
        ).status_code
        == 409
    )
    assert (
        api_client.post(
            f"{url}/extend", json={"months": 1, "reason": "x"}, headers=admin_headers
        ).status_code
        == 409
    )
    assert api_client.delete(url, headers=admin_headers).status_code == 409
    events = api_client.get(
        f"/v1/audit?type=request.denied&subject=request:{rid}", headers=admin_headers
    ).json()["items"]
    assert events[0]["data"] == {"ground": "legal_claims", "reason": "evidence in case 2026-C-114"}
    assert api_client.get("/v1/audit/verify", headers=admin_headers).json()["ok"] is True


def test_running_requests_cannot_be_denied(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    from app.erasure_requests.models import RequestStatus

    rid = submit(api_client, training_ids(seeded, limit=1), admin_headers)["id"]
    update_request(seeded, rid, status=RequestStatus.running)
    resp = api_client.post(
        f"/v1/erasure-requests/{rid}/deny",
        json={"ground": "legal_obligation", "reason": "x"},
        headers=admin_headers,
    )
    assert resp.status_code == 409 and "being erased" in resp.json()["detail"]
    # a running request's deadline can still be extended
    assert (
        api_client.post(
            f"/v1/erasure-requests/{rid}/extend",
            json={"months": 1, "reason": "x"},
            headers=admin_headers,
        ).status_code
        == 200
    )


def test_overdue_filter_and_gauge(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    ids = training_ids(seeded, limit=3)
    late, fresh, denied = (submit(api_client, [i], admin_headers)["id"] for i in ids)
    long_ago = datetime.now(UTC) - timedelta(days=45)
    backdate(seeded, late, long_ago)
    backdate(seeded, denied, long_ago)
    api_client.post(
        f"/v1/erasure-requests/{denied}/deny",
        json={"ground": "legal_claims", "reason": "x"},
        headers=admin_headers,
    )
    overdue = api_client.get("/v1/erasure-requests?overdue=true", headers=admin_headers).json()
    assert [r["id"] for r in overdue["items"]] == [late]
    assert overdue["items"][0]["days_left"] < 0 and overdue["items"][0]["overdue"] is True
    on_time = api_client.get("/v1/erasure-requests?overdue=false", headers=admin_headers).json()
    assert {r["id"] for r in on_time["items"]} == {fresh, denied}
    metrics = api_client.get("/metrics").text
    assert 'lethe_erasure_requests_overdue{model="digits-cnn"} 1.0' in metrics
    assert "lethe_erasure_requests_overdue_total 1.0" in metrics
