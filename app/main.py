"""The ASGI application. Never imports torch: jobs are handed to a Dispatcher."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from app.audit.router import router as audit_router
from app.audit.sealer import audit_sealer
from app.callbacks.router import router as callbacks_router
from app.callbacks.router import webhooks_router
from app.core.after_commit import Dispatcher
from app.core.config import Settings, get_settings
from app.core.db import make_engine, make_session_factory
from app.core.errors import install_error_handlers
from app.core.json_body import JsonBodyGuard
from app.core.openapi import install_openapi
from app.core.store import open_settings_store
from app.erasure_requests.router import router as requests_router
from app.health.router import router as health_router
from app.idempotency.middleware import IdempotencyMiddleware
from app.jobs.router import router as jobs_router
from app.jobs.scheduler import scheduler
from app.observability.metrics import Metrics
from app.observability.middleware import BodyLimitMiddleware, RequestContextMiddleware
from app.observability.router import router as metrics_router
from app.opendsr.router import install as install_opendsr
from app.opendsr.router import router as opendsr_router
from app.registry.router import router as models_router

log = logging.getLogger("lethe.app")


class NoDispatcher:
    """Used when nothing runs jobs in this process (the periodic scheduler re-dispatches)."""

    def dispatch(self, job_id: str) -> None:
        log.info("job %s queued; no dispatcher in this process", job_id)

    def deliver_callbacks(self) -> None:
        """Housekeeping (Celery beat, or another process's tick) delivers them."""

    def ping(self) -> bool:
        return False


def create_app(
    settings: Settings | None = None,
    *,
    dispatcher: Dispatcher | None = None,
    session_factory: Any = None,
    store: Any = None,
    lifespan: Any = None,
) -> FastAPI:
    settings = settings or get_settings()
    session_factory = session_factory or make_session_factory(
        make_engine(settings.resolved_database_url)
    )
    dispatcher = dispatcher or NoDispatcher()
    # After a commit, off the request path: jobs for stored requests, sealing of audit events.
    loops = [
        scheduler(session_factory, dispatcher, settings),
        audit_sealer(session_factory, interval_s=settings.audit_seal_interval_s),
    ]

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        for loop in loops:
            loop.start()
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            for loop in loops:
                loop.stop()

    app = FastAPI(
        title="Lethe",
        version="0.1.0",
        description="GDPR Art. 17 erasure for trained PyTorch classifiers: requests in, "
        "unlearned and verified model versions out, with a hash-chained audit trail.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.session_factory = session_factory
    app.state.store = store or open_settings_store(settings)
    app.state.dispatcher = dispatcher
    install_error_handlers(app)
    app.state.metrics = Metrics(app.state.session_factory)
    app.add_middleware(JsonBodyGuard)
    app.add_middleware(
        IdempotencyMiddleware,
        session_factory=app.state.session_factory,
        ttl_s=settings.idempotency_ttl_s,
    )
    app.add_middleware(
        BodyLimitMiddleware,
        default=settings.max_body_bytes,
        uploads={"POST /v1/models": settings.max_upload_bytes},
    )
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    app.include_router(metrics_router)
    for router in (
        health_router,
        requests_router,
        jobs_router,
        models_router,
        audit_router,
        callbacks_router,
        webhooks_router,
        opendsr_router,
    ):
        app.include_router(router)
    install_opendsr(app)
    install_openapi(app)
    return app
