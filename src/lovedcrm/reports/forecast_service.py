"""The revenue forecast of an organization (``reports.forecast`` does the computing).

What it reads, all through the lead visibility of the principal (a sales member: their own
deals, history included; managers and admins: all):

- opened = the lead's ``created_at``; won = ``status = 'converted'`` at ``converted_at`` with
  its ``estimated_value``; lost = ``status = 'lost'`` at its ``lead_lost`` analytics event
  (else its last update); open = ``status = 'active'``.
- an open deal's win probability: the calibrated probability the organization's trained
  scoring model wrote (``probability_percentage`` of a lead scored since that model took over,
  ``scoring.service.calibrated_since``; under the rules that column is what a person typed and
  is not used), else its stage's historical win rate among the organization's closed deals that went
  through that stage (stage changes in the timeline), pulled towards the overall rate by
  ``STAGE_PRIOR`` deals, else the life table's rate for its age.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from sqlalchemy import String, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core import clock
from lovedcrm.core.principal import Principal
from lovedcrm.leads.access import organization_settings, visible
from lovedcrm.leads.models import Lead, LeadActivity
from lovedcrm.reports import forecast as fc
from lovedcrm.reports.models import AnalyticsEvent
from lovedcrm.scoring import service as scoring

STAGE_PRIOR = 2.0  # pseudo-deals at the overall rate added to each stage's count
WORK = 20_000_000  # deals × draws simulated at most (the draws shrink for a big pipeline)
MIN_DRAWS = 1_000


@dataclass(frozen=True)
class ForecastView:
    forecast: fc.Forecast
    currency: str
    calibrated_deals: int
    stage_rate_deals: int
    draws: int


def organization_zone(org_settings: dict[str, Any]) -> ZoneInfo:
    try:
        return ZoneInfo(str(org_settings.get("timezone") or "America/Sao_Paulo"))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("America/Sao_Paulo")


def seed_for(organization_id: uuid.UUID, user_id: uuid.UUID | None, day: str) -> int:
    """The same numbers all day for one person (the page and the API agree)."""
    digest = hashlib.sha256(f"{organization_id}:{user_id}:{day}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _calibrated(lead: Any, since: datetime | None) -> float | None:
    scored = lead.score_last_calculated_at
    p = lead.probability_percentage
    if since is None or scored is None or scored < since or p is None:
        return None
    return float(p) / 100.0


async def _lost_at(session: AsyncSession, lead_ids: list[uuid.UUID]) -> dict[str, datetime]:
    if not lead_ids:
        return {}
    key = AnalyticsEvent.event_data["lead_id"].astext
    rows = await session.execute(
        select(key, func.max(AnalyticsEvent.occurred_at))
        .where(
            AnalyticsEvent.event_type == "lead_lost",
            key.in_([str(i) for i in lead_ids]),
        )
        .group_by(key)
    )
    return {str(k): at for k, at in rows.all() if at is not None}


async def _stages_visited(
    session: AsyncSession, lead_ids: list[uuid.UUID]
) -> dict[uuid.UUID, set[str]]:
    visited: dict[uuid.UUID, set[str]] = {}
    if not lead_ids:
        return visited
    meta = LeadActivity.metadata_
    rows = await session.execute(
        select(
            LeadActivity.lead_id,
            cast(meta["from_stage_id"].astext, String),
            cast(meta["to_stage_id"].astext, String),
        ).where(LeadActivity.activity_type == "stage_change", LeadActivity.lead_id.in_(lead_ids))
    )
    for lead_id, from_id, to_id in rows.all():
        visited.setdefault(lead_id, set()).update(s for s in (from_id, to_id) if s)
    return visited


async def revenue_forecast(
    session: AsyncSession, principal: Principal, *, now: datetime | None = None
) -> ForecastView:
    principal.require("reports:read")
    organization_id = principal.org()
    org_settings = await organization_settings(session, organization_id)
    now = now or clock.now()
    as_of = now.astimezone(organization_zone(org_settings)).date()
    rows = (
        await session.execute(
            visible(
                principal,
                select(Lead).where(
                    Lead.organization_id == organization_id,
                    Lead.status.in_(("active", "converted", "lost")),
                    Lead.created_at.is_not(None),
                ),
            )
        )
    ).scalars()
    leads = list(rows)
    lost_ids = [lead.id for lead in leads if lead.status == "lost"]
    lost_at = await _lost_at(session, lost_ids)
    closed_ids = [lead.id for lead in leads if lead.status in ("converted", "lost")]
    visited = await _stages_visited(session, closed_ids)
    zone = organization_zone(org_settings)

    def day(at: datetime | None) -> Any:
        return None if at is None else at.astimezone(zone).date()

    won_in: dict[str, int] = {}
    closed_in: dict[str, int] = {}
    deals: list[fc.Deal] = []
    open_leads: list[Lead] = []
    for lead in leads:
        opened = day(lead.created_at)
        if opened is None or opened > as_of:
            continue
        if lead.status == "active":
            open_leads.append(lead)
            continue
        closed = day(lead.converted_at if lead.status == "converted" else None)
        if lead.status == "lost":
            closed = day(lost_at.get(str(lead.id)) or lead.updated_at)
        if closed is None or closed > as_of:
            continue
        won = lead.status == "converted"
        value = float(lead.estimated_value or 0) if won else None
        deals.append(fc.Deal(min(opened, closed), closed, won, value))
        for stage in visited.get(lead.id, set()) | {str(lead.stage_id)}:
            closed_in[stage] = closed_in.get(stage, 0) + 1
            won_in[stage] = won_in.get(stage, 0) + int(won)
    overall = sum(d.won for d in deals) / len(deals) if deals else 0.0
    calibrated = by_stage = 0
    since = await scoring.calibrated_since(session, organization_id)
    for lead in open_leads:
        p = _calibrated(lead, since)
        if p is not None:
            calibrated += 1
        elif closed_in.get(str(lead.stage_id)):
            stage = str(lead.stage_id)
            p = (won_in[stage] + STAGE_PRIOR * overall) / (closed_in[stage] + STAGE_PRIOR)
            by_stage += 1
        value = float(lead.estimated_value) if lead.estimated_value else None
        deals.append(fc.Deal(day(lead.created_at), value=value, probability=p))
    draws = int(min(fc.DRAWS, max(MIN_DRAWS, WORK // max(1, len(open_leads)))))
    rng = np.random.default_rng(seed_for(organization_id, principal.user_id, as_of.isoformat()))
    result = fc.forecast(deals, as_of, rng, draws=draws, today_known=True)
    return ForecastView(
        forecast=result,
        currency=str(org_settings.get("currency") or "BRL"),
        calibrated_deals=calibrated,
        stage_rate_deals=by_stage,
        draws=draws,
    )
