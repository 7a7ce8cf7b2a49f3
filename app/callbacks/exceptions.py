"""Problems of the callbacks domain.

Conflict (409)
└── WebhookLimitReached   the model has `max_webhooks_per_model` webhooks already
"""

from __future__ import annotations

from app.core.errors import Conflict


class WebhookLimitReached(Conflict):
    type, title = "webhook-limit-reached", "Too many webhooks on this model"
