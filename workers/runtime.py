"""What a worker process needs to run jobs: settings, sessions, the store, a dispatcher."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.core.after_commit import Dispatcher
from app.core.config import Settings
from app.core.db import make_engine, make_session_factory
from app.core.store import open_settings_store


@dataclass
class Runtime:
    settings: Settings
    session_factory: sessionmaker[Session]
    store: Any
    dispatcher: Dispatcher | None
    worker_name: str


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def build_runtime(settings: Settings, dispatcher: Dispatcher | None = None) -> Runtime:
    factory = make_session_factory(make_engine(settings.resolved_database_url))
    return Runtime(settings, factory, open_settings_store(settings), dispatcher, worker_name())
