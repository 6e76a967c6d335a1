"""Meetings: create, list, change, status, delete; conflicts; video rooms; invitations with an
``.ics``; reminders; the member's secret ICS feed.

A meeting belongs to the member who made it (``created_by``). A member sees their own agenda;
``leads:read_all`` (managers, admins) sees a teammate's or the whole team's. Changing a
meeting needs ``leads:write`` and being its owner (or ``leads:write_all``). Status changes
and new meetings on a lead go on the lead's timeline (``leads.activities``).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.calendar import ics
from lovedcrm.calendar.models import CalendarEvent, CalendarFeed, CalendarIntegration
from lovedcrm.config import Settings
from lovedcrm.core import clock
from lovedcrm.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.mail import Attachment, get_mailer
from lovedcrm.core.principal import Principal
from lovedcrm.core.security import new_token, token_hash
from lovedcrm.db.tenant import after_commit, save_new
from lovedcrm.jobs.queue import enqueue
from lovedcrm.leads import access as leads
from lovedcrm.leads import activities
from lovedcrm.messaging.models import MessageTemplate

DEFAULT_TIMEZONE = "America/Sao_Paulo"
STATUSES = ("scheduled", "completed", "cancelled", "no_show")
VIDEO = ("jitsi", "google", "none")
MAX_SPAN = timedelta(days=14)
_STATUS_TITLES = {
    "scheduled": "Meeting scheduled",
    "completed": "Meeting completed",
    "cancelled": "Meeting cancelled",
    "no_show": "Meeting missed (no-show)",
}


def _invalid(field_name: str, message: str, detail: str) -> ValidationFailed:
    return ValidationFailed(detail, extra={"errors": [{"field": field_name, "message": message}]})


def zone(name: str) -> ZoneInfo:
    """The time zone called ``name`` or 422 naming ``timezone``."""
    try:
        if not name or len(name) > 100:
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid("timezone", "is not a known time zone", "Unknown time zone.") from None


async def default_timezone(session: AsyncSession, principal: Principal) -> str:
    org_settings = await leads.organization_settings(session, principal.org())
    name = org_settings.get("timezone")
    if isinstance(name, str):
        try:
            ZoneInfo(name)
            return name
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return DEFAULT_TIMEZONE


def localize(moment: datetime, tz: ZoneInfo) -> datetime:
    """A naive time is read in ``tz`` (a form's local time); an aware one is kept."""
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


@dataclass
class MeetingInput:
    title: str
    start_time: datetime
    end_time: datetime
    timezone: str | None = None
    attendees: list[str] = field(default_factory=list)
    lead_id: uuid.UUID | None = None
    description: str | None = None
    reminder_minutes: int | None = None
    video: str = "jitsi"
    whatsapp_template_id: uuid.UUID | None = None
    whatsapp_reminder_minutes: int | None = None


@dataclass
class Agenda:
    events: list[CalendarEvent]
    start: datetime
    end: datetime
    user_id: uuid.UUID | None  # None: the whole team


def jitsi_url(settings: Settings) -> str:
    """A room nobody can guess (96 random bits) on the configured Jitsi server."""
    return f"{settings.jitsi_base_url.rstrip('/')}/LovedCRM-{secrets.token_hex(12)}"


async def integration_of(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
) -> CalendarIntegration | None:
    return (
        await session.scalars(
            select(CalendarIntegration).where(
                CalendarIntegration.organization_id == organization_id,
                CalendarIntegration.user_id == user_id,
                CalendarIntegration.provider == "google",
            )
        )
    ).first()


def _connected(integration: CalendarIntegration | None) -> bool:
    return bool(integration is not None and integration.refresh_token and integration.calendar_id)


async def _check_lead(
    session: AsyncSession, principal: Principal, lead_id: uuid.UUID | None
) -> uuid.UUID | None:
    if lead_id is None:
        return None
    try:
        lead = await leads.get_lead(session, principal, lead_id)
    except NotFound:
        raise _invalid(
            "lead_id", "is not a lead of this organization", "No such lead here."
        ) from None
    return lead.id


def _check_times(start: datetime, end: datetime) -> None:
    if end <= start:
        raise _invalid("end_time", "must be after start_time", "The end must be after the start.")
    if end - start > MAX_SPAN:
        raise _invalid("end_time", "is more than 14 days after start_time", "Too long a meeting.")


def _clean_attendees(emails: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for raw in emails:
        email = raw.strip().lower()
        if not email:
            continue
        local, at, domain = email.partition("@")
        if not at or not local or "." not in domain or " " in email or len(email) > 254:
            raise _invalid("attendees", "holds an invalid e-mail address", "Invalid attendee.")
        if email not in seen:
            seen.append(email)
    if len(seen) > 50:
        raise _invalid("attendees", "holds more than 50 addresses", "Too many attendees.")
    return seen


async def conflicts(
    session: AsyncSession,
    principal: Principal,
    start: datetime,
    end: datetime,
    *,
    user_id: uuid.UUID | None = None,
    exclude: uuid.UUID | None = None,
) -> list[CalendarEvent]:
    """The member's scheduled meetings that overlap [start, end)."""
    query = select(CalendarEvent).where(
        CalendarEvent.organization_id == principal.org(),
        CalendarEvent.created_by == (user_id or principal.user_id),
        CalendarEvent.status == "scheduled",
        CalendarEvent.start_time < end,
        CalendarEvent.end_time > start,
    )
    if exclude is not None:
        query = query.where(CalendarEvent.id != exclude)
    return list((await session.scalars(query.order_by(CalendarEvent.start_time))).all())


async def list_events(
    session: AsyncSession,
    principal: Principal,
    start: datetime,
    end: datetime,
    *,
    user_id: uuid.UUID | None = None,
    team: bool = False,
    lead_id: uuid.UUID | None = None,
    limit: int = 500,
) -> Agenda:
    principal.require("leads:read")
    if end <= start:
        raise _invalid("to", "must be after from", "The end of the range must be after its start.")
    others = team or (user_id is not None and user_id != principal.user_id)
    if others and not principal.can("leads:read_all"):
        raise Forbidden("Only managers can see a teammate's agenda.", code="agenda_team_forbidden")
    query = select(CalendarEvent).where(
        CalendarEvent.organization_id == principal.org(),
        CalendarEvent.start_time < end,
        CalendarEvent.end_time > start,
    )
    owner = None if team else (user_id or principal.user_id)
    if owner is not None and lead_id is None:
        query = query.where(CalendarEvent.created_by == owner)
    if lead_id is not None:
        await leads.get_lead(session, principal, lead_id)  # 404 when not visible
        query = query.where(CalendarEvent.lead_id == lead_id)
    rows = await session.scalars(query.order_by(CalendarEvent.start_time).limit(limit))
    return Agenda(events=list(rows.all()), start=start, end=end, user_id=owner)


async def lead_meetings(
    session: AsyncSession, principal: Principal, lead_id: uuid.UUID, *, limit: int = 20
) -> list[CalendarEvent]:
    await leads.get_lead(session, principal, lead_id)
    rows = await session.scalars(
        select(CalendarEvent)
        .where(CalendarEvent.organization_id == principal.org(), CalendarEvent.lead_id == lead_id)
        .order_by(CalendarEvent.start_time.desc())
        .limit(limit)
    )
    return list(rows.all())


async def get_event(
    session: AsyncSession, principal: Principal, event_id: uuid.UUID
) -> CalendarEvent:
    principal.require("leads:read")
    missing = NotFound("No meeting with that id.", code="meeting_not_found")
    event = await get_in_org(session, CalendarEvent, event_id, principal, missing)
    if event.created_by != principal.user_id and not principal.can("leads:read_all"):
        raise missing
    return event


async def _editable(
    session: AsyncSession, principal: Principal, event_id: uuid.UUID
) -> CalendarEvent:
    principal.require("leads:write")
    event = await get_event(session, principal, event_id)
    if event.created_by != principal.user_id and not principal.can("leads:write_all"):
        raise Forbidden("Only the meeting's owner can change it.", code="meeting_not_owner")
    return event


async def _timeline(
    session: AsyncSession, principal: Principal, event: CalendarEvent, status: str
) -> None:
    if event.lead_id is None:
        return
    local = event.start_time.astimezone(zone(event.timezone))
    await activities.create_activity(
        session,
        principal,
        event.lead_id,
        activity_type="meeting",
        title=f"{_STATUS_TITLES[status]}: {event.title}"[:255],
        description=f"{local:%Y-%m-%d %H:%M} ({event.timezone})",
        metadata={"calendar_event_id": str(event.id), "status": status, "title": event.title},
        duration_minutes=max(1, int((event.end_time - event.start_time).total_seconds() // 60)),
    )


def _send_ics(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    event: CalendarEvent,
    *,
    cancel: bool = False,
    update: bool = False,
) -> None:
    """Mail each attendee the invitation (or its update / cancellation) once committed."""
    if not event.attendees:
        return
    data = ics.invitation(event, organizer=principal.user.email, stamp=clock.now(), cancel=cancel)
    method = "CANCEL" if cancel else "REQUEST"
    when = event.start_time.astimezone(zone(event.timezone))
    prefix = "Cancelled" if cancel else ("Updated" if update else "Invitation")
    subject = f"{prefix}: {event.title} — {when:%Y-%m-%d %H:%M} ({event.timezone})"
    lines = [f"{principal.user.full_name} <{principal.user.email}>", "", subject]
    if event.meeting_url and not cancel:
        lines += ["", f"Video: {event.meeting_url}"]
    body = "\n".join(lines)
    attachment = Attachment("invite.ics", f"text/calendar; method={method}", data)
    mailer, recipients = get_mailer(settings), list(event.attendees)

    async def send() -> None:
        for to in recipients:
            await mailer.send(to, subject, body, [attachment])

    after_commit(session, send)


async def _schedule_reminder(session: AsyncSession, event: CalendarEvent) -> None:
    """An e-mail to the member ``reminder_minutes`` before the start. A reminder queued for
    an older start does nothing when it runs (the job checks), so a moved meeting is reminded
    at its new time only."""
    if event.reminder_minutes is None or event.status != "scheduled":
        return
    at = event.start_time - timedelta(minutes=event.reminder_minutes)
    if at <= clock.now():
        return
    stamp = event.start_time.isoformat()
    await enqueue(
        session,
        "calendar.reminder",
        {"event_id": str(event.id), "start_time": stamp},
        organization_id=event.organization_id,
        scheduled_for=at,
        dedupe_key=f"calendar.reminder:{event.id}:{stamp}:{event.reminder_minutes}",
    )


WHATSAPP_OFFSETS = (60, 180, 1440)  # 1 hour, 3 hours, 1 day before


async def approved_templates(session: AsyncSession, principal: Principal) -> list[MessageTemplate]:
    """The organization's active templates mapped to a Meta-approved one: those WhatsApp
    delivers outside the 24-hour window, so a reminder can always be sent."""
    if not principal.can("messages:read"):
        return []
    rows = await session.scalars(
        select(MessageTemplate)
        .where(
            MessageTemplate.organization_id == principal.org(),
            MessageTemplate.is_active.is_(True),
            MessageTemplate.whatsapp_template_name.is_not(None),
        )
        .order_by(MessageTemplate.name)
        .limit(200)
    )
    return list(rows.all())


async def _whatsapp_reminder(
    session: AsyncSession,
    principal: Principal,
    lead_id: uuid.UUID | None,
    template_id: uuid.UUID | None,
    minutes: int | None,
) -> dict[str, Any] | None:
    """The checked WhatsApp reminder setting: an approved template of the organization, an
    offset of 1 h, 3 h or 1 day, and a lead to send it to."""
    if template_id is None:
        return None
    field_name = "whatsapp_template_id"
    if lead_id is None:
        raise _invalid(field_name, "needs a lead", "A WhatsApp reminder needs the meeting's lead.")
    if minutes not in WHATSAPP_OFFSETS:
        raise _invalid(
            "whatsapp_reminder_minutes",
            "must be 60, 180 or 1440",
            "Choose when to send the WhatsApp reminder.",
        )
    principal.require("messages:write")
    if template_id not in {t.id for t in await approved_templates(session, principal)}:
        raise _invalid(
            field_name,
            "is not an approved WhatsApp template of this organization",
            "Choose an approved WhatsApp template.",
        )
    return {"template_id": str(template_id), "minutes": minutes}


async def _schedule_whatsapp_reminder(session: AsyncSession, event: CalendarEvent) -> None:
    """The WhatsApp reminder to the lead, at start − offset; deduped per meeting, start and
    setting. A reminder for an older start or setting does nothing when it runs."""
    setting = event.whatsapp_reminder
    if not setting or event.status != "scheduled" or event.lead_id is None:
        return
    minutes = int(setting["minutes"])
    at = event.start_time - timedelta(minutes=minutes)
    if at <= clock.now():
        return
    stamp = event.start_time.isoformat()
    await enqueue(
        session,
        "calendar.whatsapp_reminder",
        {"event_id": str(event.id), "start_time": stamp, **setting},
        organization_id=event.organization_id,
        scheduled_for=at,
        dedupe_key=(
            f"calendar.whatsapp_reminder:{event.id}:{stamp}:{setting['template_id']}:{minutes}"
        ),
    )


async def _queue_push(session: AsyncSession, event: CalendarEvent, action: str) -> None:
    if event.calendar_integration_id is None:
        return
    event.sync_state = "pending"
    await enqueue(
        session,
        "calendar.push",
        {"event_id": str(event.id), "action": action},
        organization_id=event.organization_id,
    )


async def create_event(
    session: AsyncSession, principal: Principal, data: MeetingInput, *, settings: Settings
) -> CalendarEvent:
    principal.require("leads:write")
    tz_name = data.timezone or await default_timezone(session, principal)
    tz = zone(tz_name)
    start, end = localize(data.start_time, tz), localize(data.end_time, tz)
    _check_times(start, end)
    if data.video not in VIDEO:
        raise _invalid("video", "must be jitsi, google or none", "Unknown video option.")
    attendees = _clean_attendees(data.attendees)
    lead_id = await _check_lead(session, principal, data.lead_id)
    whatsapp_reminder = await _whatsapp_reminder(
        session, principal, lead_id, data.whatsapp_template_id, data.whatsapp_reminder_minutes
    )
    integration = await integration_of(session, principal.org(), principal.user_id)
    google = _connected(integration) and integration is not None
    if data.video == "google" and not google:
        raise _invalid(
            "video", "needs Google Calendar connected", "Connect Google Calendar to use Meet."
        )
    event = CalendarEvent(
        organization_id=principal.org(),
        created_by=principal.user_id,
        lead_id=lead_id,
        title=data.title,
        description=data.description or None,
        start_time=start,
        end_time=end,
        timezone=tz_name,
        attendees=attendees,
        status="scheduled",
        source="crm",
        ics_sequence=0,
        reminder_minutes=data.reminder_minutes,
        whatsapp_reminder=whatsapp_reminder,
        meeting_url=jitsi_url(settings) if data.video == "jitsi" else None,
        calendar_integration_id=integration.id if google and integration else None,
    )
    await save_new(session, event)
    if data.video == "google":
        event.meeting_password = None
        event.meeting_url = None  # the push fills it with Google's hangoutLink
    await _queue_push(session, event, "insert_meet" if data.video == "google" else "insert")
    await _timeline(session, principal, event, "scheduled")
    await _schedule_reminder(session, event)
    await _schedule_whatsapp_reminder(session, event)
    _send_ics(session, settings, principal, event)
    await audit.record(
        session,
        action="create",
        resource_type="calendar_event",
        resource_id=event.id,
        organization_id=event.organization_id,
        user_id=principal.user_id,
        changes={"title": [None, event.title], "start_time": [None, start.isoformat()]},
    )
    await session.flush()
    return event


_TIMES = ("start_time", "end_time", "timezone")


async def update_event(
    session: AsyncSession,
    principal: Principal,
    event_id: uuid.UUID,
    changes: dict[str, Any],
    *,
    settings: Settings,
) -> CalendarEvent:
    event = await _editable(session, principal, event_id)
    if event.status != "scheduled" and set(changes) - {"status", "description"}:
        raise Conflict("Only a scheduled meeting can be changed.", code="meeting_not_scheduled")
    tz_name = changes.get("timezone") or event.timezone
    tz = zone(tz_name)
    start = localize(changes.get("start_time") or event.start_time, tz)
    end = localize(changes.get("end_time") or event.end_time, tz)
    _check_times(start, end)
    before = {"title": event.title, "start_time": event.start_time.isoformat()}
    moved = start != event.start_time or end != event.end_time or tz_name != event.timezone
    event.start_time, event.end_time, event.timezone = start, end, tz_name
    if changes.get("title"):
        event.title = changes["title"]
    if "description" in changes:
        event.description = changes["description"] or None
    if "attendees" in changes and changes["attendees"] is not None:
        event.attendees = _clean_attendees(changes["attendees"])
    if "lead_id" in changes:
        event.lead_id = await _check_lead(session, principal, changes["lead_id"])
    if "reminder_minutes" in changes:
        event.reminder_minutes = changes["reminder_minutes"]
    status = changes.get("status")
    if status is not None and status != event.status:
        if status not in STATUSES:
            raise _invalid("status", "is not a known status", "Unknown status.")
        if event.status != "scheduled":
            raise Conflict("The meeting was already closed.", code="meeting_status_final")
        event.status = status
        await _timeline(session, principal, event, status)
    event.ics_sequence = (event.ics_sequence or 0) + 1
    event.updated_at = clock.now()
    await session.flush()
    if event.status == "cancelled":
        _send_ics(session, settings, principal, event, cancel=True)
        await _queue_push(session, event, "delete")
    else:
        if event.status == "scheduled":
            _send_ics(session, settings, principal, event, update=True)
        await _queue_push(session, event, "patch")
    if moved or "reminder_minutes" in changes:
        await _schedule_reminder(session, event)
    if moved:
        await _schedule_whatsapp_reminder(session, event)
    await audit.record(
        session,
        action="update",
        resource_type="calendar_event",
        resource_id=event.id,
        organization_id=event.organization_id,
        user_id=principal.user_id,
        changes={
            "title": [before["title"], event.title],
            "start_time": [before["start_time"], event.start_time.isoformat()],
            "status": [None, event.status],
        },
    )
    return event


async def delete_event(
    session: AsyncSession, principal: Principal, event_id: uuid.UUID, *, settings: Settings
) -> None:
    event = await _editable(session, principal, event_id)
    if event.status == "scheduled":
        event.ics_sequence = (event.ics_sequence or 0) + 1
        _send_ics(session, settings, principal, event, cancel=True)
    if event.external_event_id and event.calendar_integration_id:
        await enqueue(
            session,
            "calendar.remote_delete",
            {
                "integration_id": str(event.calendar_integration_id),
                "external_event_id": event.external_event_id,
            },
            organization_id=event.organization_id,
        )
    await audit.record(
        session,
        action="delete",
        resource_type="calendar_event",
        resource_id=event.id,
        organization_id=event.organization_id,
        user_id=principal.user_id,
        changes={"title": [event.title, None]},
    )
    await session.delete(event)
    await session.flush()


# --- the member's ICS feed -------------------------------------------------------------------


async def feed_exists(session: AsyncSession, principal: Principal) -> bool:
    row = await session.scalar(
        select(CalendarFeed.id).where(
            CalendarFeed.organization_id == principal.org(),
            CalendarFeed.user_id == principal.user_id,
        )
    )
    return row is not None


async def regenerate_feed(session: AsyncSession, principal: Principal) -> str:
    """A new secret feed token (the old URL stops working). Shown once: only its hash is kept."""
    principal.require("leads:read")
    await revoke_feed(session, principal)
    token = new_token(24)
    await save_new(
        session,
        CalendarFeed(
            organization_id=principal.org(), user_id=principal.user_id, token_hash=token_hash(token)
        ),
    )
    return token


async def revoke_feed(session: AsyncSession, principal: Principal) -> None:
    await session.execute(
        delete(CalendarFeed).where(
            CalendarFeed.organization_id == principal.org(),
            CalendarFeed.user_id == principal.user_id,
        )
    )


async def feed_events(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
) -> list[CalendarEvent]:
    """The feed's meetings: from 30 days ago on, at most 1000 (tenant already set)."""
    since = clock.now() - timedelta(days=30)
    rows = await session.scalars(
        select(CalendarEvent)
        .where(
            CalendarEvent.organization_id == organization_id,
            CalendarEvent.created_by == user_id,
            CalendarEvent.end_time >= since,
        )
        .order_by(CalendarEvent.start_time)
        .limit(1000)
    )
    return list(rows.all())
