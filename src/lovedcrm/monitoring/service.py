"""What the Sistema page shows, for one organization (``settings:manage``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.billing.models import Subscription
from lovedcrm.calendar.models import CalendarIntegration
from lovedcrm.calls.models import CallEvent, VoipConfig
from lovedcrm.core import clock
from lovedcrm.core.principal import Principal
from lovedcrm.jobs.models import BackgroundJob
from lovedcrm.marketing.models import AdLeadReceipt, MarketingIntegration
from lovedcrm.messaging.models import Message, WhatsappConfig
from lovedcrm.webhooks.models import WebhookDelivery, WebhookSubscription

WAITING = ("pending", "retrying")
# A subscription's status as a provider's: payment trouble is an error, an end is disabled.
_BILLING_STATUS = {"past_due": "error", "unpaid": "error", "canceled": "disabled"}


@dataclass
class Provider:
    kind: str  # whatsapp | telephony | calendar | webhook | ads | billing
    name: str
    status: str  # connected | disconnected | error | active | disabled
    last_webhook_at: datetime | None = None
    detail: str = ""


@dataclass
class SystemStatus:
    queue: list[dict[str, Any]] = field(default_factory=list)
    failing: list[BackgroundJob] = field(default_factory=list)
    providers: list[Provider] = field(default_factory=list)
    jobs_today: int = 0
    jobs_failed_today: int = 0
    deliveries_today: int = 0
    deliveries_failed_today: int = 0

    @property
    def error_rate(self) -> float:
        total = self.jobs_today + self.deliveries_today
        failed = self.jobs_failed_today + self.deliveries_failed_today
        return failed / total if total else 0.0


async def system_status(session: AsyncSession, principal: Principal) -> SystemStatus:
    principal.require("settings:manage")
    org = principal.org()
    now = clock.now()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    out = SystemStatus()
    first = func.min(func.coalesce(BackgroundJob.scheduled_for, BackgroundJob.created_at))
    for job_type, n, oldest in (
        await session.execute(
            select(BackgroundJob.job_type, func.count(), first)
            .where(
                BackgroundJob.organization_id == org,
                func.coalesce(BackgroundJob.status, "pending").in_(WAITING),
            )
            .group_by(BackgroundJob.job_type)
            .order_by(BackgroundJob.job_type)
        )
    ).all():
        age = max(timedelta(0), now - oldest) if oldest is not None else timedelta(0)
        out.queue.append(
            {"job_type": job_type, "count": n, "oldest_minutes": int(age.total_seconds() // 60)}
        )
    out.failing = list(
        (
            await session.execute(
                select(BackgroundJob)
                .where(BackgroundJob.organization_id == org, BackgroundJob.status == "failed")
                .order_by(BackgroundJob.completed_at.desc().nulls_last())
                .limit(10)
            )
        ).scalars()
    )
    failed = func.coalesce(BackgroundJob.status, "") == "failed"
    jobs_row = (
        await session.execute(
            select(func.count(), func.count(case((failed, 1)))).where(
                BackgroundJob.organization_id == org,
                BackgroundJob.completed_at >= day,
                BackgroundJob.status.in_(("completed", "failed")),
            )
        )
    ).one()
    out.jobs_today, out.jobs_failed_today = int(jobs_row[0]), int(jobs_row[1])
    deliveries = (
        await session.execute(
            select(func.count(), func.count(case((WebhookDelivery.succeeded.is_(False), 1)))).where(
                WebhookDelivery.organization_id == org, WebhookDelivery.created_at >= day
            )
        )
    ).one()
    out.deliveries_today, out.deliveries_failed_today = int(deliveries[0]), int(deliveries[1])
    out.providers = await providers(session, principal)
    return out


async def providers(session: AsyncSession, principal: Principal) -> list[Provider]:
    org = principal.org()
    found: list[Provider] = []
    last_message = (
        await session.execute(
            select(func.max(Message.created_at)).where(
                Message.organization_id == org, Message.direction == "inbound"
            )
        )
    ).scalar()
    for cfg in (
        await session.execute(select(WhatsappConfig).where(WhatsappConfig.organization_id == org))
    ).scalars():
        status = cfg.connection_status or "disconnected"
        found.append(
            Provider(
                "whatsapp",
                cfg.provider_type,
                status if cfg.is_active else "disabled",
                last_message,
            )
        )
    last_call = dict(
        (
            await session.execute(
                select(CallEvent.provider_type, func.max(CallEvent.created_at))
                .where(CallEvent.organization_id == org)
                .group_by(CallEvent.provider_type)
            )
        ).all()
    )
    for voip in (
        await session.execute(select(VoipConfig).where(VoipConfig.organization_id == org))
    ).scalars():
        found.append(
            Provider(
                "telephony",
                voip.provider_type,
                "active" if voip.is_active else "disabled",
                last_call.get(voip.provider_type),
            )
        )
    for cal in (
        await session.execute(
            select(CalendarIntegration).where(CalendarIntegration.organization_id == org)
        )
    ).scalars():
        found.append(
            Provider("calendar", cal.provider, cal.sync_status or "active", cal.last_sync_at)
        )
    last_ad_lead = dict(
        (
            await session.execute(
                select(AdLeadReceipt.integration_id, func.max(AdLeadReceipt.created_at))
                .where(AdLeadReceipt.organization_id == org)
                .group_by(AdLeadReceipt.integration_id)
            )
        ).all()
    )
    for ads in (
        await session.execute(
            select(MarketingIntegration).where(MarketingIntegration.organization_id == org)
        )
    ).scalars():
        found.append(
            Provider(
                "ads",
                f"{ads.provider} · {ads.account_name or ads.account_id or ''}".strip(" ·")[:60],
                "error" if ads.sync_error else (ads.sync_status or "active"),
                last_ad_lead.get(ads.id),
                (ads.sync_error or "")[:200],
            )
        )
    paid = (
        await session.execute(
            select(Subscription).where(
                Subscription.organization_id == org, Subscription.stripe_customer_id.is_not(None)
            )
        )
    ).scalar_one_or_none()
    if paid is not None:  # Stripe: its webhooks change the subscription
        found.append(
            Provider("billing", "Stripe", _BILLING_STATUS.get(paid.status, "active"),
                     paid.updated_at, paid.status)
        )  # fmt: skip
    for sub in (
        await session.execute(
            select(WebhookSubscription).where(WebhookSubscription.organization_id == org)
        )
    ).scalars():
        found.append(
            Provider(
                "webhook",
                sub.webhook_url[:60],
                "active" if sub.is_active else "disabled",
                sub.last_triggered_at,
                str(sub.failure_count or 0),
            )
        )
    return found
