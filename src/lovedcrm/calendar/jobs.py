"""Agenda jobs: push a meeting to Google, pull a member's Google calendar, delete a removed
meeting there, and remind the member by e-mail before a meeting. Every 15 minutes a system
job (``calendar.pull_all``) queues one pull per connected Google integration (bulk priority,
one per integration and period).

Google 429/5xx and network failures are retried with backoff (``RetryLater``); a revoked
grant marks the integration "error" with the reason (the meeting stays in the CRM, its
``sync_state`` "failed") and the job ends: reconnecting queues the push again."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict
from sqlalchemy import text

from lovedcrm.auth.authentication import principal_for_member
from lovedcrm.auth.models import User
from lovedcrm.calendar import sync
from lovedcrm.calendar.google import GoogleClient, GoogleError
from lovedcrm.calendar.models import CalendarEvent, CalendarIntegration
from lovedcrm.core import clock
from lovedcrm.core.errors import AppError
from lovedcrm.core.mail import get_mailer
from lovedcrm.db.tenant import after_commit, set_tenant
from lovedcrm.jobs.periodic import every, period_start
from lovedcrm.jobs.queue import (
    BULK_PRIORITY,
    JobContext,
    RetryLater,
    backoff_seconds,
    enqueue,
    job_handler,
)
from lovedcrm.messaging import whatsapp

PULL_EVERY = timedelta(minutes=15)


class PushPayload(BaseModel):
    event_id: uuid.UUID
    action: str


class PullPayload(BaseModel):
    integration_id: uuid.UUID


class RemoteDeletePayload(BaseModel):
    integration_id: uuid.UUID
    external_event_id: str


class ReminderPayload(BaseModel):
    event_id: uuid.UUID
    start_time: datetime


def _retry(ctx: JobContext, exc: GoogleError) -> RetryLater:
    wait = exc.retry_after or backoff_seconds(ctx.attempt, base=30.0)
    return RetryLater(wait, str(exc))


@job_handler("calendar.push", PushPayload, max_attempts=8, timeout_seconds=60)
async def push_event(ctx: JobContext, payload: PushPayload) -> dict[str, Any] | None:
    event = await ctx.session.get(CalendarEvent, payload.event_id)
    if event is None:
        return {"skipped": "meeting deleted"}
    client = GoogleClient(ctx.settings)
    try:
        await sync.push(ctx.session, ctx.settings, event, payload.action, client)
    except GoogleError as exc:
        raise _retry(ctx, exc) from exc
    finally:
        await client.aclose()
    return {"sync_state": event.sync_state, "external_event_id": event.external_event_id}


@job_handler("calendar.pull", PullPayload, max_attempts=8, timeout_seconds=300)
async def pull_calendar(ctx: JobContext, payload: PullPayload) -> dict[str, Any] | None:
    integration = await ctx.session.get(CalendarIntegration, payload.integration_id)
    if integration is None:
        return {"skipped": "disconnected"}
    client = GoogleClient(ctx.settings)
    try:
        counts = await sync.pull(ctx.session, ctx.settings, integration, client)
    except GoogleError as exc:
        if exc.transient:
            raise _retry(ctx, exc) from exc
        sync.mark_failed(integration, str(exc))
        return {"failed": str(exc)}
    finally:
        await client.aclose()
    return dict(counts)


@job_handler("calendar.remote_delete", RemoteDeletePayload, max_attempts=8, timeout_seconds=60)
async def remote_delete(ctx: JobContext, payload: RemoteDeletePayload) -> dict[str, Any] | None:
    integration = await ctx.session.get(CalendarIntegration, payload.integration_id)
    if integration is None or not integration.calendar_id:
        return {"skipped": "disconnected"}
    client = GoogleClient(ctx.settings)
    try:
        token = await sync.access_token(ctx.settings, integration, client)
        await client.delete_event(token, integration.calendar_id, payload.external_event_id)
    except GoogleError as exc:
        if exc.transient:
            raise _retry(ctx, exc) from exc
        return {"failed": str(exc)}
    finally:
        await client.aclose()
    return {"deleted": payload.external_event_id}


@job_handler("calendar.reminder", ReminderPayload, max_attempts=3, timeout_seconds=60)
async def remind(ctx: JobContext, payload: ReminderPayload) -> dict[str, Any] | None:
    """E-mail the member before the meeting, unless it moved, closed or was deleted."""
    event = await ctx.session.get(CalendarEvent, payload.event_id)
    if event is None or event.status != "scheduled" or event.start_time != payload.start_time:
        return {"skipped": "meeting moved, closed or deleted"}
    owner = await ctx.session.get(User, event.created_by)
    if owner is None:
        return {"skipped": "no owner"}
    local = event.start_time.astimezone(ZoneInfo(event.timezone))
    subject = f"Reminder: {event.title} at {local:%H:%M} ({event.timezone})"
    body = "\n".join(
        [
            subject,
            f"{local:%Y-%m-%d %H:%M}",
            *([f"Video: {event.meeting_url}"] if event.meeting_url else []),
        ]
    )
    mailer, to = get_mailer(ctx.settings), owner.email
    after_commit(ctx.session, lambda: mailer.send(to, subject, body))
    return {"reminded": to}


class WhatsappReminderPayload(BaseModel):
    event_id: uuid.UUID
    start_time: datetime
    template_id: uuid.UUID
    minutes: int


@job_handler(
    "calendar.whatsapp_reminder", WhatsappReminderPayload, max_attempts=3, timeout_seconds=60
)
async def whatsapp_remind(
    ctx: JobContext, payload: WhatsappReminderPayload
) -> dict[str, Any] | None:
    """Send the approved template to the meeting's lead through messaging (as the meeting's
    owner), unless the meeting moved, closed or was deleted or its reminder changed."""
    event = await ctx.session.get(CalendarEvent, payload.event_id)
    setting = (event.whatsapp_reminder or {}) if event is not None else {}
    if (
        event is None
        or event.status != "scheduled"
        or event.start_time != payload.start_time
        or event.lead_id is None
        or setting.get("template_id") != str(payload.template_id)
        or setting.get("minutes") != payload.minutes
    ):
        return {"skipped": "meeting moved, closed or deleted, or its reminder changed"}
    principal = await principal_for_member(ctx.session, event.organization_id, event.created_by)
    if principal is None:
        return {"skipped": "the meeting's owner is no longer a member"}
    try:
        message = await whatsapp.send_message(
            ctx.session,
            principal,
            event.lead_id,
            template_id=payload.template_id,
            context_type="meeting_reminder",
        )
    except AppError as exc:
        return {"failed": exc.detail}
    message.metadata_ = {
        **(message.metadata_ or {}),
        "calendar_event_id": str(event.id),
    }
    await ctx.session.flush()
    return {"message_id": str(message.id)}


# --- periodic: pull every connected Google calendar ------------------------------------------


class SystemPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


@job_handler("calendar.pull_all", SystemPayload, max_attempts=3, timeout_seconds=600)
async def pull_all(ctx: JobContext, payload: SystemPayload) -> dict[str, Any] | None:
    """Queue one ``calendar.pull`` per connected integration (signed in to Google, not in
    error: a revoked grant waits for the member to reconnect). A system job sees no tenant
    row: the integrations come from ``lovedcrm_calendar_pull_targets()`` (migration 0018,
    answers system jobs only) in one statement, and each pull is queued under its
    organization."""
    period = period_start(clock.now(), PULL_EVERY).isoformat()
    targets = (
        await ctx.session.execute(
            text("SELECT organization_id, id FROM lovedcrm_calendar_pull_targets()")
        )
    ).all()
    queued = 0
    current: uuid.UUID | None = None
    for organization_id, integration_id in targets:
        if organization_id != current:
            await set_tenant(ctx.session, organization_id)
            current = organization_id
        queued += (
            await enqueue(
                ctx.session,
                "calendar.pull",
                PullPayload(integration_id=integration_id),
                organization_id=organization_id,
                priority=BULK_PRIORITY,
                dedupe_key=f"calendar.pull:{integration_id}:{period}",
            )
            is not None
        )
    await set_tenant(ctx.session, None)
    return {"queued": queued}


every("calendar-pull", "calendar.pull_all", PULL_EVERY)
