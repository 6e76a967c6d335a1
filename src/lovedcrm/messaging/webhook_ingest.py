"""Inbound WhatsApp webhooks: verify, store durably, answer at once.

``/webhooks/whatsapp/{config_id}`` is the address shown in Settings → WhatsApp. Before any
tenant is known, ``lovedcrm_whatsapp_webhook_config`` returns the configuration's
organization and encrypted secrets (cached for a few seconds per process; a signature that
fails against a cached secret is re-checked against a fresh read, so a rotated secret works
at once). A body whose signature does not verify is refused (401 without one, 403 with a
wrong one) and nothing is stored. A verified body is stored as a ``whatsapp.inbound`` job in
one short transaction and the provider gets 200; the job does the rest, idempotently.

Stored together (``core.intake``): a request waits until the INSERT holding its job has
committed (nothing is acknowledged before it is durable), and one INSERT at a time stores
every webhook that came in while the previous one ran -- one at a time when they come one at
a time, a few dozen in one statement and one commit under a burst.

Every configuration of the organization keeps its address while it exists, active or not,
so during a provider switch both providers' webhooks are accepted.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from lovedcrm.config import Settings
from lovedcrm.core.deps import get_database, settings_of
from lovedcrm.core.errors import Forbidden, NotFound, Unauthorized
from lovedcrm.core.intake import TargetCache, intake
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
# lovedcrm_store_webhook (migration 0006) for each webhook of a batch, in one statement.
_STORE_MANY = text(
    "SELECT u.n, lovedcrm_store_webhook(u.org, :type, u.data, :attempts) AS id"
    " FROM unnest(CAST(:orgs AS uuid[]), CAST(:datas AS jsonb[])) WITH ORDINALITY"
    " AS u(org, data, n)"
)
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


async def _insert(engine: AsyncEngine, batch: Sequence[tuple[uuid.UUID, str]]) -> list[uuid.UUID]:
    """Store a batch of ``(organization, job data)`` as ``whatsapp.inbound`` jobs in one
    statement; their ids in order."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                _STORE_MANY,
                {
                    "type": "whatsapp.inbound",
                    "attempts": INBOUND_MAX_ATTEMPTS,
                    "orgs": [org for org, _ in batch],
                    "datas": [data for _, data in batch],
                },
            )
        ).all()
    by_position = {int(r.n): uuid.UUID(str(r.id)) for r in rows}
    return [by_position[n] for n in range(1, len(batch) + 1)]


def store_job(engine: AsyncEngine, organization_id: uuid.UUID, data: str) -> Awaitable[uuid.UUID]:
    """Store one webhook's job with whatever else is arriving; its id once committed."""
    return intake(engine, _insert).store((organization_id, data))


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


targets: TargetCache[Target] = TargetCache(_load, CACHE_SECONDS)


async def target(
    database: Database, settings: Settings, config_id: uuid.UUID, *, fresh: bool = False
) -> Target | None:
    return await targets.get(database, settings, config_id, fresh=fresh)


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
    if "\x00" in body_text:  # never JSON, and a job cannot hold it: refused, not retried
        raise Forbidden("The webhook body contains a NUL character.", code="webhook_body_invalid")
    data = InboundJob(config_id=config_id, body=body_text, received_at=datetime.now(UTC))
    return await store_job(database.side_engine, found.organization_id, data.model_dump_json())


router = APIRouter(tags=["whatsapp webhooks"], include_in_schema=False)


@router.get("/webhooks/whatsapp/{config_id}")
async def meta_verification(config_id: uuid.UUID, request: Request) -> Response:
    q = request.query_params
    challenge = await verify_subscription(
        get_database(request),
        settings_of(request),
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
    await receive(get_database(request), settings_of(request), config_id, headers, body)
    return PlainTextResponse("ok")
