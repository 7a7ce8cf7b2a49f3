"""HTTP routes: model webhooks, the delivery history and the callback signing secret."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Response, status

from app.auth.service import Client
from app.callbacks import signing, webhooks
from app.callbacks.models import CallbackAttempt, CallbackDelivery, ModelWebhook
from app.callbacks.schemas import (
    AttemptRead,
    DeliveryList,
    DeliveryRead,
    SigningSecret,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookRead,
)
from app.core.errors import NotFound
from app.erasure_requests import service as requests_service
from app.http.deps import SessionDep, SettingsDep, require
from app.registry import service as registry
from app.registry.models import Model

router = APIRouter(prefix="/v1/callbacks", tags=["callbacks"])
webhooks_router = APIRouter(prefix="/v1/models/{name}/webhooks", tags=["model webhooks"])


def _model_for(scope: str) -> Callable[..., Model]:
    """Dependency: the model named in the path, for a client with `scope` on that model."""
    authorised = require(scope)

    def _load(name: str, session: SessionDep, client: Client = Depends(authorised)) -> Model:
        model = registry.get_model(session=session, name=name)
        if not client.may_use_model(model.name):
            # another portal's model does not exist for this key
            raise NotFound(f"no model named {name!r}; GET /v1/models lists the registered ones")
        return model

    return _load


ModelReader = Annotated[Model, Depends(_model_for("models:read"))]
ModelWriter = Annotated[Model, Depends(_model_for("models:write"))]
Writer = Annotated[Client, Depends(require("models:write"))]


def _webhook(model: Model, hook: ModelWebhook) -> WebhookRead:
    return WebhookRead(
        id=hook.id,
        model=model.name,
        url=hook.url,
        events=hook.events,
        description=hook.description,
        created_by=hook.created_by,
        created_at=hook.created_at,
    )


def _delivery(d: CallbackDelivery, attempts: list[CallbackAttempt]) -> DeliveryRead:
    return DeliveryRead(
        id=d.id,
        event=d.event,
        protocol=d.protocol.value,
        request_id=d.request_id,
        webhook_id=d.webhook_id,
        url=d.url,
        status=d.status.value,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        attempt_log=[AttemptRead.model_validate(a) for a in attempts],
    )


@webhooks_router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
def create_webhook(
    body: WebhookCreate,
    model: ModelWriter,
    session: SessionDep,
    settings: SettingsDep,
    client: Writer,
    response: Response,
) -> WebhookCreated:
    hook = webhooks.create_webhook(
        session=session, model=model, body=body, client=client, settings=settings
    )
    response.headers["Location"] = f"/v1/models/{model.name}/webhooks/{hook.id}"
    secret = signing.format_secret(signing.webhook_secret(settings, hook.id))
    return WebhookCreated(**_webhook(model, hook).model_dump(), secret=secret)


@webhooks_router.get("", response_model=WebhookList)
def list_webhooks(model: ModelReader, session: SessionDep) -> WebhookList:
    hooks = webhooks.list_webhooks(session=session, model=model)
    return WebhookList(items=[_webhook(model, h) for h in hooks])


@webhooks_router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(
    webhook_id: UUID, model: ModelWriter, session: SessionDep, client: Writer
) -> Response:
    hook = webhooks.get_webhook(session=session, model=model, webhook_id=str(webhook_id))
    webhooks.delete_webhook(session=session, model=model, hook=hook, client=client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@webhooks_router.get("/{webhook_id}/deliveries", response_model=DeliveryList)
def list_webhook_deliveries(
    webhook_id: UUID, model: ModelReader, session: SessionDep
) -> DeliveryList:
    hook = webhooks.get_webhook(session=session, model=model, webhook_id=str(webhook_id))
    rows = webhooks.list_deliveries(session=session, webhook_id=hook.id)
    return DeliveryList(items=[_delivery(d, a) for d, a in rows])


@router.get(
    "/deliveries",
    response_model=DeliveryList,
    responses={404: {"description": "no erasure request `request_id` (visible to this key)"}},
)
def list_request_deliveries(
    request_id: UUID,
    session: SessionDep,
    client: Annotated[Client, Depends(require("erasure:read"))],
) -> DeliveryList:
    """Every status callback of one erasure request, with each attempt."""
    req = requests_service.get_request(session=session, request_id=str(request_id), client=client)
    rows = webhooks.list_deliveries(session=session, request_id=req.id)
    return DeliveryList(items=[_delivery(d, a) for d, a in rows])


@router.get("/signing-secret", response_model=SigningSecret)
def get_signing_secret(
    settings: SettingsDep, _: Annotated[Client, Depends(require("admin"))]
) -> SigningSecret:
    """The secret that verifies erasure-request status callbacks (`whsec_...`)."""
    return SigningSecret(secret=signing.format_secret(signing.request_callback_secret(settings)))
