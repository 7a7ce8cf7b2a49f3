"""The children of fan-out parents, as every reader of a parent shows them (its GET, its
callbacks, its OpenDSR status, its receipt): one entry per model, with the child's status
and result version. Reads only; `parents.py` owns the parent's status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from app.auth.service import Client
from app.erasure_requests.models import ErasureRequest
from app.registry.models import Model


def is_parent(req: ErasureRequest) -> bool:
    """A fan-out parent names no model (its children do)."""
    return req.model_id is None


def children_of(
    *, session: Session, parent_ids: Sequence[str]
) -> dict[str, list[tuple[ErasureRequest, str]]]:
    """Each parent's children with their model names, in model-name order."""
    out: dict[str, list[tuple[ErasureRequest, str]]] = {pid: [] for pid in parent_ids}
    if not parent_ids:
        return out
    rows = session.execute(
        select(ErasureRequest, Model.name)
        .join(Model, Model.id == ErasureRequest.model_id)
        .where(ErasureRequest.parent_id.in_(list(parent_ids)))
        .order_by(ErasureRequest.parent_id, Model.name)
        .execution_options(populate_existing=True)
    ).all()
    for child, name in rows:
        assert child.parent_id is not None
        out[child.parent_id].append((child, name))
    return out


def top_level(client: Client) -> ColumnElement[bool]:
    """The requests a viewer counts once per data subject: standalone requests and fan-out
    parents, not the parents' children (each is one model's share of its parent's work).
    For a key restricted to some models, a parent is visible when it may use every model
    the parent fanned out to (`fanout.visible`); a child of a parent it cannot see stands
    on its own for that key."""
    if client.models is None:
        return ErasureRequest.parent_id.is_(None)
    allowed = select(Model.id).where(Model.name.in_(sorted(client.models)))
    child, parent = aliased(ErasureRequest), aliased(ErasureRequest)

    def parent_visible(p: Any) -> ColumnElement[bool]:
        kids = exists().where(child.parent_id == p.id)
        foreign = exists().where(child.parent_id == p.id, child.model_id.not_in(allowed))
        return and_(~foreign, or_(kids, p.client == client.name))

    hidden_parent = ~exists().where(parent.id == ErasureRequest.parent_id, parent_visible(parent))
    return or_(
        and_(ErasureRequest.model_id.is_(None), parent_visible(ErasureRequest)),
        and_(
            ErasureRequest.model_id.in_(allowed),
            or_(ErasureRequest.parent_id.is_(None), hidden_parent),
        ),
    )


def entry(child: ErasureRequest, model_name: str) -> dict[str, Any]:
    """One child as a parent's readers list it (JSON-ready)."""
    return {
        "request_id": child.id,
        "model": model_name,
        "status": child.status.value,
        "status_reason": child.status_reason,
        "sample_count": child.sample_count,
        "job_id": child.job_id,
        "result_version": child.result_version,
        "completed_at": child.completed_at.isoformat() if child.completed_at else None,
    }


def entries(*, session: Session, parent_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    return {
        pid: [entry(c, name) for c, name in kids]
        for pid, kids in children_of(session=session, parent_ids=parent_ids).items()
    }


def subject_request_id(*, session: Session, req: ErasureRequest) -> str:
    """The portal's id of a request: its own, or (a fan-out child) its parent's."""
    if req.subject_request_id is not None:
        return req.subject_request_id
    srid = session.scalar(
        select(ErasureRequest.subject_request_id).where(ErasureRequest.id == req.parent_id)
    )
    assert srid is not None  # a child always has a parent, which holds the portal's id
    return srid
