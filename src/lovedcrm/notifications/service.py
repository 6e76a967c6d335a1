"""Notifications: made for one member by the events of other domains (``events.py``) and the
periodic jobs (``jobs.py``); read, counted and marked read by the member; preferences per
type. A notification about a lead is made only when the member can see that lead *now*
(``leads.access.visible`` with the member's current permissions), and the e-mail job checks
again before sending.

Channels per type: ``in_app`` (the bell only), ``email`` (the bell and an e-mail now),
``digest`` (the bell and the next daily digest e-mail), ``off`` (nothing is made).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session as OrmSession

from lovedcrm.auth.models import OrganizationMember
from lovedcrm.auth.permissions import effective_permissions
from lovedcrm.core import clock
from lovedcrm.core.errors import NotFound, ValidationFailed
from lovedcrm.core.events import notify_live
from lovedcrm.core.pagination import keyset_after, page_of
from lovedcrm.core.principal import Person, Principal
from lovedcrm.jobs.queue import enqueue
from lovedcrm.leads.access import may_see, visible
from lovedcrm.leads.models import Lead
from lovedcrm.notifications.models import CHANNELS, Notification, NotificationPreference
from lovedcrm.organizations import plans
from lovedcrm.web.i18n import N_

# Every notification type, with its text (an English msgid; %(lead)s, %(title)s… from data).
LEAD_ASSIGNED = "lead_assigned"
MESSAGE_RECEIVED = "message_received"
MISSED_CALL = "missed_call"
TASK_DUE = "task_due"
MENTION = "mention"
AI_HANDOFF = "ai_handoff"
IMPORT_FINISHED = "import_finished"
WEBHOOK_DISABLED = "webhook_disabled"
PAYMENT_FAILED = "payment_failed"
PLAN_LIMIT_NEAR = "plan_limit_near"

TYPES: dict[str, str] = {
    LEAD_ASSIGNED: N_("Lead assigned to you"),
    MESSAGE_RECEIVED: N_("New WhatsApp message on your lead"),
    MISSED_CALL: N_("Missed call on your lead"),
    TASK_DUE: N_("Task due or overdue"),
    MENTION: N_("Mention in a note"),
    AI_HANDOFF: N_("AI agent handed a conversation to you"),
    IMPORT_FINISHED: N_("Import finished"),
    WEBHOOK_DISABLED: N_("Webhook subscription disabled"),
    PAYMENT_FAILED: N_("Payment failed"),
    PLAN_LIMIT_NEAR: N_("Plan limit nearly reached"),
}

TEXTS: dict[str, str] = {
    LEAD_ASSIGNED: N_("%(lead)s was assigned to you"),
    MESSAGE_RECEIVED: N_("New WhatsApp message from %(lead)s"),
    MISSED_CALL: N_("Missed call from %(lead)s"),
    TASK_DUE: N_("Task due: %(title)s (%(lead)s)"),
    MENTION: N_("%(actor)s mentioned you in a note on %(lead)s"),
    AI_HANDOFF: N_("The AI agent handed %(lead)s to you"),
    IMPORT_FINISHED: N_("Your import finished: %(count)s leads"),
    WEBHOOK_DISABLED: N_("Webhook %(title)s was disabled after repeated failures"),
    PAYMENT_FAILED: N_("A payment failed: %(title)s"),
    PLAN_LIMIT_NEAR: N_("Your plan's limit is nearly reached: %(limit)s, %(usage)s of %(allowed)s"),
}

CHANNEL_LABELS = {
    "in_app": N_("In the app"),
    "email": N_("E-mail now"),
    "digest": N_("Daily digest"),
    "off": N_("Off"),
}
DEFAULT_CHANNEL = "in_app"
# Where a member chose nothing, a missed call also reaches them by e-mail (issue 16: the
# owner gets a call-back task and an e-mail); each member can change it like any other.
DEFAULT_CHANNELS = {MISSED_CALL: "email"}


def default_channel(notification_type: str) -> str:
    """The channel of a type for a member who chose none."""
    return DEFAULT_CHANNELS.get(notification_type, DEFAULT_CHANNEL)


LIVE_KIND = "notification"


def text_of(notification_type: str, data: Mapping[str, Any], gettext: Callable[[str], str]) -> str:
    """The notification's sentence in the reader's language."""
    template = gettext(TEXTS.get(notification_type, notification_type))
    values = {"lead": "", "title": "", "actor": "", "count": ""} | {
        k: str(v) for k, v in data.items()
    }
    if "limit" in data:  # a plan's limit, by its name: in the reader's words
        values["limit"] = gettext(plans.LIMIT_LABELS.get(str(data["limit"]), str(data["limit"])))
    try:
        return template % values
    except (KeyError, ValueError, TypeError):
        return template


# --- making one --------------------------------------------------------------------------


def _principal(
    organization_id: uuid.UUID, user_id: uuid.UUID, role: str, permissions: Any
) -> Principal:
    return Principal(
        user=Person(id=user_id, email="", full_name=""),
        organization_id=organization_id,
        role=role,
        permissions=effective_permissions(role, permissions),
        via="job",
    )


async def member_principal(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
) -> Principal | None:
    """The member as they are now (None when no longer an active member): what they may see."""
    member = (
        await session.execute(
            select(OrganizationMember).where(
                OrganizationMember.organization_id == organization_id,
                OrganizationMember.user_id == user_id,
                OrganizationMember.is_active.is_(True),
            )
        )
    ).scalar_one_or_none()
    if member is None:
        return None
    return _principal(organization_id, user_id, member.role, member.permissions)


async def _sees_lead(
    session: AsyncSession, principal: Principal, organization_id: uuid.UUID, lead_id: uuid.UUID
) -> bool:
    query = visible(
        principal,
        select(Lead.id).where(Lead.organization_id == organization_id, Lead.id == lead_id),
    )
    return principal.can("leads:read") and (await session.execute(query)).first() is not None


async def can_see_lead(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID, lead_id: uuid.UUID
) -> bool:
    principal = await member_principal(session, organization_id, user_id)
    return principal is not None and await _sees_lead(session, principal, organization_id, lead_id)


_RECIPIENTS = "lovedcrm.notifications.recipients"


@sa_event.listens_for(OrmSession, "after_transaction_end")
def _forget_recipients(session: OrmSession, transaction: Any) -> None:
    """The recipients read in a transaction are not trusted in the next one (a savepoint
    ending inside it keeps them: the worker runs each event of a batch in one)."""
    if transaction.parent is None:
        session.info.pop(_RECIPIENTS, None)


async def _recipient(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID, notification_type: str
) -> tuple[Principal, str] | None:
    """The member (None when no longer active) and their channel for the type, in one read,
    remembered for the rest of the transaction: a batch of inbound messages to one owner
    reads it once."""
    cache: dict[tuple[uuid.UUID, uuid.UUID, str], tuple[Principal, str] | None]
    cache = session.info.setdefault(_RECIPIENTS, {})
    key = (organization_id, user_id, notification_type)
    if key in cache:
        return cache[key]
    row = (
        await session.execute(
            select(
                OrganizationMember.role,
                OrganizationMember.permissions,
                NotificationPreference.channel,
            )
            .outerjoin(
                NotificationPreference,
                (NotificationPreference.organization_id == OrganizationMember.organization_id)
                & (NotificationPreference.user_id == OrganizationMember.user_id)
                & (NotificationPreference.notification_type == notification_type),
            )
            .where(
                OrganizationMember.organization_id == organization_id,
                OrganizationMember.user_id == user_id,
                OrganizationMember.is_active.is_(True),
            )
        )
    ).first()
    found = (
        None
        if row is None
        else (
            _principal(organization_id, user_id, row[0], row[1]),
            row[2] or default_channel(notification_type),
        )
    )
    cache[key] = found
    return found


async def notify(
    session: AsyncSession,
    organization_id: uuid.UUID,
    user_id: uuid.UUID,
    notification_type: str,
    *,
    data: Mapping[str, Any] | None = None,
    lead_id: uuid.UUID | None = None,
    lead: Lead | None = None,
    link: str | None = None,
    dedupe_key: str | None = None,
) -> uuid.UUID | None:
    """Make one notification for the member (None when their preference is off, they are no
    longer a member, they cannot see the lead, or it would repeat one the database keeps
    unique: ``dedupe_key`` already used, or an unread "new message" on the same lead).

    ``lead``: the lead already read in this transaction (its visibility is then decided
    without another query); otherwise ``lead_id``."""
    if notification_type not in TYPES:
        raise ValueError(f"unknown notification type {notification_type!r}")
    recipient = await _recipient(session, organization_id, user_id, notification_type)
    if recipient is None:
        return None
    principal, channel = recipient
    if channel == "off":
        return None
    if lead is not None:
        lead_id = lead.id
        if lead.organization_id != organization_id or not may_see(principal, lead):
            return None
    elif lead_id is not None and not await _sees_lead(session, principal, organization_id, lead_id):
        return None
    values = dict(data or {})
    stmt = (
        insert(Notification)
        .values(
            organization_id=organization_id,
            user_id=user_id,
            notification_type=notification_type,
            title=text_of(notification_type, values, lambda s: s)[:255],
            link=link or (f"/leads/{lead_id}" if lead_id else None),
            lead_id=lead_id,
            data=values,
            dedupe_key=dedupe_key,
            digest_pending=channel == "digest",
        )
        .on_conflict_do_nothing()
        .returning(Notification.id)
    )
    notification_id: uuid.UUID | None = (await session.execute(stmt)).scalar_one_or_none()
    if notification_id is None:
        return None
    if channel == "email":
        await enqueue(
            session,
            "notifications.email",
            {"notification_id": str(notification_id)},
            organization_id=organization_id,
        )
    await notify_live(
        session, organization_id, LIVE_KIND, user=user_id, notification_id=notification_id
    )
    return notification_id


# --- the member's own ----------------------------------------------------------------------


def _mine(principal: Principal) -> Any:
    """The member's own notifications, less those about a lead they can no longer see (the
    lead was reassigned, or their role changed): never shown, never counted."""
    own = (Notification.organization_id == principal.org()) & (
        Notification.user_id == principal.user_id
    )
    if principal.can("leads:read") and principal.can("leads:read_all"):
        return own  # every lead of the organization
    if not principal.can("leads:read"):
        return own & Notification.lead_id.is_(None)
    seen = visible(principal, select(Lead.id).where(Lead.organization_id == principal.org())).where(
        Lead.id == Notification.lead_id
    )
    return own & (Notification.lead_id.is_(None) | seen.exists())


async def list_notifications(
    session: AsyncSession,
    principal: Principal,
    *,
    unread_only: bool = False,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Notification], str | None]:
    query = select(Notification).where(_mine(principal))
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    query = keyset_after(query, cursor, key=Notification.created_at, id_col=Notification.id)
    rows = list((await session.execute(query.limit(limit + 1))).scalars())
    return page_of(rows, limit, key_of=lambda n: n.created_at)


async def unread_count(session: AsyncSession, principal: Principal) -> int:
    query = select(func.count()).where(_mine(principal), Notification.read_at.is_(None))
    return int((await session.execute(query)).scalar_one())


async def mark_read(
    session: AsyncSession, principal: Principal, notification_id: uuid.UUID
) -> Notification:
    notification = (
        await session.execute(
            select(Notification).where(_mine(principal), Notification.id == notification_id)
        )
    ).scalar_one_or_none()
    if notification is None:
        raise NotFound("No notification with that id.", code="notification_not_found")
    if notification.read_at is None:
        notification.read_at = clock.now()
        await session.flush()
    return notification


async def mark_all_read(session: AsyncSession, principal: Principal) -> int:
    result = await session.execute(
        update(Notification)
        .where(_mine(principal), Notification.read_at.is_(None))
        .values(read_at=clock.now())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def preferences(session: AsyncSession, principal: Principal) -> dict[str, str]:
    """Every type with the member's channel (the default where they chose nothing)."""
    rows = (
        await session.execute(
            select(NotificationPreference.notification_type, NotificationPreference.channel).where(
                NotificationPreference.organization_id == principal.org(),
                NotificationPreference.user_id == principal.user_id,
            )
        )
    ).all()
    chosen = {t: c for t, c in rows}
    return {t: chosen.get(t, default_channel(t)) for t in TYPES}


async def set_preferences(
    session: AsyncSession, principal: Principal, changes: Mapping[str, str]
) -> dict[str, str]:
    """Set the channel of some types; an unknown type or channel is refused (422)."""
    unknown = sorted(t for t in changes if t not in TYPES)
    if unknown:
        raise ValidationFailed(
            "Unknown notification type.",
            code="unknown_notification_type",
            extra={"types": unknown},
        )
    if any(c not in CHANNELS for c in changes.values()):
        raise ValidationFailed("Unknown notification channel.", code="unknown_channel")
    for notification_type, channel in changes.items():
        stmt = insert(NotificationPreference).values(
            organization_id=principal.org(),
            user_id=principal.user_id,
            notification_type=notification_type,
            channel=channel,
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["organization_id", "user_id", "notification_type"],
                set_={"channel": channel, "updated_at": func.now()},
            )
        )
    return await preferences(session, principal)
