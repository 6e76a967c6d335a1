"""Stripe's webhook: ``POST /webhooks/stripe``.

The signature is checked BEFORE anything is read or stored (``billing.signature``): a
forged, altered or stale delivery is answered 400 and changes nothing. Each event id is
stored once (``billing_events``): a replay or a duplicate delivery is answered 200 and
ignored. The organization comes from the metadata the checkout put on the subscription
(signed by Stripe), else from the stored customer or subscription id
(``lovedcrm_billing_org``, migration 0019).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.billing import service, signature
from lovedcrm.core import clock
from lovedcrm.core.deps import get_database, settings_of
from lovedcrm.core.errors import problem
from lovedcrm.db.tenant import set_tenant, tenant_transaction
from lovedcrm.organizations.models import Organization

log = structlog.stdlib.get_logger("lovedcrm.billing")

router = APIRouter(tags=["billing webhooks"], include_in_schema=False)

SUBSCRIPTION_EVENTS = (
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
    "customer.subscription.paused",
    "customer.subscription.resumed",
)

_CLAIM = text(
    "INSERT INTO billing_events (id, event_type) VALUES (:id, :type)"
    " ON CONFLICT (id) DO NOTHING RETURNING id"
)
_ORG = text("SELECT lovedcrm_billing_org(:sub, :customer) AS org")


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


async def _organization_of(session: AsyncSession, obj: dict[str, Any]) -> uuid.UUID | None:
    found = _uuid((obj.get("metadata") or {}).get("organization_id")) or _uuid(
        obj.get("client_reference_id")
    )
    if found is not None:
        return found
    details = obj.get("subscription_details") or (obj.get("parent") or {}).get(
        "subscription_details"
    )
    if isinstance(details, dict):
        found = _uuid((details.get("metadata") or {}).get("organization_id"))
        if found is not None:
            return found
    sub_id = _str(obj.get("subscription")) if obj.get("object") != "subscription" else None
    if obj.get("object") == "subscription":
        sub_id = _str(obj.get("id"))
    row = (
        await session.execute(_ORG, {"sub": sub_id, "customer": _str(obj.get("customer"))})
    ).first()
    return row.org if row is not None else None


async def dispatch(session: AsyncSession, event: dict[str, Any]) -> str:
    """Apply one verified, first-seen event (no tenant set yet). Answers what happened."""
    kind = str(event.get("type") or "")
    obj = (event.get("data") or {}).get("object")
    if not isinstance(obj, dict):
        return "ignored"
    org_id = await _organization_of(session, obj)
    if org_id is None:
        return "unknown_organization"
    await set_tenant(session, org_id)
    if await session.get(Organization, org_id) is None:
        return "unknown_organization"
    created = event.get("created")
    event_at = (
        datetime.fromtimestamp(created, UTC) if isinstance(created, int | float) else clock.now()
    )
    if kind in SUBSCRIPTION_EVENTS and obj.get("object") == "subscription":
        return (
            "applied"
            if await service.apply_subscription(session, org_id, obj, event_at)
            else "stale"
        )
    if kind == "checkout.session.completed":
        await service.link_checkout(session, org_id, obj)
        return "linked"
    if kind == "invoice.payment_failed":
        await service.payment_failed(session, org_id, obj, event_at)
        return "payment_failed"
    if kind == "invoice.paid":
        await service.invoice_paid(session, org_id, obj, event_at)
        return "paid"
    return "ignored"


@router.post(
    "/webhooks/stripe",
    summary="Stripe's events (signed with Stripe-Signature)",
    responses={400: {"description": "Signature missing, wrong or stale"}},
)
async def stripe_webhook(request: Request) -> JSONResponse:
    settings = settings_of(request)
    secret = settings.stripe_webhook_secret
    if secret is None:
        return problem(404, "Stripe is not set up on this installation.", code="not_found")
    payload = await request.body()
    try:
        signature.verify(
            request.headers.get("stripe-signature"),
            payload,
            secret.get_secret_value(),
            now=clock.now(),
            tolerance=settings.stripe_webhook_tolerance_seconds,
        )
    except signature.BadSignature as exc:
        log.warning("stripe webhook refused", reason=str(exc))
        return problem(
            400, "The Stripe signature is missing, wrong or stale.", code="bad_signature"
        )
    try:
        event = json.loads(payload)
    except ValueError:
        return problem(400, "The body is not JSON.", code="bad_request")
    event_id = event.get("id") if isinstance(event, dict) else None
    if not isinstance(event_id, str) or not event_id or len(event_id) > 255:
        return problem(400, "The event has no id.", code="bad_request")
    database = get_database(request)
    async with tenant_transaction(database.sessionmaker, None) as session:
        claimed = (
            await session.execute(
                _CLAIM, {"id": event_id, "type": str(event.get("type") or "")[:100]}
            )
        ).first()
        if claimed is None:
            return JSONResponse({"received": True, "outcome": "duplicate"})
        outcome = await dispatch(session, event)
    return JSONResponse({"received": True, "outcome": outcome})
