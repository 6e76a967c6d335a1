"""Billing's background work: an hourly sweep (trials that ended without a subscription fall
back to Starter; one metering job per organization), the metering job (this month's usage
into ``usage_metrics``, aggregated from what the other domains keep) and the report of
metered usage to Stripe (the increase since the last report, with an idempotent identifier,
so a retried job never counts twice)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import text

from lovedcrm.billing import service
from lovedcrm.billing import usage as metering
from lovedcrm.billing.providers.base import ProviderError
from lovedcrm.core import clock
from lovedcrm.db.tenant import set_tenant
from lovedcrm.jobs.periodic import every
from lovedcrm.jobs.queue import JobContext, PermanentFailure, RetryLater, enqueue, job_handler

SWEEP = "billing.sweep"
METER = "billing.meter"
SWEEP_EVERY = timedelta(hours=1)
# Metered with Stripe (meter event names): the month's value grows; the increase is sent.
REPORTED = ("api_calls", "ai_tokens", "call_minutes", "messages_sent")


class NoPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def _organizations(ctx: JobContext) -> list[uuid.UUID]:
    # Every organization, to system jobs only (migration 0011's function).
    rows = await ctx.session.execute(text("SELECT id FROM lovedcrm_scoring_organizations()"))
    return [r.id for r in rows]


@job_handler(SWEEP, NoPayload, max_attempts=3, timeout_seconds=600)
async def sweep(ctx: JobContext, payload: NoPayload) -> dict[str, Any] | None:
    hour = clock.now().strftime("%Y-%m-%dT%H")
    expired = queued = 0
    for org_id in await _organizations(ctx):
        await set_tenant(ctx.session, org_id)
        expired += await service.expire_trial(ctx.session, org_id)
        queued += (
            await enqueue(
                ctx.session,
                METER,
                NoPayload(),
                organization_id=org_id,
                dedupe_key=f"billing:meter:{org_id}:{hour}",
            )
            is not None
        )
    await set_tenant(ctx.session, None)
    return {"trials_expired": expired, "metering_queued": queued}


@job_handler(METER, NoPayload, max_attempts=5, timeout_seconds=300)
async def meter(ctx: JobContext, payload: NoPayload) -> dict[str, Any] | None:
    org_id = ctx.organization_id
    if org_id is None:
        raise PermanentFailure("metering needs an organization")
    snap = await metering.record(ctx.session, org_id)
    sub = await service.subscription_of(ctx.session, org_id)
    if (
        ctx.settings.billing_provider != "stripe"
        or sub is None
        or not sub.stripe_customer_id
        or sub.status not in service.LIVE_STATUSES
    ):
        return {"recorded": len(metering.METRICS), "reported": 0}
    reported = 0
    async with service.http_client(ctx.settings) as client:
        provider = service.provider_for(ctx.settings, client)
        for metric in REPORTED:
            row = await metering.stored(ctx.session, org_id, metric, snap.period_start)
            if row is None:
                continue
            done = (row.metadata or {}).get("reported")
            done = done if isinstance(done, int) else 0
            increase = int(row.metric_value) - done
            if increase <= 0:
                continue
            identifier = f"{org_id}:{metric}:{snap.period_start.date()}:{row.metric_value}"
            try:
                await provider.report_usage(
                    sub.stripe_customer_id, f"lovedcrm_{metric}", increase, clock.now(), identifier
                )
            except ProviderError as exc:
                if exc.transient:
                    raise RetryLater(min(300.0, 30.0 * ctx.attempt), exc.message) from exc
                raise PermanentFailure(exc.message) from exc
            await metering.mark_reported(ctx.session, row.id, int(row.metric_value))
            reported += 1
    return {"recorded": len(metering.METRICS), "reported": reported}


every("billing-sweep", SWEEP, SWEEP_EVERY)
