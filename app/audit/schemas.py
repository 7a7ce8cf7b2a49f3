from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    seq: int
    created_at: datetime
    type: str
    actor: str
    subject: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str


class AuditList(BaseModel):
    items: list[AuditEventRead]
    next_cursor: str | None


class CheckpointRead(BaseModel):
    """A signed checkpoint: the log's first `size` events hash to `root` (RFC 9162 Merkle
    tree over their chain hashes); `signature` is Ed25519 over the canonical JSON of the
    other fields (sorted keys, no spaces), by the key at `GET /v1/audit/public-key`."""

    model_config = ConfigDict(from_attributes=True)
    origin: str = "lethe-audit-log/v1"
    size: int
    root: str
    head_hash: str
    time: str
    key_id: str
    signature: str


class InclusionProof(BaseModel):
    """Event `seq` (leaf `seq - 1`, whose data is the event's chain hash `leaf`) is in the
    tree of `checkpoint`: check offline with RFC 9162 §2.1.3.2."""

    seq: int
    leaf: str
    size: int
    path: list[str]
    checkpoint: CheckpointRead


class AuditVerification(BaseModel):
    ok: bool
    checked: int
    head_seq: int
    first_broken_seq: int | None
    reason: str | None
    checkpoint: CheckpointRead | None = None
    """The newest checkpoint in the store, which the log was checked against."""
    checkpoints_checked: int = 0
