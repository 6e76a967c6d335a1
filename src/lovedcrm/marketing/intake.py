"""Lead-ads webhooks: ``/webhooks/marketing/{integration_id}``.

Facebook: ``GET`` answers the subscription check (``hub.mode=subscribe``, the configured
``hub.verify_token`` → ``hub.challenge``); ``POST`` carries ``leadgen`` changes signed with
``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body with the app secret). Google Ads: a JSON
``POST`` authenticated by its ``google_key`` (constant-time compare). Before any tenant is
known, ``lovedcrm_marketing_webhook`` (migration 0020) answers the integration's organization,
provider and encrypted secrets. A body that does not verify is refused — 401 without a
signature, 403 with a wrong one or a wrong key — and nothing is stored. A verified one stores
each lead once (``ad_lead_receipts``: a replay is a no-op) and queues its import.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import text

from lovedcrm.core.deps import get_database, settings_of
from lovedcrm.core.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.marketing import service
from lovedcrm.marketing.graph import AdLead
from lovedcrm.organizations import plans

router = APIRouter(tags=["marketing webhooks"], include_in_schema=False)


@dataclass(frozen=True)
class Target:
    organization_id: uuid.UUID
    provider: str
    config: dict[str, Any]


async def _target(database: Database, integration_id: uuid.UUID) -> Target:
    async with database.app_engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT * FROM lovedcrm_marketing_webhook(:id)"), {"id": integration_id}
            )
        ).first()
    if row is None:
        raise NotFound(
            "No marketing integration receives webhooks at this address.",
            code="marketing_integration_not_found",
        )
    return Target(row.organization_id, row.provider, dict(row.config_data or {}))


@router.get("/webhooks/marketing/{integration_id}")
async def subscription_check(integration_id: uuid.UUID, request: Request) -> Response:
    settings, database = settings_of(request), get_database(request)
    found = await _target(database, integration_id)
    params = request.query_params
    if found.provider != "facebook":
        raise NotFound("This address takes Google Ads lead form posts only.")
    if params.get("hub.mode") != "subscribe" or not service.verify_challenge(
        settings, found.organization_id, found.config, params.get("hub.verify_token") or ""
    ):
        raise Forbidden("Invalid verify token.", code="webhook_verify_token_invalid")
    return PlainTextResponse(params.get("hub.challenge") or "")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ValidationFailed("The body is not JSON.", code="webhook_body_invalid") from exc


def facebook_leads(payload: Any) -> list[AdLead]:
    """The ``leadgen`` changes of a Page webhook (their fields come from the Graph API)."""
    leads: list[AdLead] = []
    if not isinstance(payload, dict):
        return leads
    for entry in payload.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        for change in entry.get("changes") or []:
            if not isinstance(change, dict) or change.get("field") != "leadgen":
                continue
            value = change.get("value") or {}
            if not isinstance(value, dict) or not value.get("leadgen_id"):
                continue

            def text_of(name: str, value: dict[str, Any] = value) -> str | None:
                raw = value.get(name)
                return None if raw in (None, "", "0") else str(raw)[:255]

            leads.append(
                AdLead(
                    provider_lead_id=str(value["leadgen_id"])[:255],
                    form_id=text_of("form_id"),
                    campaign_id=None,
                    campaign_name=None,
                    adset_id=text_of("adgroup_id"),
                    ad_id=text_of("ad_id"),
                    fields={},
                )
            )
    return leads


@router.post("/webhooks/marketing/{integration_id}")
async def receive(integration_id: uuid.UUID, request: Request) -> Response:
    settings, database = settings_of(request), get_database(request)
    body = await request.body()
    found = await _target(database, integration_id)
    if found.provider == "facebook":
        header = request.headers.get("x-hub-signature-256")
        if not header:
            raise Unauthorized(
                "Missing webhook signature (X-Hub-Signature-256).",
                code="webhook_signature_missing",
            )
        if not service.verify_signature(
            settings, found.organization_id, found.config, header, body
        ):
            raise Forbidden("Invalid webhook signature.", code="webhook_signature_invalid")
        leads = facebook_leads(_json(body))
    else:
        payload = _json(body)
        given = payload.get("google_key") if isinstance(payload, dict) else None
        if not given:
            raise Unauthorized("Missing google_key.", code="webhook_signature_missing")
        if not service.verify_google_key(settings, found.organization_id, found.config, given):
            raise Forbidden("Invalid google_key.", code="webhook_signature_invalid")
        leads = [service.google_lead(payload)]
    stored = 0
    if leads:
        async with tenant_transaction(database.sessionmaker, found.organization_id) as session:
            # Verified, but the plan leaves marketing out: 403 naming it, nothing stored.
            await plans.require_feature(session, found.organization_id, "marketing", settings)
            stored = await service.store_receipts(
                session, found.organization_id, integration_id, found.provider, leads
            )
    return Response(
        json.dumps({"ok": True, "received": len(leads), "new": stored}),
        media_type="application/json",
    )
