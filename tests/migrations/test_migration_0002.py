"""Migration 0002 (idempotency keys, deadline extension/denial columns, architecture specs)
upgrades and downgrades cleanly on SQLite and PostgreSQL, and matches the ORM."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, inspect


def _columns(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_0002_down_and_up_again(db_url: str) -> None:
    from app.core.migrate import downgrade, upgrade
    from app.tables import metadata

    new_columns = {"extended_at", "extension_months", "extension_reason", "denial_ground"}
    assert {"idempotency_keys", "architecture_specs"} <= _tables(db_url)
    assert new_columns <= _columns(db_url, "erasure_requests")
    for table in ("idempotency_keys", "architecture_specs", "erasure_requests"):
        assert _columns(db_url, table) == {c.name for c in metadata.tables[table].columns}

    downgrade(db_url, "baf9e50edcff")
    assert not {"idempotency_keys", "architecture_specs"} & _tables(db_url)
    assert not new_columns & _columns(db_url, "erasure_requests")
    assert "erasure_requests" in _tables(db_url)

    upgrade(db_url)
    assert {"idempotency_keys", "architecture_specs"} <= _tables(db_url)
    assert new_columns <= _columns(db_url, "erasure_requests")


def test_schema_has_no_drift_from_the_orm(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app.tables import metadata

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            diff: list[Any] = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    mine = {"idempotency_keys", "architecture_specs", "erasure_requests"}
    relevant = [d for d in diff if any(t in repr(d) for t in mine)]
    assert relevant == []
