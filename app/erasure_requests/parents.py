"""A fan-out parent's status, deadline and reason summarise its children (one per model
holding the subject). `refresh` is called by every change of a child's status
(`lifecycle`), in the same transaction:

    open:  received while every child is received; queued while every child is received
           or queued (none started); running once any child has started or ended while
           another is still open
    final: once every child is final —
           failed     if any child failed (the reason names each failed child's model and
                      reason; the other children keep what they did)
           denied     else if any child was denied (Art. 17(3) must be told to the subject)
           completed  else if any child completed
           canceled   else (every child canceled)

The parent's `due_at` is its children's latest. The parent row is locked (FOR UPDATE on
PostgreSQL) before its children are read, so two jobs publishing the last two children at
once cannot both see the other still running: the second reads after the first commits.
A parent's status change queues its callbacks and, when final, its own audit event
(`request.completed` / `failed` / `denied` / `canceled`, listing the children).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.callbacks import service as callbacks
from app.erasure_requests.children import children_of
from app.erasure_requests.models import (
    FINAL_STATUSES,
    ErasureRequest,
    RequestStatus,
    clip_reason,
)

S = RequestStatus
FANOUT_ACTOR = "system:fan-out"


def summary(
    kids: Sequence[tuple[ErasureRequest, str]],
) -> tuple[RequestStatus, str | None, str | None]:
    """(status, reason, denial ground) of a parent with these (child, model name) pairs."""
    statuses = [c.status for c, _ in kids]
    if not all(s in FINAL_STATUSES for s in statuses):
        if all(s == S.received for s in statuses):
            return S.received, None, None
        if all(s in (S.received, S.queued) for s in statuses):
            return S.queued, None, None
        return S.running, None, None

    def listed(status: RequestStatus) -> list[str]:
        return [f"{name!r}: {c.status_reason}" for c, name in kids if c.status == status]

    if S.failed in statuses:
        failed = listed(S.failed)
        return S.failed, f"{len(failed)} of {len(kids)} model(s) failed; " + "; ".join(failed), None
    if S.denied in statuses:
        denied = [(c, name) for c, name in kids if c.status == S.denied]
        grounds = {c.denial_ground for c, _ in denied}
        reasons = {c.status_reason for c, _ in denied}
        if len(denied) == len(kids) and len(reasons) == 1:
            return S.denied, reasons.pop(), grounds.pop()
        detail = "; ".join(f"{n!r} ({c.denial_ground}): {c.status_reason}" for c, n in denied)
        ground = grounds.pop() if len(grounds) == 1 else None
        return S.denied, f"denied for {len(denied)} of {len(kids)} model(s): {detail}", ground
    if S.completed in statuses:
        others = [f"{n!r}: {c.status.value}" for c, n in kids if c.status != S.completed]
        return S.completed, ("; ".join(others) or None), None
    return S.canceled, kids[0][0].status_reason if kids else None, None


def _lock(session: Session, parent_ids: list[str]) -> list[ErasureRequest]:
    q = (
        select(ErasureRequest)
        .where(ErasureRequest.id.in_(parent_ids))
        .order_by(ErasureRequest.id)
        .execution_options(populate_existing=True)
    )
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    return list(session.scalars(q))


def refresh(
    *, session: Session, child_ids: Sequence[str], now: datetime, actor: str = FANOUT_ACTOR
) -> list[str]:
    """Bring the parents of these requests up to date with their children. Returns the ids
    of the parents whose status changed (their callbacks are queued)."""
    if not child_ids:
        return []
    session.flush()
    parent_ids = sorted(
        {
            p
            for p in session.scalars(
                select(ErasureRequest.parent_id).where(
                    ErasureRequest.id.in_(list(dict.fromkeys(child_ids))),
                    ErasureRequest.parent_id.is_not(None),
                )
            )
            if p is not None
        }
    )
    if not parent_ids:
        return []
    parents = _lock(session, parent_ids)
    kids = children_of(session=session, parent_ids=parent_ids)
    changed = []
    for parent in parents:
        mine = kids[parent.id]
        if not mine:
            continue
        status, reason, ground = summary(mine)
        reason = clip_reason(reason)  # as stored: unchanged when only the clipped tail differs
        parent.due_at = max(c.due_at for c, _ in mine)
        if status == parent.status and reason == parent.status_reason:
            continue
        parent.status, parent.status_reason, parent.denial_ground = status, reason, ground
        parent.updated_at = now
        if status in FINAL_STATUSES:
            parent.completed_at = now
            audit.append(
                session=session,
                type=f"request.{status.value}",
                actor=actor,
                subject=f"request:{parent.id}",
                data={
                    "version": None,
                    "reason": reason,
                    "children": [
                        {
                            "request_id": c.id,
                            "model": n,
                            "status": c.status.value,
                            "result_version": c.result_version,
                        }
                        for c, n in mine
                    ],
                },
            )
        changed.append(parent.id)
    session.flush()
    callbacks.request_status_changed(session=session, request_ids=changed)
    return changed
