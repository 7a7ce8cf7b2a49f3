"""Two ways to verify the audit log, each saying exactly what it checked.

- `quick_check`: anchored on the newest signed checkpoint in the store. Its signature is
  checked with the audit key and the Merkle root of the chain hashes of events 1..size is
  recomputed from the database (`checkpoints.verify_against`: reads only seq and hash),
  then every event after the checkpoint is walked (links and content recomputed). It
  proves that the hashes of events 1..size are exactly those signed, and that events
  size+1..head are intact; it does NOT recompute the content of events 1..size against
  their own hashes (an edit of an old event's content that leaves its hash alone is found
  by the full walk). Cost: O(n) hashing of stored hashes, plus O(events since the
  checkpoint) recomputation, i.e. fast enough for a console page.
- `FullWalk`: the full verification (every event's content and link from the genesis, then
  the newest checkpoint) as a background thread of this process, with its progress; the
  walk does not hold the chain head's lock, so sealing goes on meanwhile (it checks the
  events up to the head as read when it started).

`GET /v1/audit/verify` and `lethe audit verify` keep doing the full walk synchronously.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from app.audit import checkpoints
from app.audit import service as audit
from app.audit.models import AuditHead
from app.audit.sealer import seal_pending
from app.core.db import session_scope, utcnow

log = logging.getLogger("lethe.audit")


@dataclass(frozen=True)
class QuickCheck:
    ok: bool
    reason: str | None
    anchor: checkpoints.Checkpoint | None
    """The checkpoint checked now (signature and root); None when the store has none."""
    anchored: int
    """Events 1..anchored: their stored hashes match the checkpoint's signed root."""
    checked: int
    """Events after the anchor whose links and content were recomputed now."""
    head_seq: int
    first_broken_seq: int | None = None


def quick_check(*, session: Session, store: Any, key: Ed25519PublicKey) -> QuickCheck:
    """Verify the log from the newest signed checkpoint on (see the module docstring)."""
    audit.seal(session=session)
    cp = checkpoints.newest(store)
    if cp is None:  # nothing signed yet: everything is walked
        chain = audit.check_chain(session=session)
        return QuickCheck(
            chain.ok, chain.reason, None, 0, chain.checked, chain.head_seq, chain.first_broken_seq
        )
    finding = checkpoints.verify_against(session, cp, key)
    if not finding.ok:
        return QuickCheck(False, finding.reason, cp, 0, 0, cp.size)
    chain = audit.check_chain(session=session, after=cp.size, prev_hash=cp.head_hash)
    return QuickCheck(
        chain.ok, chain.reason, cp, cp.size, chain.checked, chain.head_seq, chain.first_broken_seq
    )


@dataclass(frozen=True)
class WalkState:
    """Where the full walk stands: running (checked of total so far), or its verdict."""

    running: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    total: int = 0
    checked: int = 0
    ok: bool | None = None
    reason: str | None = None
    first_broken_seq: int | None = None
    checkpoint_size: int | None = None
    """The newest checkpoint the log was also checked against, if any."""

    @property
    def percent(self) -> int:
        if not self.total:
            return 0 if self.running else 100
        return min(100, self.checked * 100 // self.total)


class FullWalk:
    """One full verification at a time per process, in a thread; `state` is its progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = WalkState()

    @property
    def state(self) -> WalkState:
        with self._lock:
            return self._state

    def _set(self, **changes: Any) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)

    def start(self, *, session_factory: Any, store: Any, key: Ed25519PublicKey) -> bool:
        """Start a walk unless one is running; False when one already was."""
        with self._lock:
            if self._state.running:
                return False
            self._state = WalkState(running=True, started_at=utcnow())
        thread = threading.Thread(
            target=self._run, args=(session_factory, store, key), name="lethe-audit-walk"
        )
        thread.daemon = True
        thread.start()
        return True

    def _run(self, session_factory: Any, store: Any, key: Ed25519PublicKey) -> None:
        try:
            seal_pending(session_factory)
            with session_scope(session_factory, None) as session:
                head = session.get(AuditHead, 1)
                self._set(total=head.seq if head else 0)
                chain = audit.check_chain(
                    session=session, until_head=True, progress=lambda n: self._set(checked=n)
                )
                ok, reason, size = chain.ok, chain.reason, None
                cp = checkpoints.newest(store)
                if cp is not None:
                    size = cp.size
                    finding = checkpoints.verify_against(session, cp, key)
                    if ok and not finding.ok:
                        ok, reason = False, finding.reason
            self._set(
                running=False,
                finished_at=utcnow(),
                checked=chain.checked,
                ok=ok,
                reason=reason,
                first_broken_seq=chain.first_broken_seq,
                checkpoint_size=size,
            )
        except Exception as exc:  # the walk failed, which says nothing about the log
            log.exception("the full audit verification failed")
            self._set(running=False, finished_at=utcnow(), ok=None, reason=f"not finished: {exc}")
