"""Inbound calls: a call to a business number rings the lead's owner, else the assignment
rule's pick, else the configuration's ring group (all at once); an unknown caller becomes a
lead (source ``phone``) by the leads' duplicate rule; nobody to ring → missed at once."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth.models import User
from lovedcrm.calls import configs
from lovedcrm.calls.models import CallLog, VoipConfig
from lovedcrm.calls.providers.base import CallUpdate
from lovedcrm.calls.state import as_uuid, config_of, finish
from lovedcrm.config import Settings
from lovedcrm.core.events import notify_live
from lovedcrm.core.phones import to_e164
from lovedcrm.db.tenant import save_new
from lovedcrm.jobs.queue import enqueue
from lovedcrm.leads import access as leads_access
from lovedcrm.leads import assignment
from lovedcrm.leads.models import Lead
from lovedcrm.leads.service import leads_for_senders


async def _member_phone(session: AsyncSession, user_id: uuid.UUID | None) -> str | None:
    if user_id is None:
        return None
    user = await session.get(User, user_id)
    if user is None or not user.phone or user.is_active is False:
        return None
    try:
        return to_e164(user.phone)
    except ValueError:
        return None


async def inbound_targets(
    session: AsyncSession, organization_id: uuid.UUID, lead: Lead, cfg_ring_group: list[str]
) -> tuple[uuid.UUID | None, list[str]]:
    """Who an inbound call rings: the lead's owner, else the assignment rule's pick, else
    the configuration's ring group (all at once). (user answering, their numbers)."""
    phone = await _member_phone(session, lead.assigned_to)
    if phone:
        return lead.assigned_to, [phone]
    picked = await assignment.automatic_assignee(
        session, organization_id, await leads_access.organization_settings(session, organization_id)
    )
    phone = await _member_phone(session, picked)
    if phone:
        return picked, [phone]
    numbers: list[str] = []
    first: uuid.UUID | None = None
    for member in cfg_ring_group:
        member_id = as_uuid(member)
        phone = await _member_phone(session, member_id)
        if phone and phone not in numbers:
            numbers.append(phone)
            first = first or member_id
    return first, numbers


async def receive_inbound(
    session: AsyncSession,
    settings: Settings,
    organization_id: uuid.UUID,
    row: VoipConfig,
    *,
    provider_call_id: str,
    from_number: str | None,
    to_number: str | None,
) -> tuple[CallLog, list[str]]:
    """A call to a business number: its lead (an unknown caller becomes one, source
    ``phone``, by the leads' duplicate rule) and who to ring. An already known call (the
    provider asking again) is answered the same way."""
    existing = (
        await session.execute(
            select(CallLog).where(
                CallLog.organization_id == organization_id,
                CallLog.provider_type == row.provider_type,
                CallLog.provider_call_id == provider_call_id,
            )
        )
    ).scalar_one_or_none()
    caller = None
    if from_number:
        try:
            caller = to_e164(from_number)
        except ValueError:
            caller = None
    lead = None
    if caller:
        ((lead, _created),) = await leads_for_senders(
            session, organization_id, [(caller, None)], source="phone"
        )
    if existing is not None:
        targets = list((existing.metadata_ or {}).get("targets") or [])
        return existing, targets
    ring_group = [str(m) for m in (row.config_data or {}).get("ring_group") or []]
    user_id, targets = (
        await inbound_targets(session, organization_id, lead, ring_group)
        if lead is not None
        else (None, [])
    )
    cfg = configs.decrypt(settings, row)
    call = CallLog(
        organization_id=organization_id,
        lead_id=lead.id if lead is not None else None,
        user_id=user_id,
        provider_type=row.provider_type,
        provider_call_id=provider_call_id,
        direction="inbound",
        from_number=caller or from_number,
        to_number=to_number,
        status="ringing",
        duration_seconds=0,
        cost_currency=cfg.currency[:3],
        metadata_={"voip_config_id": str(row.id), "targets": targets},
    )
    await save_new(session, call)
    if lead is not None:
        await notify_live(session, organization_id, "call.started", lead_id=lead.id)
    return call, targets


async def inbound_from_event(
    session: AsyncSession,
    settings: Settings,
    organization_id: uuid.UUID,
    config_id: uuid.UUID,
    update: CallUpdate,
) -> CallLog | None:
    """Telnyx: ``call.initiated`` of an incoming call makes the call and asks a job to answer
    it and transfer it to who it rings."""
    row = await session.get(VoipConfig, config_id)
    if row is None or not update.provider_call_id:
        return None
    call, targets = await receive_inbound(
        session,
        settings,
        organization_id,
        row,
        provider_call_id=update.provider_call_id,
        from_number=update.from_number,
        to_number=update.to_number,
    )
    await enqueue(
        session,
        "calls.inbound_answer",
        {
            "call_id": str(call.id),
            "provider_call_id": update.provider_call_id,
            "to": targets[0] if targets else None,
        },
        organization_id=organization_id,
    )
    return call


async def nobody_to_ring(session: AsyncSession, settings: Settings, call: CallLog) -> None:
    """An inbound call with nobody to forward it to: missed at once."""
    call.status = "no_answer"
    await finish(session, settings, call, await config_of(session, call))
