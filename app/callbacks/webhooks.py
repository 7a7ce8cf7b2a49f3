"""Model webhooks (subscriptions to a model's events) and the delivery history the API
shows: create, list, stop a webhook; a request's or a webhook's deliveries with their
attempts. What gets delivered is written by the outbox (`app.callbacks.service`) and sent
by `app.callbacks.sender`."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.auth.service import Client
from app.callbacks import targets
from app.callbacks.exceptions import WebhookLimitReached
from app.callbacks.models import CallbackAttempt, CallbackDelivery, DeliveryStatus, ModelWebhook
from app.callbacks.schemas import WebhookCreate
from app.core.config import Settings
from app.core.db import utcnow
from app.core.errors import NotFound
from app.registry.models import Model

# --- model webhooks ---------------------------------------------------------------------


def create_webhook(
    *, session: Session, model: Model, body: WebhookCreate, client: Client, settings: Settings
) -> ModelWebhook:
    url = str(body.url)
    targets.check_targets([url], settings, pointer="/url")
    active = (
        session.scalar(
            select(func.count())
            .select_from(ModelWebhook)
            .where(ModelWebhook.model_id == model.id, ModelWebhook.deleted_at.is_(None))
        )
        or 0
    )
    if active >= settings.max_webhooks_per_model:
        raise WebhookLimitReached(
            f"model {model.name!r} has {active} webhooks, the most allowed "
            f"(LETHE_MAX_WEBHOOKS_PER_MODEL={settings.max_webhooks_per_model}); delete one "
            "you no longer need first",
            limit=settings.max_webhooks_per_model,
        )
    hook = ModelWebhook(
        id=str(uuid.uuid4()),
        model_id=model.id,
        url=url,
        events=sorted(set(body.events)),
        description=body.description,
        created_by=client.actor,
        created_at=utcnow(),
    )
    session.add(hook)
    session.flush()
    audit.append(
        session=session,
        type="webhook.created",
        actor=client.actor,
        subject=f"model:{model.name}",
        data={"webhook": hook.id, "events": hook.events, "target": targets.origin(url)},
    )
    return hook


def list_webhooks(*, session: Session, model: Model) -> list[ModelWebhook]:
    return list(
        session.scalars(
            select(ModelWebhook)
            .where(ModelWebhook.model_id == model.id, ModelWebhook.deleted_at.is_(None))
            .order_by(ModelWebhook.created_at, ModelWebhook.id)
        )
    )


def get_webhook(*, session: Session, model: Model, webhook_id: str) -> ModelWebhook:
    hook = session.get(ModelWebhook, webhook_id)
    if hook is None or hook.model_id != model.id or hook.deleted_at is not None:
        raise NotFound(f"model {model.name!r} has no webhook {webhook_id}")
    return hook


def delete_webhook(*, session: Session, model: Model, hook: ModelWebhook, client: Client) -> None:
    """Stop a webhook; deliveries not yet made end `failed` (the history stays readable)."""
    now = utcnow()
    hook.deleted_at = now
    for d in session.scalars(
        select(CallbackDelivery).where(
            CallbackDelivery.webhook_id == hook.id,
            CallbackDelivery.status == DeliveryStatus.pending,
        )
    ):
        d.status, d.last_error = DeliveryStatus.failed, "the webhook was deleted"
    audit.append(
        session=session,
        type="webhook.deleted",
        actor=client.actor,
        subject=f"model:{model.name}",
        data={"webhook": hook.id},
    )


# --- delivery history -------------------------------------------------------------------


def list_deliveries(
    *, session: Session, request_id: str | None = None, webhook_id: str | None = None
) -> list[tuple[CallbackDelivery, list[CallbackAttempt]]]:
    q = select(CallbackDelivery)
    if request_id is not None:
        q = q.where(CallbackDelivery.request_id == request_id)
    if webhook_id is not None:
        q = q.where(CallbackDelivery.webhook_id == webhook_id)
    deliveries = list(
        session.scalars(q.order_by(CallbackDelivery.created_at, CallbackDelivery.id).limit(500))
    )
    attempts: dict[str, list[CallbackAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        for a in session.scalars(
            select(CallbackAttempt)
            .where(CallbackAttempt.delivery_id.in_(list(attempts)))
            .order_by(CallbackAttempt.delivery_id, CallbackAttempt.number)
        ):
            attempts[a.delivery_id].append(a)
    return [(d, attempts[d.id]) for d in deliveries]
