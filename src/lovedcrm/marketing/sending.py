"""Sending an e-mail campaign (the jobs' work): building its recipients (consent and the
suppression list decide; the others are counted), then throttled batches over one SMTP
connection each, one batch in flight per campaign, at bulk priority (see ``campaigns``)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.config import Settings
from lovedcrm.core import clock
from lovedcrm.core.principal import Principal
from lovedcrm.jobs.queue import BULK_PRIORITY, enqueue
from lovedcrm.leads import consent
from lovedcrm.leads.models import Lead
from lovedcrm.marketing import campaigns, mailer
from lovedcrm.marketing.models import CampaignRecipient, EmailCampaign
from lovedcrm.organizations.models import Organization


async def start(session: AsyncSession, principal: Principal, row: EmailCampaign) -> dict[str, Any]:
    """Build the recipients: the audience's leads with an e-mail, minus the suppressed and
    those without consent (counted); then queue the first batch."""
    rows = await campaigns.audience_leads(
        session, principal, row.audience, limit=campaigns.AUDIENCE_LIMIT
    )
    by_email: dict[str, Any] = {}
    for r in rows:
        if r.email and r.email.lower() not in by_email:
            by_email[r.email.lower()] = r
    candidates = list(by_email.values())
    allowed = await consent.may_contact(
        session, row.organization_id, [r.id for r in candidates], "email_marketing"
    )
    suppressed = await campaigns.suppressed(session, row.organization_id, set(by_email))
    no_consent = [r for r in candidates if r.id not in allowed]
    chosen = [r for r in candidates if r.id in allowed and r.email.lower() not in suppressed]
    row.skipped_no_consent = len(no_consent)
    row.skipped_suppressed = len([r for r in candidates if r.id in allowed]) - len(chosen)
    for offset in range(0, len(chosen), 2000):
        chunk = chosen[offset : offset + 2000]
        await session.execute(
            insert(CampaignRecipient)
            .values(
                [
                    {
                        "organization_id": row.organization_id,
                        "campaign_id": row.id,
                        "lead_id": r.id,
                        "email": r.email.lower(),
                        "status": "queued",
                    }
                    for r in chunk
                ]
            )
            .on_conflict_do_nothing(constraint="uq_campaign_recipients_lead")
        )
    row.status = "sending"
    row.started_at = clock.now()
    await session.flush()
    await enqueue(
        session,
        "marketing.send_batch",
        {"campaign_id": row.id},
        organization_id=row.organization_id,
        priority=BULK_PRIORITY,
    )
    return {
        "recipients": len(chosen),
        "skipped_no_consent": row.skipped_no_consent,
        "skipped_suppressed": row.skipped_suppressed,
    }


def batch_interval(size: int = campaigns.BATCH_SIZE) -> timedelta:
    return timedelta(seconds=size * 3600 / campaigns.SEND_RATE_PER_HOUR)


async def send_batch(
    session: AsyncSession, settings: Settings, campaign_id: uuid.UUID
) -> dict[str, Any]:
    """Send the next ``campaigns.BATCH_SIZE`` queued recipients; queue the next batch after the
    throttle's interval, or mark the campaign sent."""
    row = await session.get(EmailCampaign, campaign_id)
    if row is None or row.status != "sending":
        return {"skipped": "campaign not sending"}
    picked = list(
        (
            await session.execute(
                select(CampaignRecipient)
                .where(
                    CampaignRecipient.campaign_id == row.id,
                    CampaignRecipient.status == "queued",
                )
                .order_by(CampaignRecipient.id)
                .limit(campaigns.BATCH_SIZE)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
    if not picked:
        row.status = "sent"
        row.finished_at = clock.now()
        return {"sent": 0, "finished": True}
    leads = {
        lead.id: lead
        for lead in (
            await session.execute(
                select(Lead.id, Lead.full_name, Lead.email, Lead.company).where(
                    Lead.organization_id == row.organization_id,
                    Lead.id.in_([p.lead_id for p in picked]),
                    # An erasure asked for since the recipients were built: not mailed, even
                    # before the erasure job has run.
                    Lead.erased_at.is_(None),
                )
            )
        ).all()
    }
    # Suppressed since the recipients were built (an unsubscribe during the send).
    suppressed = await campaigns.suppressed(session, row.organization_id, {p.email for p in picked})
    org = await session.get(Organization, row.organization_id)
    items: list[mailer.Outgoing] = []
    for p in picked:
        lead = leads.get(p.lead_id)
        if lead is None or p.email in suppressed:
            p.status = "skipped"
            continue
        rendered = campaigns.render(row, lead, org, settings=settings, recipient_id=p.id)
        items.append(
            mailer.Outgoing(
                key=str(p.id),
                to=p.email,
                subject=rendered.subject,
                text=rendered.text,
                html=rendered.html,
                unsubscribe_url=campaigns.link(settings, "unsubscribe", row.organization_id, p.id),
                headers={"X-Campaign-Id": str(row.id)},
            )
        )
    began = time.monotonic()
    outcomes = {o.key: o for o in await mailer.send_many(settings, items)}
    took = timedelta(seconds=time.monotonic() - began)
    now = clock.now()
    bounced: list[str] = []
    for p in picked:
        outcome = outcomes.get(str(p.id))
        if outcome is None:
            continue
        if outcome.ok:
            p.status, p.sent_at = "sent", now
        elif outcome.hard_bounce:
            p.status, p.bounced_at, p.error = "bounced", now, outcome.error
            bounced.append(p.email)
        else:
            p.status, p.error = "failed", outcome.error
    await session.flush()
    for email in bounced:
        await campaigns.suppress(session, row.organization_id, email, "bounce", row.id)
    # The throttle is the organization's: its campaigns sending at once share it.
    sending = await session.scalar(
        select(func.count())
        .select_from(EmailCampaign)
        .where(
            EmailCampaign.organization_id == row.organization_id,
            EmailCampaign.status == "sending",
        )
    )
    await enqueue(
        session,
        "marketing.send_batch",
        {"campaign_id": row.id},
        organization_id=row.organization_id,
        # The throttle spaces batch starts: what this one took counts against the interval.
        delay=max(timedelta(0), batch_interval(len(picked)) * max(1, int(sending or 0)) - took),
        priority=BULK_PRIORITY,
    )
    return {"sent": sum(1 for o in outcomes.values() if o.ok), "batch": len(picked)}
