"""Notifications made from other domains' events, in the same transaction as the change.

- ``lead.assigned``, ``lead.created`` (already assigned) → the owner (unless they did it).
- ``message.received`` → the lead's owner (one unread per lead at a time: a burst of messages
  is one notification until it is read).
- ``call.completed`` of a missed inbound call → the lead's owner.
- ``activity.created``: a note naming ``@Someone`` (a member's full name or its first word)
  → that member; an AI agent handoff → the member it was handed to.
- ``import.finished`` → the member who started it; ``webhook.disabled`` → the members who
  manage webhooks; ``billing.payment_failed`` → the members who manage billing.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth.models import OrganizationMember, User
from lovedcrm.auth.permissions import effective_permissions
from lovedcrm.core.events import DomainEvent, subscriber
from lovedcrm.leads.models import Lead, LeadActivity
from lovedcrm.notifications import service

MISSED_STATUSES = frozenset({"no_answer", "busy", "failed", "canceled"})
HANDOFF_ACTIVITY = "ai_handoff"
_MENTION = re.compile(r"@([\w.\-]+(?:\s+[\w.\-]+)?)", re.UNICODE)


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


async def _lead(session: AsyncSession, event: DomainEvent) -> Lead | None:
    lead_id = _uuid(event.data.get("lead_id"))
    return await session.get(Lead, lead_id) if lead_id else None


@subscriber("lead.assigned", "lead.created")
async def lead_assigned(session: AsyncSession, event: DomainEvent) -> None:
    """The new owner; a lead made already assigned (by hand, an import, a rule) too."""
    if event.type == "lead.created":
        to = _uuid((event.data.get("lead") or {}).get("assigned_to"))
    else:
        to = _uuid(event.data.get("to"))
    lead = await _lead(session, event)
    if to is None or lead is None or to == event.actor_id:
        return
    await service.notify(
        session,
        event.organization_id,
        to,
        service.LEAD_ASSIGNED,
        data={"lead": lead.full_name},
        lead_id=lead.id,
    )


@subscriber("message.received")
async def message_received(session: AsyncSession, event: DomainEvent) -> None:
    lead = await _lead(session, event)
    if lead is None or lead.assigned_to is None:
        return
    await service.notify(
        session,
        event.organization_id,
        lead.assigned_to,
        service.MESSAGE_RECEIVED,
        data={"lead": lead.full_name},
        lead=lead,
        link=f"/inbox/{lead.id}",
    )


@subscriber("call.completed")
async def call_completed(session: AsyncSession, event: DomainEvent) -> None:
    if event.data.get("direction") != "inbound" or event.data.get("status") not in MISSED_STATUSES:
        return
    lead = await _lead(session, event)
    # The lead's owner, else the member the call rang (a new caller's lead has no owner yet):
    # the one the call-back task is for.
    to = (lead.assigned_to or event.actor_id) if lead is not None else None
    if lead is None or to is None:
        return
    await service.notify(
        session,
        event.organization_id,
        to,
        service.MISSED_CALL,
        data={"lead": lead.full_name},
        lead_id=lead.id,
        dedupe_key=f"call:{event.data.get('call_id')}",
    )


async def _mentioned(
    session: AsyncSession, organization_id: uuid.UUID, text: str
) -> list[tuple[uuid.UUID, str]]:
    """The members a note names with ``@Full Name`` or ``@First`` (case and accents as typed)."""
    wanted = {m.group(1).strip().casefold() for m in _MENTION.finditer(text)}
    if not wanted:
        return []
    rows = (
        await session.execute(
            select(User.id, User.full_name)
            .join(OrganizationMember, OrganizationMember.user_id == User.id)
            .where(
                OrganizationMember.organization_id == organization_id,
                OrganizationMember.is_active.is_(True),
            )
        )
    ).all()
    found = []
    for user_id, full_name in rows:
        name = full_name.casefold()
        first = name.split()[0] if name.split() else name
        if any(w == name or w.split()[0] == first for w in wanted):
            found.append((user_id, full_name))
    return found


@subscriber("activity.created")
async def activity_created(session: AsyncSession, event: DomainEvent) -> None:
    kind = event.data.get("activity_type")
    if kind not in ("note", HANDOFF_ACTIVITY):
        return
    activity_id = _uuid(event.data.get("activity_id"))
    activity = await session.get(LeadActivity, activity_id) if activity_id else None
    lead = await _lead(session, event)
    if activity is None or lead is None:
        return
    if kind == HANDOFF_ACTIVITY:
        to = _uuid((activity.metadata_ or {}).get("to_user_id"))
        if to is not None:
            await service.notify(
                session,
                event.organization_id,
                to,
                service.AI_HANDOFF,
                data={"lead": lead.full_name},
                lead_id=lead.id,
                link=f"/inbox/{lead.id}",
            )
        return
    text = f"{activity.title or ''}\n{activity.description or ''}"
    if "@" not in text:
        return
    actor = await session.get(User, activity.user_id) if activity.user_id else None
    for user_id, _name in await _mentioned(session, event.organization_id, text):
        if user_id == activity.user_id:
            continue
        await service.notify(
            session,
            event.organization_id,
            user_id,
            service.MENTION,
            data={"lead": lead.full_name, "actor": actor.full_name if actor else ""},
            lead_id=lead.id,
            dedupe_key=f"mention:{activity.id}",
        )


async def _members_who_may(
    session: AsyncSession, organization_id: uuid.UUID, permission: str
) -> list[uuid.UUID]:
    """The active members whose role (and its changes) gives them ``permission``."""
    rows = (
        await session.execute(
            select(
                OrganizationMember.user_id, OrganizationMember.role, OrganizationMember.permissions
            ).where(
                OrganizationMember.organization_id == organization_id,
                OrganizationMember.is_active.is_(True),
            )
        )
    ).all()
    return [
        user_id
        for user_id, role, permissions in rows
        if permission in effective_permissions(role, permissions)
    ]


@subscriber("import.finished")
async def import_finished(session: AsyncSession, event: DomainEvent) -> None:
    """The member who started the import."""
    if event.actor_id is None:
        return
    job_id = event.data.get("job_id")
    await service.notify(
        session,
        event.organization_id,
        event.actor_id,
        service.IMPORT_FINISHED,
        data={
            "title": str(event.data.get("file_name") or ""),
            "count": int(event.data.get("created") or 0) + int(event.data.get("updated") or 0),
        },
        link=f"/leads/import/{job_id}" if job_id else None,
        dedupe_key=f"import:{job_id}",
    )


async def _tell_members_who_may(
    session: AsyncSession,
    event: DomainEvent,
    permission: str,
    notification_type: str,
    *,
    data: dict[str, Any],
    link: str | None,
    dedupe_key: str | None,
) -> None:
    """One notification for each active member holding ``permission``."""
    for user_id in await _members_who_may(session, event.organization_id, permission):
        await service.notify(
            session,
            event.organization_id,
            user_id,
            notification_type,
            data=data,
            link=link,
            dedupe_key=dedupe_key,
        )


@subscriber("webhook.disabled")
async def webhook_disabled(session: AsyncSession, event: DomainEvent) -> None:
    """The members who manage webhooks."""
    subscription_id = event.data.get("subscription_id")
    await _tell_members_who_may(
        session,
        event,
        "webhooks:manage",
        service.WEBHOOK_DISABLED,
        data={"title": str(event.data.get("url") or "")},
        link=f"/settings/webhooks/{subscription_id}" if subscription_id else None,
        dedupe_key=f"webhook-disabled:{subscription_id}:{event.data.get('failure_count')}",
    )


@subscriber("plan.soft_limit")
async def plan_soft_limit(session: AsyncSession, event: DomainEvent) -> None:
    """The members who manage the subscription: a limit of the plan is nearly reached (once
    a month per limit, as the plan warns)."""
    name, month = str(event.data.get("limit") or ""), str(event.data.get("month") or "")
    await _tell_members_who_may(
        session,
        event,
        "billing:manage",
        service.PLAN_LIMIT_NEAR,
        data={k: event.data.get(k) for k in ("limit", "usage", "allowed")},
        link="/settings/billing",
        dedupe_key=f"plan-limit:{name}:{month}",
    )


@subscriber("billing.payment_failed")
async def payment_failed(session: AsyncSession, event: DomainEvent) -> None:
    """The members who manage the subscription."""
    invoice = str(event.data.get("invoice") or "")
    await _tell_members_who_may(
        session,
        event,
        "billing:manage",
        service.PAYMENT_FAILED,
        data={"title": invoice},
        link="/settings/billing",
        dedupe_key=f"payment-failed:{invoice}" if invoice else None,
    )
