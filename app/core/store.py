"""The checkpoint store the settings name (`models_store`), for the API and the workers."""

from __future__ import annotations

from typing import Any

from app.core.config import Settings
from models_store import open_store


def open_settings_store(settings: Settings) -> Any:
    secret = settings.s3_secret_access_key
    return open_store(
        settings.resolved_store_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
        s3_access_key_id=settings.s3_access_key_id,
        s3_secret_access_key=secret.get_secret_value() if secret else None,
    )
