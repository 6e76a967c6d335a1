"""JSON routes for outgoing webhooks (thin: rules in webhooks.service)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status

from lovedcrm.core.deps import Require, SessionDep, SettingsDep
from lovedcrm.core.principal import Principal
from lovedcrm.webhooks import service
from lovedcrm.webhooks.models import WebhookSubscription
from lovedcrm.webhooks.schemas import (
    DeliveryPageOut,
    QueuedOut,
    SecretOut,
    SubscriptionCreatedOut,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionUpdateIn,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
Manager = Annotated[Principal, Depends(Require(service.PERMISSION))]
Responses = dict[int | str, dict[str, Any]]


def _problem(description: str, code: str) -> dict[str, Any]:
    return {
        "description": f"{description} (`code`: `{code}`)",
        "content": {"application/problem+json": {"schema": {"type": "object"}}},
    }


_AUTH: Responses = {
    401: _problem("Not authenticated", "not_authenticated"),
    403: _problem("Missing the webhooks:manage permission", "permission_denied"),
}
_NOT_FOUND: Responses = {
    404: _problem("No such subscription in this organization", "webhook_not_found")
}
_INVALID: Responses = {
    422: _problem(
        "Invalid fields, unknown fields, a refused URL (webhook_url_invalid, "
        "webhook_url_private, webhook_url_insecure), unknown events (webhook_events_invalid) "
        "or a missing or inactive api_key_id (webhook_api_key_required, "
        "webhook_api_key_invalid)",
        "validation_error",
    )
}
_INACTIVE: Responses = {409: _problem("The subscription is disabled", "webhook_inactive")}


def _out(sub: WebhookSubscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "organization_id": sub.organization_id,
        "api_key_id": sub.api_key_id,
        "url": sub.webhook_url,
        "events": list(sub.events or []),
        "max_retries": sub.max_retries or 0,
        "retry_backoff_seconds": sub.retry_backoff_seconds or 0,
        "is_active": bool(sub.is_active),
        "failure_count": sub.failure_count or 0,
        "last_triggered_at": sub.last_triggered_at,
        "created_at": sub.created_at,
        "updated_at": sub.updated_at,
    }


@router.get("", response_model=list[SubscriptionOut], responses=_AUTH)
async def list_subscriptions(principal: Manager, session: SessionDep) -> list[SubscriptionOut]:
    """The organization's webhook subscriptions (secrets are never returned)."""
    subs = await service.list_subscriptions(session, principal)
    return [SubscriptionOut(**_out(s)) for s in subs]


@router.post(
    "",
    response_model=SubscriptionCreatedOut,
    status_code=status.HTTP_201_CREATED,
    responses={**_AUTH, **_INVALID},
)
async def create_subscription(
    body: SubscriptionIn, principal: Manager, session: SessionDep, settings: SettingsDep
) -> SubscriptionCreatedOut:
    """Subscribe a URL to events (`["*"]` for all). The response carries the signing secret,
    shown only this once. Deliveries are signed per Standard Webhooks."""
    sub, secret = await service.create_subscription(
        session,
        settings,
        principal,
        url=body.url,
        events=body.events,
        api_key_id=body.api_key_id,
        max_retries=body.max_retries,
        retry_backoff_seconds=body.retry_backoff_seconds,
    )
    return SubscriptionCreatedOut(**_out(sub), secret=secret)


@router.get("/{subscription_id}", response_model=SubscriptionOut, responses={**_AUTH, **_NOT_FOUND})
async def get_subscription(
    subscription_id: uuid.UUID, principal: Manager, session: SessionDep
) -> SubscriptionOut:
    return SubscriptionOut(
        **_out(await service.get_subscription(session, principal, subscription_id))
    )


@router.patch(
    "/{subscription_id}",
    response_model=SubscriptionOut,
    responses={**_AUTH, **_NOT_FOUND, **_INVALID},
)
async def update_subscription(
    subscription_id: uuid.UUID,
    body: SubscriptionUpdateIn,
    principal: Manager,
    session: SessionDep,
    settings: SettingsDep,
) -> SubscriptionOut:
    """Change the URL, events, owner key or retry policy; `is_active: true` re-enables a
    disabled subscription and resets its failure count."""
    sub = await service.update_subscription(
        session, settings, principal, subscription_id, body.model_dump(exclude_unset=True)
    )
    return SubscriptionOut(**_out(sub))


@router.delete(
    "/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_AUTH, **_NOT_FOUND},
)
async def delete_subscription(
    subscription_id: uuid.UUID, principal: Manager, session: SessionDep
) -> Response:
    await service.delete_subscription(session, principal, subscription_id)
    return Response(status_code=204)


@router.post(
    "/{subscription_id}/rotate-secret",
    response_model=SecretOut,
    responses={**_AUTH, **_NOT_FOUND},
)
async def rotate_secret(
    subscription_id: uuid.UUID, principal: Manager, session: SessionDep, settings: SettingsDep
) -> SecretOut:
    """Replace the signing secret; the new one is shown only now and applies at once."""
    secret = await service.rotate_secret(session, settings, principal, subscription_id)
    return SecretOut(secret=secret)


@router.get(
    "/{subscription_id}/deliveries",
    response_model=DeliveryPageOut,
    responses={
        **_AUTH,
        **_NOT_FOUND,
        400: _problem("The cursor is not valid", "invalid_cursor"),
    },
)
async def list_deliveries(
    subscription_id: uuid.UUID,
    principal: Manager,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> DeliveryPageOut:
    """The delivery log, newest first: one row per attempt with the request body, the
    response status, the first 2 KB of the response, the latency and the error."""
    page = await service.list_deliveries(
        session, principal, subscription_id, limit=limit, cursor=cursor
    )
    return DeliveryPageOut.model_validate(page, from_attributes=True)


@router.post(
    "/{subscription_id}/deliveries/{delivery_id}/redeliver",
    response_model=QueuedOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **_AUTH,
        404: _problem("No such subscription or delivery", "delivery_not_found"),
        **_INACTIVE,
    },
)
async def redeliver(
    subscription_id: uuid.UUID, delivery_id: uuid.UUID, principal: Manager, session: SessionDep
) -> QueuedOut:
    """Queue the same message again (same body and `webhook-id`, fresh signature)."""
    job_id, event_id = await service.redeliver(session, principal, subscription_id, delivery_id)
    return QueuedOut(job_id=job_id, event_id=event_id)


@router.post(
    "/{subscription_id}/test",
    response_model=QueuedOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**_AUTH, **_NOT_FOUND, **_INACTIVE},
)
async def send_test(
    subscription_id: uuid.UUID, principal: Manager, session: SessionDep
) -> QueuedOut:
    """Queue a `webhook.test` ping to this subscription."""
    job_id, event_id = await service.send_test(session, principal, subscription_id)
    return QueuedOut(job_id=job_id, event_id=event_id)
