"""The home page's numbers for one person: tasks due, idle leads, the pipeline by stage and
this month's won value. Lead visibility follows the role's scope (``leads.service.visible``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.principal import Principal
from lovedcrm.leads.models import Lead, LeadActivity, PipelineStage
from lovedcrm.leads.service import visible
from lovedcrm.organizations.custom_fields import HasSettings
from lovedcrm.organizations.models import Organization
from lovedcrm.organizations.service import stale_days_of

STALE_SHOWN = 10
TASKS_SCANNED = 500  # open tasks of one person read to find those due; ample in practice


@dataclass(frozen=True)
class TaskDue:
    activity_id: uuid.UUID
    lead_id: uuid.UUID
    lead_name: str
    title: str
    due_at: datetime
    overdue: bool


@dataclass(frozen=True)
class StaleLead:
    id: uuid.UUID
    full_name: str
    company: str | None
    last_activity_at: datetime | None


@dataclass(frozen=True)
class StageTotal:
    id: uuid.UUID
    name: str
    color: str | None
    count: int
    value: Decimal


@dataclass
class HomeSummary:
    stale_days: int
    tasks: list[TaskDue] = field(default_factory=list)
    stale_leads: list[StaleLead] = field(default_factory=list)
    stale_total: int = 0
    stages: list[StageTotal] = field(default_factory=list)
    won_value: Decimal = Decimal(0)
    won_count: int = 0

    @property
    def overdue_count(self) -> int:
        return sum(1 for t in self.tasks if t.overdue)


def _zone(org: HasSettings | None) -> ZoneInfo:
    name = (org.settings or {}).get("timezone") if org is not None else None
    try:
        return ZoneInfo(str(name or "America/Sao_Paulo"))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("America/Sao_Paulo")


zone_of = _zone  # the organization's time zone, for the reports


def _parse_due(raw: object, zone: ZoneInfo) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        due = datetime.fromisoformat(raw)
    except ValueError:
        return None
    # A due time without an offset is the organization's local time.
    return due.replace(tzinfo=zone) if due.tzinfo is None else due


async def _tasks_due(
    session: AsyncSession, principal: Principal, now: datetime, zone: ZoneInfo
) -> list[TaskDue]:
    """My open tasks due by the end of today (organization time), overdue first."""
    end_of_today = datetime.combine(now.astimezone(zone).date() + timedelta(days=1), time(), zone)
    query = (
        select(LeadActivity, Lead.full_name)
        .join(Lead, Lead.id == LeadActivity.lead_id)
        .where(
            LeadActivity.activity_type == "task",
            LeadActivity.user_id == principal.user_id,
            ~LeadActivity.metadata_.contains({"done": True}),
        )
        .order_by(LeadActivity.created_at.desc())
        .limit(TASKS_SCANNED)
    )
    rows = (await session.execute(visible(principal, query))).all()
    due: list[TaskDue] = []
    for activity, lead_name in rows:
        at = _parse_due((activity.metadata_ or {}).get("due_at"), zone)
        if at is None or at >= end_of_today:
            continue
        due.append(
            TaskDue(
                activity_id=activity.id,
                lead_id=activity.lead_id,
                lead_name=lead_name,
                title=activity.title,
                due_at=at,
                overdue=at < now,
            )
        )
    due.sort(key=lambda t: t.due_at)
    return due


async def home_summary(
    session: AsyncSession,
    principal: Principal,
    now: datetime | None = None,
    organization: HasSettings | None = None,
) -> HomeSummary:
    """The signed-in person's home numbers in their current organization."""
    principal.org()
    now = now or datetime.now(UTC)
    org = organization or await session.get(Organization, principal.org())
    zone = _zone(org)
    summary = HomeSummary(stale_days=stale_days_of(org))
    summary.tasks = await _tasks_due(session, principal, now, zone)

    # My active leads with no activity for N days (a lead never touched counts from its
    # creation, so one added a minute ago is not idle).
    cutoff = now - timedelta(days=summary.stale_days)
    last_touch = func.coalesce(Lead.last_activity_at, Lead.created_at)
    idle = and_(
        Lead.assigned_to == principal.user_id,
        Lead.status == "active",
        or_(last_touch < cutoff, last_touch.is_(None)),
    )
    summary.stale_total = int(
        (await session.execute(select(func.count()).select_from(Lead).where(idle))).scalar_one()
    )
    stale_rows = await session.execute(
        select(Lead.id, Lead.full_name, Lead.company, Lead.last_activity_at)
        .where(idle)
        .order_by(last_touch.asc().nulls_first(), Lead.id)
        .limit(STALE_SHOWN)
    )
    summary.stale_leads = [
        StaleLead(id=r.id, full_name=r.full_name, company=r.company, last_activity_at=r[3])
        for r in stale_rows.all()
    ]

    # Active stages in order with the active leads I can see in each.
    per_stage = visible(
        principal,
        select(
            Lead.stage_id,
            func.count().label("n"),
            func.coalesce(func.sum(Lead.estimated_value), 0).label("value"),
        )
        .where(Lead.status == "active")
        .group_by(Lead.stage_id),
    ).subquery()
    stage_rows = await session.execute(
        select(
            PipelineStage.id,
            PipelineStage.name,
            PipelineStage.color,
            func.coalesce(per_stage.c.n, 0),
            func.coalesce(per_stage.c.value, 0),
        )
        .outerjoin(per_stage, per_stage.c.stage_id == PipelineStage.id)
        .where(PipelineStage.is_active.is_(True))
        .order_by(PipelineStage.stage_order, PipelineStage.name)
    )
    summary.stages = [
        StageTotal(id=r[0], name=r[1], color=r[2], count=int(r[3]), value=Decimal(r[4] or 0))
        for r in stage_rows.all()
    ]

    # Won this month (organization time): converted leads I can see.
    local = now.astimezone(zone)
    month_start = datetime.combine(local.date().replace(day=1), time(), zone)
    won = await session.execute(
        visible(
            principal,
            select(func.count(), func.coalesce(func.sum(Lead.estimated_value), 0)).where(
                Lead.status == "converted", Lead.converted_at >= month_start
            ),
        )
    )
    count, value = won.one()
    summary.won_count, summary.won_value = int(count), Decimal(value or 0)
    return summary
