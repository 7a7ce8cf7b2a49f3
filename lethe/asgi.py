"""Composition root of the API process: the app plus whatever runs its jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.core.after_commit import Dispatcher
from app.core.config import Settings, get_settings
from app.main import create_app
from workers.runtime import build_runtime


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    rt = build_runtime(settings)
    dispatcher: Dispatcher
    if settings.embedded:
        from workers.embedded import EmbeddedWorker  # imports torch lazily, in this process

        worker = EmbeddedWorker(rt)
        dispatcher = worker

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            worker.start()
            try:
                yield
            finally:
                worker.stop()

    else:
        from workers.celery_app import CeleryDispatcher, make_celery

        dispatcher = CeleryDispatcher(make_celery(settings))
        lifespan = None  # type: ignore[assignment]
    return create_app(
        settings,
        dispatcher=dispatcher,
        session_factory=rt.session_factory,
        store=rt.store,
        lifespan=lifespan,
    )
