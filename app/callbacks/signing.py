"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Every callback and webhook carries three headers:

    webhook-id: <delivery id>             the same on every retry (deduplicate on it)
    webhook-timestamp: <unix seconds>     of this attempt (reject stale ones)
    webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>

Secrets are derived from `LETHE_SECRET_KEY`, so none is stored in the database:

* status callbacks of erasure requests use one service-wide secret,
  HMAC-SHA256(secret_key, "lethe.callbacks.v1"), readable by an admin at
  `GET /v1/callbacks/signing-secret`;
* each model webhook has its own, HMAC-SHA256(secret_key, "lethe.webhook.v1:" + webhook id),
  returned once when the webhook is created.

Secrets are shown in the Standard Webhooks form `whsec_<base64 key>`. Rotating
`LETHE_SECRET_KEY` changes them all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from app.core.config import Settings

PREFIX = "whsec_"


def _derive(settings: Settings, label: str) -> bytes:
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, label.encode(), hashlib.sha256).digest()


def request_callback_secret(settings: Settings) -> bytes:
    return _derive(settings, "lethe.callbacks.v1")


def webhook_secret(settings: Settings, webhook_id: str) -> bytes:
    return _derive(settings, f"lethe.webhook.v1:{webhook_id}")


def format_secret(key: bytes) -> str:
    return PREFIX + base64.b64encode(key).decode()


def parse_secret(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, msg_id, timestamp, body),
    }


TOLERANCE_S = 5 * 60
"""How far `webhook-timestamp` may be from the receiver's clock (Standard Webhooks)."""


def verify(
    key: bytes,
    msg_id: str,
    timestamp: str,
    body: bytes,
    signature_header: str,
    *,
    tolerance_s: int = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when one of the space-separated `v1,` signatures matches AND the timestamp is
    within `tolerance_s` of now (a replayed old message is refused), as Standard Webhooks
    asks of receivers."""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    sent = int(timestamp)
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    expected = signature(key, msg_id, sent, body)
    return any(hmac.compare_digest(expected, s) for s in signature_header.split())
