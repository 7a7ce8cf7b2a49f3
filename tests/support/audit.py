"""Acting on the audit tables as the database owner would (the review's bypass)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text


def as_owner(conn: Any) -> None:
    """Switch off the append-only trigger for this connection, as a PostgreSQL owner can."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET session_replication_role = replica"))
