"""Shedding instead of collapsing: a bounded number of requests in flight per process.

When `max_in_flight` requests are being served, the next one is answered at once with
503 problem+json and `Retry-After` (nothing of it runs), so the accepted ones keep their
latency instead of every request queueing behind the database pool until clients give
up (and, worse, commit after they gave up). Health, readiness and metrics are exempt:
an orchestrator must see an overloaded process as alive.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.errors import Overloaded
from app.observability.middleware import send_problem

EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})


class AdmissionLimit:
    def __init__(self, app: ASGIApp, *, max_in_flight: int, retry_after_s: int = 1):
        self.app, self.limit, self.retry_after_s = app, max_in_flight, retry_after_s
        self.in_flight = 0
        self.shed = 0
        """Requests refused since start (read by tests and metrics)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:  # one event loop: no lock needed
            self.shed += 1
            busy = Overloaded(
                f"this server is at its limit of {self.limit} requests in flight; nothing "
                "was done, retry after the Retry-After seconds",
                headers={"Retry-After": str(self.retry_after_s)},
            )
            await send_problem(send, busy, scope["path"], [])
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
