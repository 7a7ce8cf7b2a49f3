"""OpenDSR tests call back a receiver on 127.0.0.1, so it is allow-listed here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.service import make_settings


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(
        tmp_path, db_url, callback_allowed_hosts="127.0.0.1", housekeeping_interval_s=0.5
    )
