"""Notification jobs.

- ``notifications.email``: the e-mail of one notification whose member chose "e-mail now";
  nothing when it was read meanwhile or the member can no longer see its lead.
- ``notifications.daily`` (periodic, daily, system): one ``notifications.digest`` per
  organization with something waiting; the digest sends ONE e-mail per member with their
  waiting notifications (only those about leads they can still see), once per day.
- ``notifications.tasks`` (periodic, every 15 minutes, system): one
  ``notifications.tasks_due`` per organization with open tasks; it notifies each task's
  owner once per task and due time when the task is due within the hour or overdue.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select, text, update

from lovedcrm.auth.models import User
from lovedcrm.core import clock
from lovedcrm.core.mail import Mailer, get_mailer
from lovedcrm.db.tenant import after_commit, set_tenant
from lovedcrm.jobs.periodic import every, period_start
from lovedcrm.jobs.queue import BULK_PRIORITY, JobContext, enqueue, job_handler
from lovedcrm.leads.access import organization_settings
from lovedcrm.leads.models import Lead, LeadActivity
from lovedcrm.notifications import service
from lovedcrm.notifications.models import Notification
from lovedcrm.web.i18n import DEFAULT_LOCALE, catalog_name, translations

DIGEST_EVERY = timedelta(days=1)
TASKS_EVERY = timedelta(minutes=15)
DUE_SOON = timedelta(hours=1)


class EmailPayload(BaseModel):
    notification_id: uuid.UUID


class OrgPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: str = ""


class SystemPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def _gettext(ctx: JobContext, organization_id: uuid.UUID) -> Any:
    org_settings = await organization_settings(ctx.session, organization_id)
    locale = catalog_name(str(org_settings.get("locale") or "")) or DEFAULT_LOCALE
    return translations(locale).gettext


def _line(ctx: JobContext, n: Notification, gettext: Any) -> str:
    line = service.text_of(n.notification_type, n.data or {}, gettext)
    if n.link:
        line += f"\n  {ctx.settings.base_url.rstrip('/')}{n.link}"
    return line


@job_handler("notifications.email", EmailPayload, max_attempts=5, timeout_seconds=60)
async def send_email(ctx: JobContext, payload: EmailPayload) -> dict[str, Any] | None:
    n = await ctx.session.get(Notification, payload.notification_id)
    if n is None or n.read_at is not None or n.emailed_at is not None:
        return {"skipped": "read, sent or deleted"}
    if n.lead_id is not None and not await service.can_see_lead(
        ctx.session, n.organization_id, n.user_id, n.lead_id
    ):
        return {"skipped": "no longer sees the lead"}
    user = await ctx.session.get(User, n.user_id)
    if user is None or not user.email:
        return {"skipped": "no address"}
    gettext = await _gettext(ctx, n.organization_id)
    subject = service.text_of(n.notification_type, n.data or {}, gettext)[:200]
    body = _line(ctx, n, gettext)
    n.emailed_at = clock.now()
    mailer, to = get_mailer(ctx.settings), user.email
    after_commit(ctx.session, lambda: mailer.send(to, subject, body))
    return {"sent": to}


async def _fan_out(ctx: JobContext, job_type: str, every_: timedelta) -> dict[str, Any]:
    period = period_start(clock.now(), every_).isoformat()
    orgs = (
        await ctx.session.execute(text("SELECT organization_id FROM lovedcrm_notification_orgs()"))
    ).scalars()
    queued = 0
    for organization_id in list(orgs):
        await set_tenant(ctx.session, organization_id)
        queued += (
            await enqueue(
                ctx.session,
                job_type,
                OrgPayload(period=period),
                organization_id=organization_id,
                priority=BULK_PRIORITY,
                dedupe_key=f"{job_type}:{organization_id}:{period}",
            )
            is not None
        )
    await set_tenant(ctx.session, None)
    return {"queued": queued}


@job_handler("notifications.daily", SystemPayload, max_attempts=3, timeout_seconds=600)
async def daily(ctx: JobContext, payload: SystemPayload) -> dict[str, Any] | None:
    return await _fan_out(ctx, "notifications.digest", DIGEST_EVERY)


@job_handler("notifications.tasks", SystemPayload, max_attempts=3, timeout_seconds=600)
async def tasks(ctx: JobContext, payload: SystemPayload) -> dict[str, Any] | None:
    return await _fan_out(ctx, "notifications.tasks_due", TASKS_EVERY)


@job_handler("notifications.digest", OrgPayload, max_attempts=3, timeout_seconds=600)
async def digest(ctx: JobContext, payload: OrgPayload) -> dict[str, Any] | None:
    """One e-mail per member with their waiting notifications (those already read in the
    app, and those about a lead they can no longer see, are dropped from it); then nothing
    waits any more."""
    org_id = ctx.organization_id
    assert org_id is not None
    waiting = list(
        (
            await ctx.session.execute(
                select(Notification)
                .where(Notification.organization_id == org_id, Notification.digest_pending)
                .order_by(Notification.user_id, Notification.created_at)
            )
        ).scalars()
    )
    by_user: dict[uuid.UUID, list[Notification]] = {}
    for n in waiting:
        by_user.setdefault(n.user_id, []).append(n)
    gettext = await _gettext(ctx, org_id)
    mailer, sent = get_mailer(ctx.settings), 0
    for user_id, items in by_user.items():
        shown = [
            n
            for n in items
            if n.read_at is None
            and (
                n.lead_id is None
                or await service.can_see_lead(ctx.session, org_id, user_id, n.lead_id)
            )
        ]
        user = await ctx.session.get(User, user_id)
        if shown and user is not None and user.email:
            subject = gettext("Your Loved CRM daily digest: %(n)s notifications") % {
                "n": len(shown)
            }
            body = "\n\n".join(_line(ctx, n, gettext) for n in shown)
            after_commit(ctx.session, _sender(mailer, user.email, subject, body))
            sent += 1
    if waiting:
        await ctx.session.execute(
            update(Notification)
            .where(Notification.id.in_([n.id for n in waiting]))
            .values(digest_pending=False, emailed_at=clock.now())
            .execution_options(synchronize_session=False)
        )
    return {"emails": sent}


def _sender(mailer: Mailer, to: str, subject: str, body: str) -> Callable[[], Awaitable[None]]:
    return lambda: mailer.send(to, subject, body)


def _due(metadata: dict[str, Any]) -> datetime | None:
    try:
        due = datetime.fromisoformat(str(metadata.get("due_at")))
    except ValueError:
        return None
    return due if due.tzinfo is not None else None


@job_handler("notifications.tasks_due", OrgPayload, max_attempts=3, timeout_seconds=600)
async def tasks_due(ctx: JobContext, payload: OrgPayload) -> dict[str, Any] | None:
    """Each open task due within the hour (or overdue) notifies its owner once per due time."""
    org_id = ctx.organization_id
    assert org_id is not None
    horizon = clock.now() + DUE_SOON
    rows = (
        await ctx.session.execute(
            select(LeadActivity, Lead)
            .join(Lead, (Lead.organization_id == org_id) & (Lead.id == LeadActivity.lead_id))
            .where(
                LeadActivity.organization_id == org_id,
                LeadActivity.activity_type == "task",
                LeadActivity.metadata_["due_at"].isnot(None),
            )
        )
    ).all()
    made = 0
    for task, lead in rows:
        meta = task.metadata_ or {}
        due = _due(meta)
        owner = task.user_id or lead.assigned_to
        if meta.get("done") is True or due is None or due > horizon or owner is None:
            continue
        made += (
            await service.notify(
                ctx.session,
                org_id,
                owner,
                service.TASK_DUE,
                data={"lead": lead.full_name, "title": task.title},
                lead_id=lead.id,
                dedupe_key=f"task:{task.id}:{due.isoformat()}",
            )
            is not None
        )
    return {"notified": made}


every("notifications-digest", "notifications.daily", DIGEST_EVERY)
every("notifications-tasks", "notifications.tasks", TASKS_EVERY)
