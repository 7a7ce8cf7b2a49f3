"""Alembic on a real, fresh PostgreSQL database: upgrade head, downgrade base, upgrade head.

`lethe migrate` runs `upgrade head` on every deploy; a rollback runs `downgrade`. Both must
leave nothing behind, including the append-only trigger and its function on audit_events.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import create_engine, text

from app.core.migrate import downgrade, upgrade
from tests.support.postgres import fresh_database

pytestmark = pytest.mark.postgres

OBJECTS = {
    "tables": "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
    "sequences": "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'",
    "views": "SELECT viewname FROM pg_views WHERE schemaname = 'public'",
    "functions": "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    " WHERE n.nspname = 'public'",
    "triggers": "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal",
    "types": "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
    " WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'c')"
    " AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')",
}


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """A brand-new, empty database (not a clone of the migrated template)."""
    with fresh_database(prefix="lethe_mig") as url:
        yield url


def schema(url: str) -> dict[str, set[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return {kind: set(c.scalars(text(sql))) for kind, sql in OBJECTS.items()}
    finally:
        engine.dispose()


def columns(url: str) -> dict[str, set[str]]:
    engine = create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {
            t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()
        }
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_round_trip(empty_postgres: str) -> None:
    from app.tables import metadata

    url = empty_postgres
    assert schema(url)["tables"] == set()

    upgrade(url)
    first = schema(url)
    first_columns = columns(url)
    assert first["tables"] == set(metadata.tables) | {"alembic_version"}
    assert "audit_events_append_only" in first["triggers"]
    assert "lethe_audit_append_only" in first["functions"]

    downgrade(url, "base")
    after = schema(url)
    assert after["tables"] == {"alembic_version"}, after["tables"]
    assert {k: v for k, v in after.items() if k != "tables"} == {
        k: set() for k in OBJECTS if k != "tables"
    }
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            assert c.scalar(text("SELECT count(*) FROM alembic_version")) == 0
    finally:
        engine.dispose()

    upgrade(url)
    assert schema(url) == first
    assert columns(url) == first_columns


def test_the_migrated_audit_table_is_append_only(empty_postgres: str) -> None:
    upgrade(empty_postgres)
    engine = create_engine(empty_postgres)
    try:
        with engine.connect() as c, pytest.raises(sa.exc.DBAPIError, match="append-only"):
            c.execute(text("DELETE FROM audit_events"))
        with engine.connect() as c, pytest.raises(sa.exc.DBAPIError, match="never edited"):
            c.execute(text("UPDATE audit_pending SET actor = 'mallory'"))
    finally:
        engine.dispose()


def test_a_downgrade_never_drops_unsealed_audit_events(empty_postgres: str) -> None:
    from app.audit import service as audit
    from app.core.db import make_engine, make_session_factory

    upgrade(empty_postgres)
    factory = make_session_factory(make_engine(empty_postgres))
    with factory() as s:
        audit.append(session=s, type="test", actor="a", subject="x")
        s.commit()
    with pytest.raises(RuntimeError, match="not sealed yet"):
        downgrade(empty_postgres, "0003_callbacks_webhooks")
    with factory() as s:
        audit.seal(session=s)
        s.commit()
    downgrade(empty_postgres, "0003_callbacks_webhooks")
    assert "audit_pending" not in schema(empty_postgres)["tables"]
