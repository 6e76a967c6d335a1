"""Inbound WhatsApp webhooks: verify, store durably, answer at once.

``/webhooks/whatsapp/{config_id}`` is the address shown in Settings → WhatsApp. Before any
tenant is known, ``lovedcrm_whatsapp_webhook_config`` returns the configuration's
organization and encrypted secrets (cached for a few seconds per process; a signature that
fails against a cached secret is re-checked against a fresh read, so a rotated secret works
at once). A body whose signature does not verify is refused (401 without one, 403 with a
wrong one) and nothing is stored. A verified body is stored as a ``whatsapp.inbound`` job in
one short transaction and the provider gets 200; the job does the rest, idempotently.

Every configuration of the organization keeps its address while it exists, active or not,
so during a provider switch both providers' webhooks are accepted.
"""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import text

from lovedcrm.config import Settings
from lovedcrm.core.deps import get_database, get_settings_dep
from lovedcrm.core.errors import Forbidden, NotFound, Unauthorized
from lovedcrm.db.engine import Database
from lovedcrm.messaging.jobs import InboundJob
from lovedcrm.messaging.providers.base import WhatsAppProvider
from lovedcrm.messaging.whatsapp_configs import (
    DecryptedConfig,
    build_provider,
    decrypt_value,
    idle_client,
)

CACHE_SECONDS = 10.0
INBOUND_MAX_ATTEMPTS = 10
_STORE = text("SELECT lovedcrm_store_webhook(:org, :type, CAST(:data AS jsonb), :attempts)")
_SIGNATURE_HEADERS = {
    "business_api": "x-hub-signature-256",
    "web_unofficial": "x-webhook-hmac",
}


@dataclass(frozen=True)
class Target:
    organization_id: uuid.UUID
    kind: str
    verify_token: str | None
    provider: WhatsAppProvider


_cache: dict[uuid.UUID, tuple[float, Target | None]] = {}


async def _load(database: Database, settings: Settings, config_id: uuid.UUID) -> Target | None:
    async with database.app_engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT * FROM lovedcrm_whatsapp_webhook_config(:id)"), {"id": config_id}
            )
        ).first()
    if row is None:
        return None
    org, data = row.organization_id, dict(row.config_data or {})
    cfg = DecryptedConfig(
        id=config_id,
        organization_id=org,
        kind=row.provider_type,
        app_secret=decrypt_value(settings, org, "app_secret", data.get("app_secret")),
        hmac_key=decrypt_value(settings, org, "hmac_key", data.get("hmac_key")),
        bridge_url=data.get("bridge_url"),
        session_id="default",
    )
    return Target(
        organization_id=org,
        kind=row.provider_type,
        verify_token=decrypt_value(settings, org, "verify_token", row.webhook_verify_token),
        provider=build_provider(cfg, idle_client(), settings),
    )


async def target(
    database: Database, settings: Settings, config_id: uuid.UUID, *, fresh: bool = False
) -> Target | None:
    now = time.monotonic()
    hit = _cache.get(config_id)
    if hit is not None and not fresh and hit[0] > now:
        return hit[1]
    found = await _load(database, settings, config_id)
    _cache[config_id] = (now + CACHE_SECONDS, found)
    return found


async def _known(database: Database, settings: Settings, config_id: uuid.UUID) -> Target:
    found = await target(database, settings, config_id)
    if found is None or found.kind == "sandbox":
        raise NotFound("No WhatsApp configuration receives webhooks at this address.")
    return found


async def verify_subscription(
    database: Database,
    settings: Settings,
    config_id: uuid.UUID,
    mode: str | None,
    token: str | None,
    challenge: str | None,
) -> str:
    """Meta's GET handshake: the challenge back when the verify token matches."""
    found = await _known(database, settings, config_id)
    expected = found.verify_token or ""
    if mode != "subscribe" or not token or not expected:
        raise Forbidden("Webhook verification refused.", code="webhook_verification_failed")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Forbidden("Webhook verification refused.", code="webhook_verification_failed")
    return challenge or ""


async def receive(
    database: Database,
    settings: Settings,
    config_id: uuid.UUID,
    headers: dict[str, str],
    body: bytes,
) -> uuid.UUID:
    """Verify the signature, then store the body as a job. Returns the job id."""
    found = await _known(database, settings, config_id)
    header = _SIGNATURE_HEADERS.get(found.kind)
    if header is None or not headers.get(header):
        raise Unauthorized(
            f"Missing webhook signature ({header}).", code="webhook_signature_missing"
        )
    if not found.provider.verify_webhook(headers, body):
        # Perhaps the secret was just changed: check once more against a fresh read.
        found = await target(database, settings, config_id, fresh=True) or found
        if not found.provider.verify_webhook(headers, body):
            raise Forbidden("Invalid webhook signature.", code="webhook_signature_invalid")
    try:
        body_text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Forbidden("The webhook body is not UTF-8.", code="webhook_body_invalid") from exc
    data = InboundJob(config_id=config_id, body=body_text, received_at=datetime.now(UTC))
    async with database.app_engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        job_id = (
            await conn.execute(
                _STORE,
                {
                    "org": found.organization_id,
                    "type": "whatsapp.inbound",
                    "data": data.model_dump_json(),
                    "attempts": INBOUND_MAX_ATTEMPTS,
                },
            )
        ).scalar_one()
    return uuid.UUID(str(job_id))


router = APIRouter(tags=["whatsapp webhooks"], include_in_schema=False)


@router.get("/webhooks/whatsapp/{config_id}")
async def meta_verification(config_id: uuid.UUID, request: Request) -> Response:
    q = request.query_params
    challenge = await verify_subscription(
        get_database(request),
        get_settings_dep(request),
        config_id,
        q.get("hub.mode"),
        q.get("hub.verify_token"),
        q.get("hub.challenge"),
    )
    return PlainTextResponse(challenge)


@router.post("/webhooks/whatsapp/{config_id}")
async def inbound(config_id: uuid.UUID, request: Request) -> Response:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    await receive(get_database(request), get_settings_dep(request), config_id, headers, body)
    return PlainTextResponse("ok")
