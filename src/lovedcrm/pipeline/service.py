"""The pipeline's view of its stages: each with the count and value of the leads in it, and
removing one by moving its leads first. The stage rows themselves are ``leads.stages``'.

Reading needs ``leads:read`` (totals count only the leads the reader can see); removing needs
``pipeline:manage`` and is audited as a settings change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.errors import Conflict, NotFound, ValidationFailed
from lovedcrm.core.principal import Principal
from lovedcrm.leads import service as leads
from lovedcrm.leads import stages
from lovedcrm.leads.models import Lead, PipelineStage


@dataclass
class StageTotals:
    stage: PipelineStage
    lead_count: int
    total_value: Decimal


async def list_stages(session: AsyncSession, principal: Principal) -> list[StageTotals]:
    principal.require("leads:read")
    totals = (
        leads.visible(
            principal,
            select(
                Lead.stage_id.label("stage_id"),
                func.count(Lead.id).label("lead_count"),
                func.coalesce(func.sum(Lead.estimated_value), 0).label("total_value"),
            ).where(Lead.organization_id == principal.org()),
        )
        .group_by(Lead.stage_id)
        .subquery()
    )
    rows = await session.execute(
        select(PipelineStage, totals.c.lead_count, totals.c.total_value)
        .outerjoin(totals, totals.c.stage_id == PipelineStage.id)
        .where(PipelineStage.organization_id == principal.org())
        .order_by(PipelineStage.stage_order)
    )
    return [
        StageTotals(stage=s, lead_count=int(count or 0), total_value=Decimal(value or 0))
        for s, count, value in rows.all()
    ]


async def delete_stage(
    session: AsyncSession,
    principal: Principal,
    stage_id: uuid.UUID,
    move_to: uuid.UUID | None = None,
) -> int:
    """Remove a stage. Its leads (all of them) move to ``move_to``, which is required when it
    has any. Returns how many leads moved."""
    principal.require("pipeline:manage")
    stage = await stages.get_stage(session, principal, stage_id)
    count = (
        await session.execute(
            select(func.count(Lead.id)).where(
                Lead.organization_id == principal.org(), Lead.stage_id == stage.id
            )
        )
    ).scalar_one()
    moved = 0
    if count:
        if move_to is None:
            raise Conflict(
                f"The stage holds {count} lead(s): say where they go with move_to.",
                code="stage_not_empty",
                extra={"lead_count": count},
            )
        if move_to == stage.id:
            raise ValidationFailed("move_to must be another stage.", code="invalid_move_to")
        try:
            target = await stages.get_stage(session, principal, move_to)
        except NotFound as exc:
            raise ValidationFailed(
                "move_to is not a stage of this organization.", code="invalid_move_to"
            ) from exc
        if not target.is_active:
            raise ValidationFailed("move_to is an inactive stage.", code="invalid_move_to")
        moved = await leads.move_leads(session, principal, stage, target, reason="stage_deleted")
    await stages.remove_stage(session, principal, stage)
    return moved
