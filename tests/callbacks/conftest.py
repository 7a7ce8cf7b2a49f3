"""Callback tests run with 127.0.0.1 allow-listed and retries fast enough to watch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.callbacks.callback_receiver import Receiver
from tests.support.service import make_settings


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(
        tmp_path,
        db_url,
        callback_allowed_hosts="127.0.0.1",
        callback_backoff_base_s=0.05,
        callback_backoff_max_s=0.2,
        callback_timeout_s=5.0,
        housekeeping_interval_s=0.5,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=1)
    yield r
    r.close()
