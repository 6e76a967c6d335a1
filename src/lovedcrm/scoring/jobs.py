"""Scoring's jobs: rescore a lead (debounced), rescore an organization, train its model;
nightly, every organization's open leads are rescored, and weekly every organization with
enough outcomes retrains (system jobs that queue one job per organization)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core import clock
from lovedcrm.db.tenant import set_tenant
from lovedcrm.jobs.periodic import every, period_start
from lovedcrm.jobs.queue import (
    BULK_PRIORITY,
    JobContext,
    Outcome,
    PermanentFailure,
    batch_job_handler,
    enqueue,
    job_handler,
)
from lovedcrm.scoring import retraining, rules, service
from lovedcrm.scoring.service import (
    RESCORE_LEAD,
    RESCORE_ORGANIZATION,
    TRAIN,
    LeadPayload,
    OrganizationPayload,
    TrainPayload,
)

NIGHTLY = "scoring.nightly"
RETRAIN_ALL = "scoring.retrain_all"


def _org(ctx: JobContext) -> uuid.UUID:
    if ctx.organization_id is None:
        raise PermanentFailure("a scoring job belongs to an organization")
    return ctx.organization_id


def _secret(ctx: JobContext) -> str:
    return ctx.settings.secret_key.get_secret_value()


@batch_job_handler(RESCORE_LEAD, LeadPayload, max_attempts=3, timeout_seconds=120, batch=50)
async def rescore_lead(ctxs: list[JobContext], payloads: list[LeadPayload]) -> list[Outcome]:
    """The leads of a batch scored together: their features read in one pass, not one
    pass per lead (a burst of inbound messages queues one rescore per new lead)."""
    ctx = ctxs[0]
    lead_ids = list(dict.fromkeys(p.lead_id for p in payloads))
    scored = await service.rescore(ctx.session, _org(ctx), _secret(ctx), lead_ids)
    return [{"scored": scored, "together": len(lead_ids)} for _ in payloads]


@job_handler(RESCORE_ORGANIZATION, OrganizationPayload, max_attempts=3, timeout_seconds=1800)
async def rescore_organization(
    ctx: JobContext, payload: OrganizationPayload
) -> dict[str, Any] | None:
    return {"scored": await service.rescore(ctx.session, _org(ctx), _secret(ctx))}


@job_handler(TRAIN, TrainPayload, max_attempts=1, timeout_seconds=1800)
async def train(ctx: JobContext, payload: TrainPayload) -> dict[str, Any] | None:
    return await retraining.train_organization(ctx.session, _org(ctx), _secret(ctx))


# --- periodic: one job per organization --------------------------------------------------------


class SystemPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def _organizations(session: AsyncSession) -> list[uuid.UUID]:
    """Every organization (a system job sees none under row-level security: a function of
    migration 0011 lists them, to system jobs only)."""
    rows = await session.execute(text("SELECT id FROM lovedcrm_scoring_organizations()"))
    return [r.id for r in rows]


@job_handler(NIGHTLY, SystemPayload, max_attempts=3, timeout_seconds=600)
async def nightly(ctx: JobContext, payload: SystemPayload) -> dict[str, Any] | None:
    day = period_start(clock.now(), timedelta(days=1)).date().isoformat()
    queued = 0
    for organization_id in await _organizations(ctx.session):
        await set_tenant(ctx.session, organization_id)
        queued += (
            await enqueue(
                ctx.session,
                RESCORE_ORGANIZATION,
                OrganizationPayload(reason="nightly"),
                organization_id=organization_id,
                dedupe_key=f"scoring:nightly:{organization_id}:{day}",
                priority=BULK_PRIORITY,
            )
            is not None
        )
    await set_tenant(ctx.session, None)
    return {"queued": queued}


@job_handler(RETRAIN_ALL, SystemPayload, max_attempts=3, timeout_seconds=600)
async def retrain_all(ctx: JobContext, payload: SystemPayload) -> dict[str, Any] | None:
    week = period_start(clock.now(), timedelta(days=7)).date().isoformat()
    queued = 0
    for organization_id in await _organizations(ctx.session):
        await set_tenant(ctx.session, organization_id)
        counts = await service.outcome_counts(ctx.session, organization_id)
        if rules.needed(counts.won, counts.lost) != (0, 0):
            continue
        queued += (
            await enqueue(
                ctx.session,
                TRAIN,
                TrainPayload(),
                organization_id=organization_id,
                dedupe_key=f"scoring:retrain:{organization_id}:{week}",
                priority=BULK_PRIORITY,
            )
            is not None
        )
    await set_tenant(ctx.session, None)
    return {"queued": queued}


every("scoring-nightly", NIGHTLY, timedelta(days=1))
every("scoring-retrain", RETRAIN_ALL, timedelta(days=7))
