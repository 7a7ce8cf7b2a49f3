"""Signed erasure receipts: what a final request asked, what was done, and where that is
written in the audit chain, signed with the processor key (`app.opendsr.keys`, the key
OpenDSR responses are signed with; one key, one certificate).

The signature covers `payload`, the receipt as canonical JSON (keys sorted, no spaces,
UTF-8): a verifier needs only `cryptography` and `json` (docs/RECEIPTS.md):

    ECDSA P-256 / SHA-256 (DER) by default; RSA-PSS SHA-256 (MGF1-SHA-256, 32-byte salt)
    when the configured processor key is RSA.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import checkpoints
from app.audit import service as audit
from app.audit.models import AuditEvent, AuditHead
from app.core.config import Settings
from app.core.db import utcnow
from app.core.errors import Conflict
from app.erasure_requests.children import children_of, is_parent, subject_request_id
from app.erasure_requests.models import ErasureRequest, ErasureRequestSample, RequestStatus
from app.erasure_requests.schemas import ErasureReceiptRead
from app.opendsr.keys import signing_key
from app.registry.models import Alias, Model, ModelVersion, TrainingSample

RECEIPTED = frozenset({RequestStatus.completed, RequestStatus.denied, RequestStatus.failed})
_FINAL_EVENTS = ("request.completed", "request.denied", "request.failed")


def canonical(receipt: dict[str, Any]) -> str:
    """The exact text that is signed."""
    return json.dumps(
        receipt, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _iso(value: Any) -> str | None:
    return value.isoformat(timespec="milliseconds") if value is not None else None


def _erased(session: Session, req: ErasureRequest, model: Model) -> int:
    """How many of the request's samples are erased in the model now."""
    return len(
        list(
            session.scalars(
                select(TrainingSample.sample_id)
                .join(
                    ErasureRequestSample,
                    ErasureRequestSample.sample_id == TrainingSample.sample_id,
                )
                .where(
                    ErasureRequestSample.request_id == req.id,
                    TrainingSample.model_id == model.id,
                    TrainingSample.erased_in_version.is_not(None),
                )
            )
        )
    )


def _outcome(session: Session, req: ErasureRequest, model: Model) -> dict[str, Any]:
    production = session.get(Alias, (model.id, "production"))
    outcome: dict[str, Any] = {
        "erased_sample_count": _erased(session, req, model),
        "result_version": req.result_version,
        "serving_version": production.version_number if production else None,
        "retired_versions": [],
        "verification": None,
    }
    if req.result_version is not None:
        outcome["retired_versions"] = list(
            session.scalars(
                select(ModelVersion.number)
                .where(
                    ModelVersion.model_id == model.id,
                    ModelVersion.superseded_by == req.result_version,
                )
                .order_by(ModelVersion.number)
            )
        )
        version = session.scalar(
            select(ModelVersion).where(
                ModelVersion.model_id == model.id, ModelVersion.number == req.result_version
            )
        )
        outcome["verification"] = dict(version.metrics) if version else None
    return outcome


def _parent_outcome(session: Session, parent: ErasureRequest) -> dict[str, Any]:
    """A fan-out parent's outcome: each model's child, as its own receipt states it."""
    kids = children_of(session=session, parent_ids=[parent.id])[parent.id]
    models = []
    for child, name in kids:
        model = session.get(Model, child.model_id)
        assert model is not None
        models.append(
            {
                "model": name,
                "request_id": child.id,
                "status": child.status.value,
                "status_reason": child.status_reason,
                "denial_ground": child.denial_ground,
                **_outcome(session, child, model),
            }
        )
    return {
        "no_data_held": not kids,
        "erased_sample_count": sum(m["erased_sample_count"] for m in models),
        "models": models,
    }


def receipt(
    *, session: Session, req: ErasureRequest, settings: Settings, store: Any = None
) -> ErasureReceiptRead:
    """The signed receipt of a completed, denied or failed request (409 while it is open
    or when it was canceled: a canceled request asked for nothing to be done)."""
    if req.status not in RECEIPTED:
        raise Conflict(
            f"request {req.id} is {req.status.value}; a receipt is issued once it is "
            "completed, denied or failed",
            status_of_request=req.status.value,
        )
    audit.seal(session=session)  # the final event is in the chain before it is cited
    event = session.scalar(
        select(AuditEvent)
        .where(AuditEvent.subject == f"request:{req.id}", AuditEvent.type.in_(_FINAL_EVENTS))
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    )
    head = session.get(AuditHead, 1)
    assert event is not None and head is not None
    asked: dict[str, Any] = {
        "id": req.id,
        "subject_request_id": subject_request_id(session=session, req=req),
        "regulation": req.regulation,
        "model": None,
        "submitted_time": _iso(req.submitted_time),
        "received_at": _iso(req.received_at),
        "sample_count": req.sample_count,
    }
    if is_parent(req):
        outcome = _parent_outcome(session, req)
        asked["models"] = [c["model"] for c in outcome["models"]]
    else:
        model = session.get(Model, req.model_id)
        assert model is not None
        asked["model"] = model.name
        outcome = _outcome(session, req, model)
        if req.parent_id is not None:
            asked["parent_id"] = req.parent_id
    body: dict[str, Any] = {
        "receipt_version": 1,
        "issuer": settings.opendsr_processor_domain,
        "issued_at": _iso(utcnow()),
        "request": asked,
        "status": req.status.value,
        "status_reason": req.status_reason,
        "denial_ground": req.denial_ground,
        "finished_at": _iso(req.completed_at),
        "outcome": outcome,
        "audit": {
            "event_type": event.type,
            "event_seq": event.seq,
            "event_hash": event.hash,
            "event_time": _iso(event.created_at),
            "chain_head_seq": head.seq,
            "chain_head_hash": head.hash,
            # the newest signed checkpoint; `proof_url` when it covers the final event
            "checkpoint": checkpoints.reference(store, event.seq),
        },
    }
    payload = canonical(body)
    key = signing_key(settings)
    algorithm = (
        "ECDSA-P256-SHA256"
        if isinstance(key.private_key, ec.EllipticCurvePrivateKey)
        else "RSA-PSS-SHA256"
    )
    return ErasureReceiptRead(
        receipt=body,
        payload=payload,
        signature=key.sign(payload.encode()),
        algorithm=algorithm,
        certificate=key.certificate_pem.decode(),
    )
