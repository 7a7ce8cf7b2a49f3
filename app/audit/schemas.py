from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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


HEX64 = "^[0-9a-f]{64}$"


class CheckpointRead(BaseModel):
    """A signed checkpoint: the log's first `size` events hash to `root` (RFC 9162 Merkle
    tree over their chain hashes); `signature` is Ed25519 over the canonical JSON of the
    other fields (sorted keys, no spaces), by the key at `GET /v1/audit/public-key`."""

    model_config = ConfigDict(from_attributes=True)
    origin: Literal["lethe-audit-log/v1"] = "lethe-audit-log/v1"
    size: int = Field(ge=1, le=2**62)
    root: str = Field(pattern=HEX64)
    head_hash: str = Field(pattern=HEX64)
    time: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
    key_id: str = Field(pattern="^[0-9a-f]{16}$")
    signature: str = Field(
        pattern="^[A-Za-z0-9+/]{86}==$", description="base64 of the 64-byte Ed25519 signature"
    )


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
