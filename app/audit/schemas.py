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


class AuditVerification(BaseModel):
    ok: bool
    checked: int
    head_seq: int
    first_broken_seq: int | None
    reason: str | None
