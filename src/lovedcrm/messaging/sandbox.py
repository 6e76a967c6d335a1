"""Typing an inbound message into the sandbox provider (the inbox's "simulate" box and
``lovedcrm whatsapp inject``): it takes the same road as a real webhook — a
``whatsapp.inbound`` job parsed by the sandbox adapter."""

from __future__ import annotations

import json
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.config import Settings
from lovedcrm.core import clock
from lovedcrm.core.errors import Conflict, ValidationFailed
from lovedcrm.core.phones import to_e164
from lovedcrm.jobs.queue import enqueue
from lovedcrm.messaging.jobs import InboundJob
from lovedcrm.messaging.whatsapp_configs import active_config
from lovedcrm.organizations import command_line
from lovedcrm.organizations.models import Organization


async def inject(
    session: AsyncSession,
    organization_id: uuid.UUID,
    *,
    from_number: str,
    content: str,
    contact_name: str | None = None,
) -> str:
    """Queue an inbound sandbox message; returns its provider message id."""
    config = await active_config(session, organization_id)
    if config is None or config.provider_type != "sandbox":
        raise Conflict(
            "The sandbox is not the active WhatsApp provider of this organization.",
            code="sandbox_not_active",
        )
    org = await session.get(Organization, organization_id)
    region = str(((org.settings if org else None) or {}).get("phone_region", "BR"))
    try:
        phone = to_e164(from_number, region)
    except ValueError as exc:
        raise ValidationFailed(
            str(exc), extra={"errors": [{"field": "from_number", "message": str(exc)}]}
        ) from exc
    message_id = f"sandbox-in.{uuid.uuid4().hex}"
    body = {
        "messages": [
            {
                "id": message_id,
                "from": phone,
                "name": contact_name,
                "text": content,
                "timestamp": clock.now().isoformat(),
            }
        ]
    }
    await enqueue(
        session,
        "whatsapp.inbound",
        InboundJob(config_id=config.id, body=json.dumps(body, ensure_ascii=False)),
        organization_id=organization_id,
    )
    return message_id


async def inject_for(
    settings: Settings,
    organization: str,
    from_number: str,
    content: str,
    contact_name: str | None = None,
) -> str:
    """``lovedcrm whatsapp inject``: the message injected in the organization named by slug or
    id, in its own transaction."""

    async def act(session: AsyncSession, org_id: uuid.UUID) -> str:
        return await inject(
            session, org_id, from_number=from_number, content=content, contact_name=contact_name
        )

    return await command_line.in_organization(settings, organization, act)
