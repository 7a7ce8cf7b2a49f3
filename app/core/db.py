"""Database engine, sessions and the declarative base.

Sessions never commit inside services: the request dependency (or the worker
pipeline) owns the transaction. Job ids to hand to the dispatcher are collected
on the session and sent only after a successful commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event start transactions, so writers take the lock up front
    # (BEGIN IMMEDIATE) and wait on busy_timeout instead of failing on a lock upgrade.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


class Dispatcher(Protocol):
    """Hands a committed job id to whatever runs jobs (Celery or the embedded worker)."""

    def dispatch(self, job_id: str) -> None: ...


def dispatch_after_commit(session: Session, job_id: str) -> None:
    """Queue a job id to be dispatched once the session's transaction has committed."""
    session.info.setdefault("lethe_dispatch", []).append(job_id)


@event.listens_for(Session, "after_commit")
def _send_dispatches(session: Session) -> None:
    pending: list[str] = session.info.pop("lethe_dispatch", [])
    dispatcher: Dispatcher | None = session.info.get("lethe_dispatcher")
    if dispatcher is None:
        return
    for job_id in pending:
        try:
            dispatcher.dispatch(job_id)
        except Exception:  # the reaper re-dispatches queued jobs; never fail a commit here
            import logging

            logging.getLogger("lethe.dispatch").exception("dispatch of job %s failed", job_id)


@event.listens_for(Session, "after_rollback")
def _drop_dispatches(session: Session) -> None:
    session.info.pop("lethe_dispatch", None)


def open_session(factory: sessionmaker[Session], dispatcher: Dispatcher | None) -> Session:
    """A new session whose committed job ids go to `dispatcher` (no I/O until first use)."""
    session = factory()
    session.info["lethe_dispatcher"] = dispatcher
    return session


@contextmanager
def session_scope(
    factory: sessionmaker[Session], dispatcher: Dispatcher | None
) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error."""
    with open_session(factory, dispatcher) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
