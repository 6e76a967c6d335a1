"""Pipeline stages: list with totals, add, edit, reorder and remove (moving their leads).

Reading needs ``leads:read`` (totals count only the leads the reader can see); changing needs
``pipeline:manage`` and is audited as a settings change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.core.errors import Conflict, NotFound, ValidationFailed
from lovedcrm.core.principal import Principal
from lovedcrm.leads import service as leads
from lovedcrm.leads.models import Lead
from lovedcrm.pipeline.models import PipelineStage

_AUDITED = ("name", "stage_order", "color", "is_active", "stage_type")


@dataclass
class StageTotals:
    stage: PipelineStage
    lead_count: int
    total_value: Decimal


def _snapshot(stage: PipelineStage) -> dict[str, Any]:
    return {f: getattr(stage, f) for f in _AUDITED}


async def _audit(
    session: AsyncSession,
    principal: Principal,
    stage_id: uuid.UUID | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    operation: str,
) -> None:
    await audit.record(
        session,
        action="settings_update",
        resource_type="pipeline_stage",
        resource_id=stage_id,
        organization_id=principal.org(),
        user_id=principal.user_id,
        changes={"operation": operation, **audit.diff(before, after)},
    )


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


async def get_stage(
    session: AsyncSession, principal: Principal, stage_id: uuid.UUID
) -> PipelineStage:
    stage = await session.get(PipelineStage, stage_id)
    if stage is None or stage.organization_id != principal.org():
        raise NotFound("No pipeline stage with that id.", code="stage_not_found")
    return stage


async def create_stage(
    session: AsyncSession, principal: Principal, *, name: str, color: str, stage_type: str
) -> PipelineStage:
    """A new stage at the end of the pipeline."""
    principal.require("pipeline:manage")
    last = await session.execute(
        select(func.max(PipelineStage.stage_order)).where(
            PipelineStage.organization_id == principal.org()
        )
    )
    stage = PipelineStage(
        organization_id=principal.org(),
        name=name,
        color=color,
        stage_type=stage_type,
        stage_order=(last.scalar_one_or_none() or 0) + 1,
    )
    session.add(stage)
    await session.flush()
    await session.refresh(stage)
    await _audit(session, principal, stage.id, None, _snapshot(stage), "create")
    return stage


async def update_stage(
    session: AsyncSession, principal: Principal, stage_id: uuid.UUID, changes: dict[str, Any]
) -> PipelineStage:
    principal.require("pipeline:manage")
    stage = await get_stage(session, principal, stage_id)
    before = _snapshot(stage)
    for key in ("name", "color", "stage_type", "is_active"):
        if changes.get(key) is not None:
            setattr(stage, key, changes[key])
    stage.updated_at = func.now()
    await session.flush()
    await session.refresh(stage)
    await _audit(session, principal, stage.id, before, _snapshot(stage), "update")
    return stage


async def reorder_stages(
    session: AsyncSession, principal: Principal, stage_ids: list[uuid.UUID]
) -> None:
    """Put the stages in the given order (the list must name each stage exactly once).

    UNIQUE(organization_id, stage_order) is checked row by row, so the stages first go to
    distinct negative orders, then to their final positive ones."""
    principal.require("pipeline:manage")
    current = {
        s.id: s
        for s in (
            await session.execute(
                select(PipelineStage).where(PipelineStage.organization_id == principal.org())
            )
        ).scalars()
    }
    if len(set(stage_ids)) != len(stage_ids) or set(stage_ids) != set(current):
        missing = sorted(str(i) for i in set(current) - set(stage_ids))
        unknown = sorted(str(i) for i in set(stage_ids) - set(current))
        raise ValidationFailed(
            "List every stage of the organization exactly once.",
            code="invalid_stage_order",
            extra={"missing": missing, "unknown": unknown},
        )
    before = {str(i): s.stage_order for i, s in current.items()}
    for position, stage_id in enumerate(stage_ids, start=1):
        await session.execute(
            update(PipelineStage)
            .where(PipelineStage.id == stage_id)
            .values(stage_order=-position, updated_at=func.now())
            .execution_options(synchronize_session=False)
        )
    await session.execute(
        update(PipelineStage)
        .where(PipelineStage.organization_id == principal.org(), PipelineStage.stage_order < 0)
        .values(stage_order=-PipelineStage.stage_order)
        .execution_options(synchronize_session=False)
    )
    for stage in current.values():
        await session.refresh(stage)
    after = {str(i): s.stage_order for i, s in current.items()}
    await audit.record(
        session,
        action="settings_update",
        resource_type="pipeline_stage",
        resource_id=None,
        organization_id=principal.org(),
        user_id=principal.user_id,
        changes={"operation": "reorder", **audit.diff(before, after)},
    )


async def delete_stage(
    session: AsyncSession,
    principal: Principal,
    stage_id: uuid.UUID,
    move_to: uuid.UUID | None = None,
) -> int:
    """Remove a stage. Its leads (all of them) move to ``move_to``, which is required when it
    has any. Returns how many leads moved."""
    principal.require("pipeline:manage")
    stage = await get_stage(session, principal, stage_id)
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
            target = await get_stage(session, principal, move_to)
        except NotFound as exc:
            raise ValidationFailed(
                "move_to is not a stage of this organization.", code="invalid_move_to"
            ) from exc
        if not target.is_active:
            raise ValidationFailed("move_to is an inactive stage.", code="invalid_move_to")
        moved = await leads.move_leads(session, principal, stage, target, reason="stage_deleted")
    before = _snapshot(stage)
    await session.delete(stage)
    await session.flush()
    await _audit(session, principal, stage_id, before, None, "delete")
    return moved
