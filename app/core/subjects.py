"""Pseudonymous subject references: a keyed hash of a normalised identity, never the raw value."""

from __future__ import annotations

import hashlib
import hmac


def subject_ref(secret: str, identity_type: str, identity_value: str) -> str:
    normalised = identity_value.strip()
    if identity_type == "email":
        normalised = normalised.lower()
    message = f"{identity_type.strip().lower()}:{normalised}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
