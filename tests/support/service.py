"""Settings and rows of the service under test."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def make_settings(data_dir: Path, database_url: str, **overrides: Any) -> Any:
    from app.core.config import Settings

    values: dict[str, Any] = {
        "env": "test",
        "data_dir": data_dir,
        "database_url": database_url,
        "store_url": (data_dir / "store").as_uri(),
        "device": "cpu",
        "heartbeat_interval_s": 0.5,
        "heartbeat_timeout_s": 5.0,
        "housekeeping_interval_s": 1.0,
        # the tests' own bursts (8 threads plus polling) must not be shed; the shedding
        # tests set their own limit (tests/core/test_shedding.py)
        "max_in_flight_requests": 64,
    }
    values.update(overrides)
    return Settings(**values)


def create_key(
    rt: Any, scopes: list[str], models: list[str] | None = None, name: str = "test"
) -> str:
    from app.auth.service import create_key as create
    from app.core.db import session_scope

    with session_scope(rt.session_factory, None) as s:
        _, key = create(session=s, name=name, scopes=scopes, models=models)
    return key
