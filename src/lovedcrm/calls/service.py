"""Calls: click-to-call, the call's state from provider callbacks, inbound calls, notes.

A call's state only moves forward (``providers.base.rank``): a late ``ringing`` never
overwrites ``in_progress``, and a finished call (completed, no answer, busy, failed,
canceled) is never moved back. Every callback is stored once in ``call_events`` (its event
key unique per organization and provider), so a replay changes nothing; one for a call not
known yet is kept (``applied`` false) and applied when the call appears. When a call
finishes: its cost (``calls.costs.call_cost``), a ``call`` activity on the lead's timeline,
``call.completed``; a missed inbound call also gives the owner a call-back task and an
e-mail (there is no notification centre yet).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import Select, and_, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth.models import User
from lovedcrm.calls import configs
from lovedcrm.calls.inbound import inbound_from_event
from lovedcrm.calls.models import CallEvent, CallLog
from lovedcrm.calls.providers import build
from lovedcrm.calls.providers.base import CallUpdate, ProviderError, rank
from lovedcrm.calls.providers.sandbox import (
    ANSWERED_AFTER,
    COMPLETED_AFTER,
    RINGING_AFTER,
    duration_for,
)
from lovedcrm.calls.state import apply, as_uuid, finish, finished_many, sync_activity
from lovedcrm.calls.switching import active_config
from lovedcrm.config import Settings
from lovedcrm.core import clock
from lovedcrm.core.errors import Conflict, NotFound, ValidationFailed
from lovedcrm.core.events import hold_live, notify_live, release_live
from lovedcrm.core.pagination import keyset_after, page_of
from lovedcrm.core.phones import to_e164
from lovedcrm.core.principal import Principal
from lovedcrm.db.tenant import save_new
from lovedcrm.jobs.queue import enqueue
from lovedcrm.leads import access as leads_access
from lovedcrm.leads.models import Lead
from lovedcrm.organizations import plans

log = structlog.stdlib.get_logger("lovedcrm.calls")

OUTCOMES = ("interested", "not_interested", "callback", "voicemail", "wrong_number", "other")
NOT_FOUND = "No call with that id."


# --- reading --------------------------------------------------------------------------------


def _visible(principal: Principal, query: Select[Any]) -> Select[Any]:
    """Calls of the leads the principal can see (their own calls besides, without a lead)."""
    if principal.can("leads:read_all"):
        return query
    mine = select(Lead.id).where(
        Lead.organization_id == principal.org(), Lead.assigned_to == principal.user_id
    )
    return query.where(or_(CallLog.lead_id.in_(mine), CallLog.user_id == principal.user_id))


async def get_call(session: AsyncSession, principal: Principal, call_id: uuid.UUID) -> CallLog:
    principal.require("leads:read")
    query = _visible(
        principal,
        select(CallLog).where(CallLog.id == call_id, CallLog.organization_id == principal.org()),
    )
    call: CallLog | None = (await session.execute(query)).scalar_one_or_none()
    if call is None:
        raise NotFound(NOT_FOUND, code="call_not_found")
    return call


async def list_calls(
    session: AsyncSession,
    principal: Principal,
    *,
    lead_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    status: str | None = None,
    direction: str | None = None,
    since: Any = None,
    until: Any = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[CallLog], str | None]:
    principal.require("leads:read")
    query = _visible(principal, select(CallLog).where(CallLog.organization_id == principal.org()))
    if lead_id is not None:
        query = query.where(CallLog.lead_id == lead_id)
    if user_id is not None:
        query = query.where(CallLog.user_id == user_id)
    if status is not None:
        query = query.where(CallLog.status == status)
    if direction is not None:
        query = query.where(CallLog.direction == direction)
    if since is not None:
        query = query.where(CallLog.created_at >= since)
    if until is not None:
        query = query.where(CallLog.created_at < until)
    query = keyset_after(query, cursor, key=CallLog.created_at, id_col=CallLog.id)
    rows = list((await session.execute(query.limit(limit + 1))).scalars())
    return page_of(rows, limit, key_of=lambda c: c.created_at)


# --- dialling ---------------------------------------------------------------------------------


def invalid_phone(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        message,
        code="invalid_phone",
        extra={"errors": [{"field": field, "message": "not a phone number"}]},
    )


async def minutes_this_month(session: AsyncSession, organization_id: uuid.UUID) -> int:
    """Call minutes (each call rounded up) since the month began (the plan's limit)."""
    start = clock.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    found = await session.execute(
        select(
            func.coalesce(func.sum(func.ceil(func.coalesce(CallLog.duration_seconds, 0) / 60.0)), 0)
        ).where(CallLog.organization_id == organization_id, CallLog.created_at >= start)
    )
    return int(found.scalar_one() or 0)


async def dial(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    lead_id: uuid.UUID,
    *,
    to_number: str | None = None,
) -> CallLog:
    """Click-to-call: the provider rings the member's own phone, then bridges to the lead.

    Refused before anything is written: 422 ``invalid_phone`` (the lead's number, or the one
    given, is not a phone number), 409 ``telephony_not_configured`` / ``agent_phone_missing``
    / ``no_business_number``. A provider that refuses or cannot be reached leaves the call
    ``failed`` with its reason (the call and its activity are kept: the user sees why)."""
    lead = await leads_access.editable_lead(session, principal, lead_id)
    region = await leads_access.org_region(session, principal)
    raw = to_number if to_number is not None else lead.phone
    field = "to_number" if to_number is not None else "phone"
    if not raw:
        raise invalid_phone(field, "The lead has no phone number to call.")
    try:
        number = to_e164(raw, region)
    except ValueError as exc:
        raise invalid_phone(field, "The number to call is not a valid phone number.") from exc
    await plans.check_limit(
        session,
        principal.org(),
        "call_minutes_month",
        lambda: minutes_this_month(session, principal.org()),
        settings=settings,
    )
    row = await active_config(session, principal.org())
    if row is None:
        raise Conflict(
            "No telephony provider is set up. An admin can set one up in Settings → Telephony.",
            code="telephony_not_configured",
            extra={"settings_url": "/settings/telephony"},
        )
    user = await session.get(User, principal.user_id)
    agent = None
    if user is not None and user.phone:
        try:
            agent = to_e164(user.phone, region)
        except ValueError:
            agent = None
    if agent is None:
        raise Conflict(
            "Add your own phone number first (the call rings your phone, then the lead's).",
            code="agent_phone_missing",
            extra={"settings_url": "/settings/telephony"},
        )
    cfg = configs.decrypt(settings, row)
    business = configs.from_number(cfg)
    if business is None:
        raise Conflict(
            "The telephony configuration has no business number to call from.",
            code="no_business_number",
            extra={"settings_url": "/settings/telephony"},
        )
    call = CallLog(
        organization_id=principal.org(),
        lead_id=lead.id,
        user_id=principal.user_id,
        provider_type=row.provider_type,
        direction="outbound",
        from_number=business,
        to_number=number,
        status="queued",
        duration_seconds=0,
        cost_currency=cfg.currency[:3],
        metadata_={"voip_config_id": str(row.id), "agent_phone": agent},
    )
    await save_new(session, call)
    callback = f"{configs.webhook_url(settings, row.id)}?call={call.id}"
    try:
        async with configs.http_client(settings) as client:
            placed = await build(cfg, client).dial(
                from_business=business,
                agent_phone=agent,
                lead_phone=number,
                callback_url=callback,
                call_ref=str(call.id),
                record=cfg.record,
            )
    except ProviderError as exc:
        call.metadata_ = {
            **(call.metadata_ or {}),
            "reason": exc.message,
            "error_code": exc.code,
        }
        call.status = "failed"
        await finish(session, settings, call, row)
        await session.refresh(call)
        return call
    call.provider_call_id = placed.id
    if rank(placed.status) > rank(call.status):
        call.status = placed.status
    await session.flush()
    if row.provider_type == "sandbox":
        await _play_sandbox(session, call)
    else:
        # Callbacks that came before this transaction committed wait as pending events.
        await enqueue(
            session,
            "calls.apply_pending",
            {"call_id": str(call.id)},
            organization_id=call.organization_id,
            delay=timedelta(seconds=2),
        )
    await notify_live(session, call.organization_id, "call.started", lead_id=lead.id)
    await session.refresh(call)
    return call


async def _play_sandbox(session: AsyncSession, call: CallLog) -> None:
    steps = (
        ("ringing", RINGING_AFTER),
        ("in_progress", ANSWERED_AFTER),
        ("completed", COMPLETED_AFTER),
    )
    for status, after in steps:
        await enqueue(
            session,
            "calls.sandbox_step",
            {"call_id": str(call.id), "status": status},
            organization_id=call.organization_id,
            delay=timedelta(seconds=after),
        )


def sandbox_update(call: CallLog, status: str) -> CallUpdate:
    """The update the sandbox 'sends' for ``status`` (a completed call has a duration and a
    recording)."""
    done = status == "completed"
    return CallUpdate(
        event_key=f"{call.provider_call_id}:{status}",
        provider_call_id=call.provider_call_id,
        call_ref=str(call.id),
        status=status,
        occurred_at=clock.now(),
        duration_seconds=duration_for(str(call.id)) if done else None,
        recording_url=f"sandbox://{call.provider_call_id}" if done else None,
        recording_id=f"RE{call.provider_call_id}" if done else None,
    )


# --- callbacks ------------------------------------------------------------------------------


async def _find_call(
    session: AsyncSession, organization_id: uuid.UUID, provider: str, update: CallUpdate
) -> CallLog | None:
    ref = as_uuid(update.call_ref)
    if ref is not None:
        clause = CallLog.id == ref
    elif update.provider_call_id:
        clause = and_(
            CallLog.provider_type == provider, CallLog.provider_call_id == update.provider_call_id
        )
    else:
        return None
    query = select(CallLog).where(CallLog.organization_id == organization_id, clause)
    return (await session.execute(query.with_for_update())).scalar_one_or_none()


async def record_update(
    session: AsyncSession,
    settings: Settings,
    organization_id: uuid.UUID,
    provider: str,
    update: CallUpdate,
    *,
    config_id: uuid.UUID | None = None,
    defer: bool = False,
) -> str:
    """Store one callback's update and apply it: ``applied``, ``duplicate`` (seen before:
    nothing changes) or ``pending`` (its call is not known yet: kept)."""
    call = await _find_call(session, organization_id, provider, update)
    if call is None and update.action == "incoming" and config_id is not None:
        call = await inbound_from_event(session, settings, organization_id, config_id, update)
    stored = await session.execute(
        insert(CallEvent)
        .values(
            organization_id=organization_id,
            provider_type=provider,
            event_key=update.event_key[:255],
            call_log_id=call.id if call is not None else as_uuid(update.call_ref),
            provider_call_id=update.provider_call_id,
            data=update.data(),
            applied=call is not None,
        )
        .on_conflict_do_nothing(constraint="uq_call_events_event")
        .returning(CallEvent.id)
    )
    if stored.scalar_one_or_none() is None:
        return "duplicate"
    if call is None:
        return "pending"
    await apply(session, settings, call, update, defer=defer)
    return "applied"


_READY = text(
    """
    SELECT e.id FROM call_events e
     WHERE e.organization_id = :org AND NOT e.applied
       AND (e.data->>'action' = 'incoming'
            OR EXISTS (SELECT 1 FROM call_logs c
                        WHERE c.organization_id = e.organization_id AND c.id = e.call_log_id)
            OR EXISTS (SELECT 1 FROM call_logs c
                        WHERE c.organization_id = e.organization_id
                          AND c.provider_type = e.provider_type
                          AND c.provider_call_id = e.provider_call_id))
     ORDER BY e.created_at, e.id
     LIMIT :limit
     FOR UPDATE OF e SKIP LOCKED
    """
)


def stored_event(update: CallUpdate) -> dict[str, Any]:
    """One update as ``lovedcrm_store_call_events`` (migration 0016) takes it."""
    ref = as_uuid(update.call_ref)
    return {
        "event_key": update.event_key[:255],
        "call_ref": str(ref) if ref else None,
        "provider_call_id": (update.provider_call_id or "")[:255] or None,
        "data": update.data(),
    }


async def _calls_of(
    session: AsyncSession,
    organization_id: uuid.UUID,
    updates: list[tuple[CallEvent, CallUpdate]],
) -> dict[tuple[str, str], CallLog]:
    """The calls a batch of updates is about, locked, in one query: by ``("id", our id)`` and
    by ``(provider, provider call id)``."""
    refs = {r for _, u in updates if (r := as_uuid(u.call_ref))}
    by_provider: dict[str, set[str]] = {}
    for row, u in updates:
        if u.provider_call_id:
            by_provider.setdefault(row.provider_type, set()).add(u.provider_call_id)
    clauses: list[Any] = []
    if refs:
        clauses.append(CallLog.id.in_(refs))
    for provider, pids in by_provider.items():
        clauses.append(and_(CallLog.provider_type == provider, CallLog.provider_call_id.in_(pids)))
    if not clauses:
        return {}
    found = (
        await session.execute(
            select(CallLog)
            .where(CallLog.organization_id == organization_id, or_(*clauses))
            .order_by(CallLog.id)
            .with_for_update()
        )
    ).scalars()
    out: dict[tuple[str, str], CallLog] = {}
    for call in found:
        out[("id", str(call.id))] = call
        if call.provider_call_id:
            out[(call.provider_type, call.provider_call_id)] = call
    return out


async def apply_events(
    session: AsyncSession, settings: Settings, organization_id: uuid.UUID, *, limit: int = 300
) -> tuple[int, bool]:
    """Apply the stored callbacks whose call is known (oldest first); those of a call not
    known yet stay pending. (how many applied, whether more may be waiting)."""
    ids = list((await session.execute(_READY, {"org": organization_id, "limit": limit})).scalars())
    if not ids:
        return 0, False
    rows = list(
        (
            await session.execute(
                select(CallEvent)
                .where(CallEvent.organization_id == organization_id, CallEvent.id.in_(ids))
                .order_by(CallEvent.created_at, CallEvent.id)
            )
        ).scalars()
    )
    updates: list[tuple[CallEvent, CallUpdate]] = []
    for row in rows:
        data = dict(row.data or {})
        if row.call_log_id and not data.get("call_ref"):
            data["call_ref"] = str(row.call_log_id)
        updates.append((row, CallUpdate.from_data(row.event_key, row.provider_call_id, data)))
    known = await _calls_of(session, organization_id, updates)
    hold_live(session)  # one NOTIFY statement for the batch
    done: list[CallLog] = []
    applied = 0
    for n, (row, upd) in enumerate(updates):
        if n % 20 == 19:
            await asyncio.sleep(0)  # a long batch lets the process's requests run
        ref = as_uuid(upd.call_ref)
        call = known.get(("id", str(ref))) if ref else None
        if call is None and upd.provider_call_id:
            call = known.get((row.provider_type, upd.provider_call_id))
        if call is None and upd.action == "incoming":
            config_id = as_uuid((row.data or {}).get("config_id"))
            if config_id is not None:
                call = await inbound_from_event(session, settings, organization_id, config_id, upd)
        if call is None:
            continue
        row.applied = True
        row.call_log_id = call.id
        await apply(session, settings, call, upd, collect=done)
        applied += 1
    await finished_many(session, settings, done)
    await release_live(session)
    await session.flush()
    return applied, len(ids) == limit


async def apply_pending(session: AsyncSession, settings: Settings, call: CallLog) -> int:
    """Apply the events that arrived before ``call`` was known, in their order."""
    clauses = [CallEvent.call_log_id == call.id]
    if call.provider_call_id:
        clauses.append(CallEvent.provider_call_id == call.provider_call_id)
    rows = list(
        (
            await session.execute(
                select(CallEvent)
                .where(
                    CallEvent.organization_id == call.organization_id,
                    CallEvent.provider_type == call.provider_type,
                    CallEvent.applied.is_(False),
                    or_(*clauses),
                )
                .order_by(CallEvent.created_at, CallEvent.id)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
    updates = [CallUpdate.from_data(r.event_key, r.provider_call_id, r.data) for r in rows]
    updates.sort(key=lambda u: (rank(u.status) if u.status else -1, u.sequence or 0))
    for row in rows:
        row.applied = True
        row.call_log_id = call.id
    for upd in updates:
        await apply(session, settings, call, upd)
    await session.flush()
    return len(rows)


# --- after the call -----------------------------------------------------------------------


async def update_call(
    session: AsyncSession, principal: Principal, call_id: uuid.UUID, changes: dict[str, Any]
) -> CallLog:
    """Notes and outcome (the member who may edit the call's lead)."""
    call = await get_call(session, principal, call_id)
    if call.lead_id is not None:
        await leads_access.editable_lead(session, principal, call.lead_id)
    elif call.user_id != principal.user_id:
        raise NotFound(NOT_FOUND, code="call_not_found")
    outcome = changes.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise ValidationFailed(
            "Unknown call outcome.",
            code="invalid_outcome",
            extra={
                "errors": [{"field": "outcome", "message": "must be one of " + ", ".join(OUTCOMES)}]
            },
        )
    meta = dict(call.metadata_ or {})
    for name in ("notes", "outcome"):
        if name in changes:
            meta[name] = changes[name]
    call.metadata_ = meta
    await session.flush()
    await sync_activity(session, call)
    await session.refresh(call)
    return call


async def recording_call(
    session: AsyncSession, principal: Principal, call_id: uuid.UUID
) -> tuple[CallLog, str]:
    """The call and its stored recording's key (404 when the call is not the principal's to
    see, or has no recording yet)."""
    call = await get_call(session, principal, call_id)
    key = (call.metadata_ or {}).get("recording_key")
    if not key:
        raise NotFound("This call has no recording.", code="recording_not_found")
    return call, str(key)


async def call_for_job(
    session: AsyncSession, organization_id: uuid.UUID, call_id: uuid.UUID
) -> CallLog | None:
    query = select(CallLog).where(CallLog.organization_id == organization_id, CallLog.id == call_id)
    return (await session.execute(query.with_for_update())).scalar_one_or_none()


async def store_recording(session: AsyncSession, call: CallLog, key: str) -> None:
    call.metadata_ = {
        **{k: v for k, v in (call.metadata_ or {}).items() if k != "provider_recording_url"},
        "recording_key": key,
    }
    call.recording_url = f"/api/v1/calls/{call.id}/recording"
    await session.flush()
    await sync_activity(session, call)
    if call.lead_id:
        await notify_live(session, call.organization_id, "call.updated", lead_id=call.lead_id)


async def store_transcription(
    session: AsyncSession,
    organization_id: uuid.UUID,
    call_id: uuid.UUID,
    text: str | None,
    failure: str | None = None,
) -> bool:
    """The recording's text on the call (and its timeline entry), or why it has none
    (``transcription_error`` in the metadata). False when the call no longer exists."""
    call = await call_for_job(session, organization_id, call_id)
    if call is None:
        return False
    meta = {k: v for k, v in (call.metadata_ or {}).items() if k != "transcription_error"}
    if text is not None:
        call.transcription = text
    if failure:
        meta["transcription_error"] = failure[:500]
    call.metadata_ = meta
    await session.flush()
    await sync_activity(session, call)
    if call.lead_id:
        await notify_live(session, call.organization_id, "call.updated", lead_id=call.lead_id)
    return True


async def lead_calls(
    session: AsyncSession, principal: Principal, lead_id: uuid.UUID, limit: int = 5
) -> tuple[Lead, list[CallLog]]:
    lead = await leads_access.get_lead(session, principal, lead_id)
    rows = (
        await session.execute(
            select(CallLog)
            .where(CallLog.organization_id == principal.org(), CallLog.lead_id == lead.id)
            .order_by(CallLog.created_at.desc(), CallLog.id.desc())
            .limit(limit)
        )
    ).scalars()
    return lead, list(rows)
