"""`Idempotency-Key` on POST (and PATCH): replay the stored response of a repeated request.

Runs after `AuthGate` (which authenticated the key: an unauthenticated request passes
through and the route answers 401) and before the route. The response of the attempt
holding the key is held back until it is stored: when the route's transaction changed
something, the request dependency hands that transaction over (`HANDOVER`) and the
stored response is committed together with the change, then sent. If that commit fails,
the client gets a 503 and nothing of the change or the key is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from anyio import CancelScope, to_thread
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.gate import client_of, unavailable
from app.core.errors import (
    BadRequest,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    LetheError,
    ServiceUnavailable,
)
from app.idempotency import service
from app.observability.middleware import (
    header,
    problem_message,
    read_body,
    replaying,
    send_problem,
)

log = logging.getLogger("lethe.idempotency")
HEADER = b"idempotency-key"
CLAIM = "lethe_idempotency"
"""Scope state: the `Claim` of this attempt; tells the request dependency to hand over."""
HANDOVER = "lethe_idempotent_session"
"""Scope state: the route's uncommitted session, for the middleware to commit."""


class IdempotencyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        session_factory: object,
        ttl_s: int,
        lease_s: float,
        secret: str,
        signers: dict[str, Callable[[bytes], dict[str, str]]] | None = None,
    ):
        self.app, self.factory, self.ttl_s, self.lease_s = app, session_factory, ttl_s, lease_s
        self.secret = secret
        self.signers = signers or {}
        """Path prefix → signer of a body, for routes whose responses carry a signature."""

    def _signer(self, path: str) -> Callable[[bytes], dict[str, str]] | None:
        return next((s for p, s in self.signers.items() if path.startswith(p)), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = header(scope, HEADER) if scope["type"] == "http" else None
        if key is None or scope["method"] not in ("POST", "PATCH"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if not 1 <= len(key) <= 255 or not key.isprintable():
            bad = BadRequest("the Idempotency-Key header must be 1-255 printable characters")
            await send_problem(send, bad, path, [])
            return
        client = client_of(scope)
        if client is None:  # unrouted (404/405) or unauthenticated (401): nothing to store
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return
        target = path + ("?" + scope["query_string"].decode() if scope.get("query_string") else "")
        digest = service.fingerprint(self.secret, scope["method"], target, body)
        factory = self.factory
        try:
            outcome = await to_thread.run_sync(
                lambda: service.begin(
                    factory,  # type: ignore[arg-type]
                    client_id=client.key_id,
                    key=key,
                    method=scope["method"],
                    path=target,
                    digest=digest,
                    ttl_s=self.ttl_s,
                    lease_s=self.lease_s,
                )
            )
        except (OperationalError, PoolTimeout) as exc:
            await send_problem(send, unavailable(exc), path, [])
            return
        if outcome.kind == "mismatch":
            reused = IdempotencyKeyReused(
                "this Idempotency-Key was already used for a different request; "
                "use a new key for a new request",
                idempotency_key=key,
            )
            await send_problem(send, reused, path, [])
            return
        if outcome.kind == "in_progress":
            await send_problem(send, _in_use(key), path, [])
            return
        if outcome.kind == "replay":
            await self._replay(send, outcome, body, path)
            return
        assert outcome.claim is not None
        await self._first(scope, receive, send, body, outcome.claim, key)

    async def _replay(self, send: Send, outcome: service.Outcome, body: bytes, path: str) -> None:
        stored = service.replayed_form(outcome.body or b"", body)
        signer = self._signer(path)
        signatures = signer(stored) if signer else {}
        headers: list[tuple[bytes, bytes]] = []
        for k, v in outcome.headers or []:
            if v == service.SIGNED:
                v = next((s for n, s in signatures.items() if n.lower() == k.lower()), "")
            headers.append((k.encode("latin-1"), v.encode("latin-1")))
        headers += [
            (b"content-length", str(len(stored)).encode()),
            (b"idempotent-replayed", b"true"),
        ]
        await send(
            {"type": "http.response.start", "status": outcome.status_code, "headers": headers}
        )
        await send({"type": "http.response.body", "body": stored})

    async def _first(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        claim: service.Claim,
        key: str,
    ) -> None:
        state = scope.setdefault("state", {})
        state[CLAIM] = claim
        start: Message | None = None
        chunks: list[bytes] = []

        async def _hold(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        factory = self.factory
        try:
            await self.app(scope, replaying(body, receive), _hold)
        except BaseException:
            handed: Session | None = state.pop(HANDOVER, None)
            with CancelScope(shield=True):
                if handed is not None:
                    await to_thread.run_sync(handed.close)
                await to_thread.run_sync(lambda: service.abandon(factory, claim=claim))  # type: ignore[arg-type]
            raise
        if start is None:  # the client went away before any answer: keep nothing
            handed = state.pop(HANDOVER, None)
            with CancelScope(shield=True):
                if handed is not None:
                    await to_thread.run_sync(handed.close)
                await to_thread.run_sync(lambda: service.abandon(factory, claim=claim))  # type: ignore[arg-type]
            return
        status, response = start["status"], b"".join(chunks)
        signer = self._signer(scope["path"])
        signed = frozenset(n.lower() for n in signer(b"")) if signer else frozenset()
        headers, kept = service.stored_form(list(start.get("headers", [])), response, body, signed)
        handed = state.pop(HANDOVER, None)
        if handed is not None:  # the route changed something: commit it with its response
            start, response = await self._commit(handed, claim, key, start, response, headers, kept)
        else:  # nothing changed: store the answer on its own (if that fails, the lease
            # runs out and a retry runs the request again, which changes nothing either)
            try:
                await to_thread.run_sync(
                    lambda: service.complete(
                        factory,  # type: ignore[arg-type]
                        claim=claim,
                        status_code=status,
                        headers=headers,
                        body=kept,
                    )
                )
            except (OperationalError, PoolTimeout):
                log.warning("the response to Idempotency-Key %r could not be stored", key)
        await send(start)
        await send({"type": "http.response.body", "body": response})

    async def _commit(
        self,
        session: Session,
        claim: service.Claim,
        key: str,
        start: Message,
        response: bytes,
        headers: list[list[str]],
        kept: bytes,
    ) -> tuple[Message, bytes]:
        """Commit the route's change together with its stored response; what to send."""
        status: int = start["status"]
        err: LetheError | None = None

        def _store() -> bool:
            stored = service.complete_in(
                session=session, claim=claim, status_code=status, headers=headers, body=kept
            )
            if stored:
                session.commit()
            return stored

        try:
            with CancelScope(shield=True):
                if status >= 500:
                    committed = False
                else:
                    committed = await to_thread.run_sync(_store)
                    if not committed:  # another attempt took the lease over: it answers
                        err = _in_use(key)
        except Exception:
            committed = False
            err = ServiceUnavailable(
                "the change could not be committed; nothing was changed, retry with the same "
                "Idempotency-Key",
                headers={"Retry-After": "1"},
            )
        finally:
            with CancelScope(shield=True):
                await to_thread.run_sync(session.close)  # rolls back what was not committed
        if committed:
            return start, response
        if not isinstance(err, IdempotencyKeyInUse):  # nothing kept: the client may retry the key
            factory = self.factory
            await to_thread.run_sync(lambda: service.abandon(factory, claim=claim))  # type: ignore[arg-type]
        if err is None:
            return start, response
        return problem_message(err)


def _in_use(key: str) -> IdempotencyKeyInUse:
    return IdempotencyKeyInUse(
        "a request with this Idempotency-Key is still being processed; retry later",
        headers={"Retry-After": "1"},
        idempotency_key=key,
    )
