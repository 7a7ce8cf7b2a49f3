"""Console sessions: a signed, expiring cookie that names an API key, never contains it.

Signing in with an API key stores `{"k": key id, "p": key prefix, "s": nonce}` signed with
the app's secret (itsdangerous, salted for this use). Every request re-reads the key row, so
revoking the key ends its sessions at once. The CSRF token of a session is an HMAC of its
nonce: forms carry it, every POST is checked against it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "lethe_console"
SIGNIN_COOKIE = "lethe_console_signin"
MAX_AGE_S = 8 * 3600
"""A session lasts one working day; then the key is asked for again."""
_SALT = "lethe.console.session.v1"


@dataclass(frozen=True)
class SessionToken:
    key_id: int
    prefix: str
    nonce: str


class Sessions:
    def __init__(self, secret: str, max_age_s: int = MAX_AGE_S):
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)
        self._csrf_key = hashlib.sha256(f"{_SALT}:csrf:{secret}".encode()).digest()
        self.max_age_s = max_age_s

    def issue(self, *, key_id: int, prefix: str) -> str:
        nonce = secrets.token_urlsafe(16)
        return self._serializer.dumps({"k": key_id, "p": prefix, "s": nonce})

    def read(self, cookie: str | None) -> SessionToken | None:
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age_s)
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(data, dict):
            return None
        key_id, prefix, nonce = data.get("k"), data.get("p"), data.get("s")
        if not (isinstance(key_id, int) and isinstance(prefix, str) and isinstance(nonce, str)):
            return None
        return SessionToken(key_id, prefix, nonce)

    def csrf_token(self, token: SessionToken) -> str:
        return hmac.new(self._csrf_key, token.nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, token: SessionToken, presented: str) -> bool:
        return hmac.compare_digest(self.csrf_token(token), presented)
