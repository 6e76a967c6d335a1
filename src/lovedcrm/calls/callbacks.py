"""Provider callbacks: ``/webhooks/calls/{config_id}`` (Twilio's status, recording and
dial-result callbacks; Telnyx's webhooks) and ``/webhooks/calls/{config_id}/voice`` (Twilio:
a call to a business number, answered with TwiML).

Before any tenant is known, ``lovedcrm_voip_webhook_config`` (migration 0016) gives the
configuration's organization and encrypted secret (cached a few seconds per process; a
signature that fails against a cached secret is checked again against a fresh read). A body
whose signature does not verify is refused — 401 without a signature, 403 with a wrong one —
and nothing is stored. The URL a Twilio signature covers is the configured public base URL
plus the path and query, never the Host header. A verified callback costs a few statements:
one INSERT of its events (``call_events``, unique key: a replay is a no-op) through a
security-definer function that also queues ``calls.apply_events`` (batched like WhatsApp's
intake: many callbacks, one statement, under a burst); the job applies them in order.

Every configuration keeps its address while it exists, active or not, so calls in progress
during a provider switch still finish on the old provider.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from lovedcrm.calls import configs, inbound, service
from lovedcrm.calls.models import VoipConfig
from lovedcrm.calls.providers import build
from lovedcrm.calls.providers.base import VoiceProvider
from lovedcrm.calls.providers.twilio import dial_twiml, reject_twiml
from lovedcrm.config import Settings
from lovedcrm.core import outbound
from lovedcrm.core.deps import get_database, settings_of
from lovedcrm.core.errors import Forbidden, NotFound, Unauthorized
from lovedcrm.core.intake import TargetCache, intake
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction

CACHE_SECONDS = 10.0
SIGNATURE_HEADERS = {"twilio": "x-twilio-signature", "telnyx": "telnyx-signature-ed25519"}
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
NOBODY = "No momento ninguém pode atender. Retornaremos a sua ligação."


@dataclass(frozen=True)
class Target:
    organization_id: uuid.UUID
    kind: str
    provider: VoiceProvider


_idle = None


def _idle_client() -> object:
    """Adapters built only to verify and parse never send: a strict client, made once."""
    global _idle
    if _idle is None:
        _idle = outbound.client(outbound.STRICT, timeout=5.0)
    return _idle


async def _load(database: Database, settings: Settings, config_id: uuid.UUID) -> Target | None:
    async with database.app_engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT * FROM lovedcrm_voip_webhook_config(:id)"), {"id": config_id}
            )
        ).first()
    if row is None:
        return None
    cfg = configs.decrypted(
        settings,
        config_id=config_id,
        organization_id=row.organization_id,
        kind=row.provider_type,
        auth_token=row.auth_token,
        api_key=None,
        account_sid=None,
        config_data=dict(row.config_data or {}),
    )
    return Target(row.organization_id, row.provider_type, build(cfg, _idle_client()))  # type: ignore[arg-type]


targets: TargetCache[Target] = TargetCache(_load, CACHE_SECONDS)


async def target(
    database: Database, settings: Settings, config_id: uuid.UUID, *, fresh: bool = False
) -> Target | None:
    return await targets.get(database, settings, config_id, fresh=fresh)


def public_url(settings: Settings, request: Request) -> str:
    query = request.url.query
    return settings.base_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")


async def verified(
    database: Database,
    settings: Settings,
    config_id: uuid.UUID,
    url: str,
    headers: dict[str, str],
    body: bytes,
) -> Target:
    """The configuration, once the callback's signature checks out (401/403/404 otherwise)."""
    found = await target(database, settings, config_id)
    if found is None or found.kind not in SIGNATURE_HEADERS:
        raise NotFound("No telephony configuration receives callbacks at this address.")
    header = SIGNATURE_HEADERS[found.kind]
    if not headers.get(header):
        raise Unauthorized(
            f"Missing callback signature ({header}).", code="webhook_signature_missing"
        )
    if not found.provider.verify_callback(url, headers, body):
        found = await target(database, settings, config_id, fresh=True) or found
        if not found.provider.verify_callback(url, headers, body):
            raise Forbidden("Invalid webhook signature.", code="webhook_signature_invalid")
    return found


# lovedcrm_store_call_events (migration 0016) for each callback of a batch, in one statement.
_STORE_MANY = text(
    "SELECT u.n, lovedcrm_store_call_events(u.org, u.provider, u.events) AS stored"
    " FROM unnest(CAST(:orgs AS uuid[]), CAST(:providers AS text[]),"
    " CAST(:events AS jsonb[])) WITH ORDINALITY AS u(org, provider, events, n)"
)


async def _insert(engine: AsyncEngine, batch: Sequence[tuple[uuid.UUID, str, str]]) -> list[int]:
    """Store a batch of ``(organization, provider, events)`` in one statement; how many events
    of each were new."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                _STORE_MANY,
                {
                    "orgs": [org for org, _, _ in batch],
                    "providers": [provider for _, provider, _ in batch],
                    "events": [events for _, _, events in batch],
                },
            )
        ).all()
    by_position = {int(r.n): int(r.stored) for r in rows}
    return [by_position[n] for n in range(1, len(batch) + 1)]


router = APIRouter(tags=["calls webhooks"], include_in_schema=False)


def _headers(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


@router.post("/webhooks/calls/{config_id}")
async def call_events(config_id: uuid.UUID, request: Request) -> Response:
    settings, database = settings_of(request), get_database(request)
    body = await request.body()
    url = public_url(settings, request)
    found = await verified(database, settings, config_id, url, _headers(request), body)
    updates = found.provider.parse_callback(url, body)
    if updates:
        events = []
        for update in updates:
            event = service.stored_event(update)
            event["data"]["config_id"] = str(config_id)
            events.append(event)
        await intake(database.side_engine, _insert).store(
            (found.organization_id, found.kind, json.dumps(events))
        )
    if found.kind == "twilio":
        return Response(EMPTY_TWIML, media_type="text/xml")
    return Response('{"ok":true}', media_type="application/json")


@router.post("/webhooks/calls/{config_id}/voice")
async def twilio_voice(config_id: uuid.UUID, request: Request) -> Response:
    """Twilio: a call to a business number. Answered with ``<Dial>`` to the lead's owner (or
    the assignment rule's pick, or the ring group, all at once); nobody → missed at once."""
    settings, database = settings_of(request), get_database(request)
    body = await request.body()
    url = public_url(settings, request)
    found = await verified(database, settings, config_id, url, _headers(request), body)
    if found.kind != "twilio":
        raise NotFound("This address takes Twilio's voice webhooks only.")
    (update,) = found.provider.parse_callback(url, body)
    if not update.provider_call_id:
        return Response(reject_twiml(NOBODY), media_type="text/xml")
    async with tenant_transaction(database.sessionmaker, found.organization_id) as session:
        row = await session.get(VoipConfig, config_id)
        assert row is not None
        call, targets = await inbound.receive_inbound(
            session,
            settings,
            found.organization_id,
            row,
            provider_call_id=update.provider_call_id,
            from_number=update.from_number,
            to_number=update.to_number,
        )
        if not targets:
            if call.status not in ("no_answer",):
                await inbound.nobody_to_ring(session, settings, call)
            return Response(reject_twiml(NOBODY), media_type="text/xml")
        caller = call.from_number or update.to_number or ""
        action = f"{configs.webhook_url(settings, config_id)}?call={call.id}"
        twiml = dial_twiml(
            caller, targets, action=action, record=configs.decrypt(settings, row).record
        )
    return Response(twiml, media_type="text/xml")
