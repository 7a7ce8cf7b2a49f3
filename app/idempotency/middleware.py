"""`Idempotency-Key` on POST (and PATCH): replay the stored response of a repeated request.

Runs before routing, so it needs the caller's identity itself: it authenticates the
presented key (an unknown key passes through and the route answers 401).
"""

from __future__ import annotations

from anyio import to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.service import authenticate
from app.core.errors import BadRequest, IdempotencyKeyInUse, IdempotencyKeyReused
from app.idempotency import service
from app.observability.middleware import header, read_body, replaying, send_problem

HEADER = b"idempotency-key"


def _token(scope: Scope) -> str | None:
    auth = header(scope, b"authorization")
    if auth and auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return header(scope, b"x-api-key")


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, *, session_factory: object, ttl_s: int):
        self.app, self.factory, self.ttl_s = app, session_factory, ttl_s

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
        token = _token(scope)
        client = None
        if token:

            def _auth() -> object:
                with self.factory() as session:  # type: ignore[operator]
                    return authenticate(session=session, token=token)

            client = await to_thread.run_sync(_auth)
        if client is None:  # the route answers 401
            await self.app(scope, receive, send)
            return
        client_id: int = client.key_id  # type: ignore[attr-defined]

        body = await read_body(receive)
        if body is None:
            return
        target = path + ("?" + scope["query_string"].decode() if scope.get("query_string") else "")
        digest = service.fingerprint(scope["method"], target, body)
        outcome = await to_thread.run_sync(
            lambda: service.begin(
                self.factory,  # type: ignore[arg-type]
                client_id=client_id,
                key=key,
                method=scope["method"],
                path=target,
                digest=digest,
                ttl_s=self.ttl_s,
            )
        )
        if outcome.kind == "mismatch":
            reused = IdempotencyKeyReused(
                "this Idempotency-Key was already used for a different request; "
                "use a new key for a new request",
                idempotency_key=key,
            )
            await send_problem(send, reused, path, [])
            return
        if outcome.kind == "in_progress":
            err = IdempotencyKeyInUse(
                "a request with this Idempotency-Key is still being processed; retry later",
                headers={"Retry-After": "1"},
                idempotency_key=key,
            )
            await send_problem(send, err, path, [])
            return
        if outcome.kind == "replay":
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in outcome.headers or []]
            stored = outcome.body or b""
            headers += [
                (b"content-length", str(len(stored)).encode()),
                (b"idempotent-replayed", b"true"),
            ]
            await send(
                {"type": "http.response.start", "status": outcome.status_code, "headers": headers}
            )
            await send({"type": "http.response.body", "body": stored})
            return

        status = 500
        response_headers: list[tuple[bytes, bytes]] = []
        response_body: list[bytes] = []

        async def _send(message: Message) -> None:
            nonlocal status, response_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                response_body.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replaying(body, receive), _send)
        except BaseException:
            await to_thread.run_sync(
                lambda: service.abandon(self.factory, client_id=client_id, key=key)  # type: ignore[arg-type]
            )
            raise
        await to_thread.run_sync(
            lambda: service.finish(
                self.factory,  # type: ignore[arg-type]
                client_id=client_id,
                key=key,
                status_code=status,
                headers=response_headers,
                body=b"".join(response_body),
            )
        )
