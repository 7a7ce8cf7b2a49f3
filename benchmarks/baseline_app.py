"""The reference for the load benchmark: the least a FastAPI service on the same
PostgreSQL can do per request — one INSERT and COMMIT (POST), one SELECT by key (GET) —
with the same driver and pool settings as Lethe, and an API-key check of the same cost
(one indexed SELECT plus a constant-time compare), so the ratio measures Lethe's own
work: validation, sample lookup, the audit append and scheduling."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid
from typing import Any

from fastapi import Body, FastAPI, Header, HTTPException
from sqlalchemy import text

from app.core.db import make_engine

engine = make_engine(os.environ["BASELINE_DATABASE_URL"])
KEY = os.environ.get("BASELINE_KEY", "baseline")
with engine.begin() as conn:
    conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS baseline_items (id uuid PRIMARY KEY, body jsonb NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        )
    )
    conn.execute(
        text("CREATE TABLE IF NOT EXISTS baseline_keys (prefix text PRIMARY KEY, hash text)")
    )
    conn.execute(
        text("INSERT INTO baseline_keys VALUES ('k', :h) ON CONFLICT DO NOTHING"),
        {"h": hashlib.sha256(KEY.encode()).hexdigest()},
    )

app = FastAPI()


def _auth(conn: Any, key: str | None) -> None:
    stored = conn.execute(text("SELECT hash FROM baseline_keys WHERE prefix = 'k'")).scalar()
    if not key or not hmac.compare_digest(stored, hashlib.sha256(key.encode()).hexdigest()):
        raise HTTPException(401)


@app.post("/items", status_code=202)
def create(
    body: dict[str, Any] = Body(...), x_api_key: str | None = Header(None)
) -> dict[str, str]:
    item_id = str(uuid.uuid4())
    with engine.begin() as conn:
        _auth(conn, x_api_key)
        conn.execute(
            text("INSERT INTO baseline_items (id, body) VALUES (:i, :b)"),
            {"i": item_id, "b": json.dumps(body)},
        )
    return {"id": item_id}


@app.get("/items/{item_id}")
def read(item_id: uuid.UUID, x_api_key: str | None = Header(None)) -> dict[str, Any]:
    with engine.connect() as conn:
        _auth(conn, x_api_key)
        row = conn.execute(
            text("SELECT id, body, created_at FROM baseline_items WHERE id = :i"),
            {"i": str(item_id)},
        ).one_or_none()
    if row is None:
        raise HTTPException(404)
    return {"id": str(row.id), "body": row.body, "created_at": row.created_at.isoformat()}
