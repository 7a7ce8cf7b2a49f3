"""Bulk inserts and membership checks sized for millions of rows.

PostgreSQL gets COPY and `= ANY(array)`; SQLite gets the driver's own executemany (it
skips SQLAlchemy's per-row processing, ~10x faster); other backends fall back to
SQLAlchemy executemany in chunks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ARRAY, String, Table, any_, bindparam, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

CHUNK = 10_000


def bulk_insert(
    session: Session, table: Table, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> int:
    """Insert `rows` (tuples in `columns` order) in the session's transaction."""
    conn = session.connection()
    names = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        raw: Any = conn.connection.driver_connection
        if type(raw).__module__.startswith("psycopg"):
            count = 0
            with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
                    count += 1
            return count
    if conn.dialect.name == "sqlite":
        cursor: Any = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        statement = f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(columns))})"
        count, it = 0, iter(rows)
        while chunk := list(itertools.islice(it, CHUNK)):
            cursor.executemany(statement, chunk)
            count += len(chunk)
        cursor.close()
        return count
    count, it = 0, iter(rows)
    while chunk := list(itertools.islice(it, CHUNK)):
        session.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in chunk])
        count += len(chunk)
    return count


def existing(
    session: Session, column: Any, values: Sequence[str], *where: ColumnElement[bool]
) -> set[str]:
    """Which of `values` occur in `column` (rows filtered by `where`)."""
    if session.connection().dialect.name == "postgresql":
        # one array parameter instead of thousands of bind parameters
        ids = bindparam("values", list(values), type_=ARRAY(String))
        return set(session.scalars(select(column).where(*where, column == any_(ids))))
    found: set[str] = set()
    for start in range(0, len(values), 5_000):
        chunk = list(values[start : start + 5_000])
        found.update(session.scalars(select(column).where(*where, column.in_(chunk))))
    return found
