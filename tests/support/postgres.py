"""Fresh PostgreSQL databases: each test gets its own, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.support.services import POSTGRES_ADMIN_URL, require_service


def url_of(name: str) -> str:
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


@contextmanager
def fresh_database(*, template: str | None = None, prefix: str = "lethe_t") -> Iterator[str]:
    """A new database (a clone of `template`, or empty) for the block; its URL. Skips (or
    fails under CI=true) when PostgreSQL is unreachable."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    require_service("PostgreSQL", lambda: admin.connect().close())
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    clone = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"{clone}'))
    try:
        yield url_of(name)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
