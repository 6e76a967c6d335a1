"""A call's state from its provider's updates: forward only (a finished call is never moved
back), fields merged, and once it is over its cost (``calls.costs.call_cost``), a ``call``
activity on the lead's timeline, ``call.completed`` and, for a missed inbound call, a
call-back task for the owner and an e-mail (there is no notification centre yet)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.calls.costs import call_cost
from lovedcrm.calls.models import CallLog, VoipConfig
from lovedcrm.calls.providers.base import MISSED, TERMINAL, CallUpdate, rank
from lovedcrm.calls.switching import config_for_call
from lovedcrm.config import Settings
from lovedcrm.core import clock
from lovedcrm.core.events import DomainEvent, emit, notify_live
from lovedcrm.jobs.queue import enqueue
from lovedcrm.leads import activities
from lovedcrm.leads.models import Lead, LeadActivity


def as_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


async def apply(
    session: AsyncSession,
    settings: Settings,
    call: CallLog,
    update: CallUpdate,
    *,
    defer: bool = False,
    collect: list[CallLog] | None = None,
) -> None:
    """Apply one update to its call (locked by the caller): forward-only state, fields
    merged, the end of the call handled once (``collect``: its activity and event left to
    the caller's :func:`finished_many`)."""
    meta = dict(call.metadata_ or {})
    if update.provider_call_id and not call.provider_call_id:
        call.provider_call_id = update.provider_call_id
    was_finished = call.status in TERMINAL
    if update.duration_seconds is not None and (
        not was_finished or not call.duration_seconds or update.status in TERMINAL
    ):
        call.duration_seconds = max(0, update.duration_seconds)
    if update.price is not None:
        meta["price"] = str(abs(update.price))
        if update.price_unit:
            meta["price_unit"] = update.price_unit.upper()
    if update.reason and update.status in ("failed", None) and not was_finished:
        meta["reason"] = update.reason
    if update.recording_url and not meta.get("recording_key"):
        meta["provider_recording_url"] = update.recording_url
        if update.recording_duration_seconds is not None:
            call.recording_duration_seconds = update.recording_duration_seconds
    call.metadata_ = meta
    moved = update.status is not None and rank(update.status) > rank(call.status)
    if moved:
        call.status = update.status
    if collect is None:
        await session.flush()
    if update.recording_url and not meta.get("recording_key"):
        await enqueue(
            session,
            "calls.recording",
            {"call_id": str(call.id)},
            organization_id=call.organization_id,
            dedupe_key=f"calls.recording:{call.id}",
        )
    if update.action == "bridge" and update.to_number and update.provider_call_id:
        await enqueue(
            session,
            "calls.bridge",
            {
                "call_id": str(call.id),
                "provider_call_id": update.provider_call_id,
                "to": update.to_number,
            },
            organization_id=call.organization_id,
        )
    if moved and call.status in TERMINAL:
        row = await config_of(session, call)
        if collect is not None:
            await set_cost(call, row)
            collect.append(call)
        else:
            await finish(session, settings, call, row, defer=defer)
    elif was_finished and (update.price is not None or update.duration_seconds is not None):
        await set_cost(call, await config_of(session, call))  # reported after the end
        await sync_activity(session, call)
    elif moved and call.lead_id:
        await notify_live(session, call.organization_id, "call.updated", lead_id=call.lead_id)


async def config_of(session: AsyncSession, call: CallLog) -> VoipConfig | None:
    """``switching.config_for_call``, remembered for the session (a batch of callbacks is
    mostly about one configuration)."""
    cache: dict[tuple[Any, str], VoipConfig | None] = session.info.setdefault("voip_configs", {})
    key = ((call.metadata_ or {}).get("voip_config_id"), call.provider_type)
    if key not in cache:
        cache[key] = await config_for_call(session, call)
    return cache[key]


async def set_cost(call: CallLog, row: VoipConfig | None) -> None:
    meta = call.metadata_ or {}
    price = Decimal(meta["price"]) if meta.get("price") else None
    currency = (
        str((row.config_data or {}).get("currency") or "USD")
        if row
        else (call.cost_currency or "USD")
    )
    # Only a completed call is charged.
    seconds = (call.duration_seconds or 0) if call.status == "completed" else 0
    amount, unit = call_cost(
        price, meta.get("price_unit"), seconds, row.cost_per_minute if row else None, currency
    )
    call.cost_amount = amount
    call.cost_currency = unit[:3]
    call.cost_cents = (
        int((amount * 100).quantize(Decimal("1"), rounding=ROUND_HALF_UP))
        if amount is not None
        else None
    )


def activity_meta(call: CallLog) -> dict[str, Any]:
    meta = call.metadata_ or {}
    return {
        "call_id": str(call.id),
        "direction": call.direction,
        "status": call.status,
        "duration_seconds": call.duration_seconds or 0,
        "cost_amount": str(call.cost_amount) if call.cost_amount is not None else None,
        "cost_currency": call.cost_currency,
        "has_recording": bool(meta.get("recording_key")),
        "reason": meta.get("reason"),
        "notes": meta.get("notes"),
        "outcome": meta.get("outcome"),
        "transcription": call.transcription,
    }


async def sync_activity(session: AsyncSession, call: CallLog) -> None:
    activity_id = as_uuid((call.metadata_ or {}).get("activity_id"))
    if activity_id is None:
        return
    await session.execute(
        update(LeadActivity)
        .where(LeadActivity.organization_id == call.organization_id, LeadActivity.id == activity_id)
        .values(
            metadata_=activity_meta(call),
            duration_minutes=-(-(call.duration_seconds or 0) // 60),
        )
    )


async def finish(
    session: AsyncSession,
    settings: Settings,
    call: CallLog,
    row: VoipConfig | None,
    *,
    defer: bool = False,
) -> None:
    """The call is over: its cost now; the rest (:func:`finished`) now or, from a callback
    (``defer``: the provider's acknowledgement waits on a few statements only), in a job."""
    await set_cost(call, row)
    await session.flush()
    if defer:
        await enqueue(
            session,
            "calls.finished",
            {"call_id": str(call.id)},
            organization_id=call.organization_id,
            dedupe_key=f"calls.finished:{call.id}",
        )
        return
    await finished(session, settings, call)


async def finished_many(session: AsyncSession, settings: Settings, calls: list[CallLog]) -> None:
    """:func:`finished` for a batch: the ``call`` activities in one INSERT (one UPDATE of the
    leads), then ``call.completed`` for each."""
    todo = [c for c in dict.fromkeys(calls) if not (c.metadata_ or {}).get("finished")]
    if not todo:
        return
    lead_ids = {c.lead_id for c in todo if c.lead_id}
    leads = (
        {
            lead.id: lead
            for lead in (
                await session.execute(
                    select(Lead).where(
                        Lead.organization_id == todo[0].organization_id, Lead.id.in_(lead_ids)
                    )
                )
            ).scalars()
        }
        if lead_ids
        else {}
    )
    with_lead = [c for c in todo if c.lead_id in leads]
    entries = [
        activities.NewActivity(
            lead=leads[c.lead_id],  # type: ignore[index]
            activity_type="call",
            title="Outbound call" if c.direction == "outbound" else "Inbound call",
            metadata=activity_meta(c),
            user_id=c.user_id,
        )
        for c in with_lead
    ]
    ids = await activities.record_activities(session, entries)
    for call, activity_id in zip(with_lead, ids, strict=True):
        call.metadata_ = {**(call.metadata_ or {}), "activity_id": str(activity_id)}
    for call in todo:
        call.metadata_ = {**(call.metadata_ or {}), "finished": True}
        lead = leads.get(call.lead_id) if call.lead_id else None
        if lead is not None and call.direction == "inbound" and call.status in MISSED:
            await _missed(session, call, lead)
        await _completed(session, call)
    await session.flush()


async def _completed(session: AsyncSession, call: CallLog) -> None:
    await emit(
        session,
        DomainEvent(
            type="call.completed",
            organization_id=call.organization_id,
            data={
                "call_id": str(call.id),
                "lead_id": str(call.lead_id) if call.lead_id else None,
                "direction": call.direction,
                "status": call.status,
                "duration_seconds": call.duration_seconds or 0,
                "cost_amount": str(call.cost_amount) if call.cost_amount is not None else None,
                "cost_currency": call.cost_currency,
            },
            actor_id=call.user_id,
        ),
    )


async def finished(session: AsyncSession, settings: Settings, call: CallLog) -> None:
    """A ``call`` activity on the lead's timeline and ``call.completed``; a missed inbound
    call gives the owner a call-back task (and, through ``call.completed``, a notification:
    by e-mail unless they chose otherwise). Once per call."""
    if (call.metadata_ or {}).get("finished"):
        return
    call.metadata_ = {**(call.metadata_ or {}), "finished": True}
    lead = await session.get(Lead, call.lead_id) if call.lead_id else None
    if lead is not None:
        title = "Outbound call" if call.direction == "outbound" else "Inbound call"
        activity = await activities.record_activity(
            session,
            lead,
            user_id=call.user_id,
            activity_type="call",
            title=title,
            metadata=activity_meta(call),
            duration_minutes=-(-(call.duration_seconds or 0) // 60),
        )
        call.metadata_ = {**(call.metadata_ or {}), "activity_id": str(activity.id)}
        if call.direction == "inbound" and call.status in MISSED:
            await _missed(session, call, lead)
    await session.flush()
    await _completed(session, call)


async def _missed(session: AsyncSession, call: CallLog, lead: Lead) -> None:
    owner_id = lead.assigned_to or call.user_id
    due = clock.now() + timedelta(hours=1)
    await activities.record_activity(
        session,
        lead,
        user_id=owner_id,
        activity_type="task",
        title="Call back",
        description=f"Missed call from {call.from_number or 'an unknown number'}.",
        metadata={"due_at": due.isoformat(), "done": False, "call_id": str(call.id)},
    )
