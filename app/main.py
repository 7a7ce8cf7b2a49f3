"""The ASGI application. Never imports torch: jobs are handed to a Dispatcher."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from app.audit.checkpoints import checkpointer, signing_key
from app.audit.router import router as audit_router
from app.audit.sealer import audit_sealer
from app.auth.gate import AuthGate, RouteTable
from app.callbacks.router import router as callbacks_router
from app.callbacks.router import webhooks_router
from app.console.app import install as install_console
from app.core.after_commit import Dispatcher
from app.core.config import Settings, get_settings
from app.core.db import make_engine, make_session_factory
from app.core.errors import install_error_handlers
from app.core.openapi import install_openapi
from app.core.store import open_settings_store
from app.erasure_requests.router import router as requests_router
from app.health.router import router as health_router
from app.http.admission import AdmissionLimit
from app.http.json_body import JsonBodyGuard
from app.idempotency.middleware import IdempotencyMiddleware
from app.jobs.router import router as jobs_router
from app.jobs.scheduler import scheduler
from app.observability.metrics import Metrics
from app.observability.middleware import BodyLimitMiddleware, RequestContextMiddleware
from app.observability.router import router as metrics_router
from app.opendsr import keys as opendsr_keys
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
    store = store or open_settings_store(settings)
    audit_key = signing_key(settings)
    loops.append(checkpointer(session_factory, store, settings, audit_key))

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
        docs_url=None,  # served offline by the console (app/console/app.py)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.session_factory = session_factory
    app.state.store = store
    app.state.audit_key = audit_key
    app.state.dispatcher = dispatcher
    install_error_handlers(app)
    app.state.metrics = Metrics(app.state.session_factory)
    app.add_middleware(JsonBodyGuard)
    app.add_middleware(
        IdempotencyMiddleware,
        session_factory=app.state.session_factory,
        ttl_s=settings.idempotency_ttl_s,
        lease_s=settings.idempotency_lease_s,
        secret=settings.secret_key.get_secret_value(),
        signers={"/opendsr/": lambda body: opendsr_keys.signed_headers(settings, body)},
    )
    app.state.routes = RouteTable(app)
    app.add_middleware(AuthGate, table=app.state.routes, session_factory=session_factory)
    app.add_middleware(
        BodyLimitMiddleware,
        default=settings.max_body_bytes,
        uploads={"POST /v1/models": settings.max_upload_bytes},
    )
    app.add_middleware(AdmissionLimit, max_in_flight=settings.max_in_flight_requests)
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
    install_console(app)
    return app
