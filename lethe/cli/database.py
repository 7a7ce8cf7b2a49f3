"""The database of an existing deployment, for the commands that work on one (keys, audit,
store verify, architectures publish, the worker).

They never create one: a command run outside the project folder would otherwise leave an
empty `data/lethe.db` behind and fail deep inside with `no such table`. Instead it says
which database it looked for and what to do. `lethe migrate`, `seed-demo`, `demo` and
`serve` are the commands that create or upgrade a database.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.db import make_engine, make_session_factory


def _refuse(message: str) -> NoReturn:
    typer.echo(f"lethe: {message}", err=True)
    raise typer.Exit(1)


def existing_database(settings: Settings) -> sessionmaker[Session]:
    """Sessions on the deployment's migrated database; exit 1 with a clear message when
    there is none (no SQLite file, server unreachable, tables not created)."""
    url = make_url(settings.resolved_database_url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(str(url.database))
        if not path.exists():
            _refuse(
                f"no Lethe database at {path}. This command works on an existing "
                "deployment: run it in the folder where you ran `make run` (its data/ is "
                "the default), or set LETHE_DATA_DIR or LETHE_DATABASE_URL to the "
                "deployment's. `lethe migrate` creates a new database."
            )
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            migrated = inspect(conn).has_table("alembic_version")
    except OperationalError as exc:
        engine.dispose()
        _refuse(
            f"cannot reach the database {shown}: {exc.orig}. Check LETHE_DATABASE_URL "
            "and that the server is up."
        )
    if not migrated:
        engine.dispose()
        _refuse(
            f"the database {shown} has no Lethe tables: run `lethe migrate` first, or set "
            "LETHE_DATABASE_URL (or LETHE_DATA_DIR) to the deployment's database."
        )
    return make_session_factory(engine)
