"""How native requests read in OpenDSR: statuses and the status/callback body.

OpenDSR 2.0 knows four statuses. Lethe's seven map onto them so:

    received, queued  → pending       (accepted, not yet being acted on)
    running           → in_progress
    completed         → completed
    canceled          → cancelled     (by the controller, DELETE)
    denied            → cancelled     (refused under Art. 17(3); the reason is in extensions)
    failed            → cancelled     (could not be fulfilled; the reason is in extensions)

The spec has no "refused" or "failed" status, and a request that will never be fulfilled
must not stay `pending`, so both end `cancelled`. The exact Lethe status, its reason, the
model and the resulting version travel in `extensions[<processor domain>]`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.erasure_requests.models import ErasureRequest, RequestStatus

API_VERSION = "2.0"

STATUS = {
    RequestStatus.received: "pending",
    RequestStatus.queued: "pending",
    RequestStatus.running: "in_progress",
    RequestStatus.completed: "completed",
    RequestStatus.canceled: "cancelled",
    RequestStatus.denied: "cancelled",
    RequestStatus.failed: "cancelled",
}


def rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(
    *,
    req: ErasureRequest,
    model_name: str | None,
    domain: str,
    status_callback_url: str | None = None,
    children: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The OpenDSR status object (section 8.3); with `status_callback_url` the callback
    body (section 8.6). A fan-out parent (`children` given) lists each model's child in
    `extensions[domain].models`."""
    body: dict[str, Any] = {
        "controller_id": req.client,
        "expected_completion_time": rfc3339(req.due_at),
        "subject_request_id": req.subject_request_id,
        "request_status": STATUS[req.status],
        "api_version": API_VERSION,
    }
    if status_callback_url is not None:
        body["status_callback_url"] = status_callback_url
    body["extensions"] = {
        domain: {
            "request_id": req.id,
            "model": model_name,
            "status": req.status.value,
            "status_reason": req.status_reason,
            "result_version": req.result_version,
        }
    }
    if children is not None:
        body["extensions"][domain]["models"] = children
    return body
