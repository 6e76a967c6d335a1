"""Pipeline stages: the steps a lead moves through (their rows are the leads domain's; the
board and the stage settings live in ``pipeline``). Adding, editing, reordering and removing
need ``pipeline:manage`` and are audited as settings changes.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.core.errors import NotFound, ValidationFailed
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.principal import Principal
from lovedcrm.db.tenant import save_new
from lovedcrm.leads.models import PipelineStage

_AUDITED = ("name", "stage_order", "color", "is_active", "stage_type")


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
    await audit.record_by(
        session,
        principal,
        "settings_update",
        "pipeline_stage",
        stage_id,
        {"operation": operation, **audit.diff(before, after)},
    )


async def list_stages(session: AsyncSession, principal: Principal) -> list[PipelineStage]:
    """The organization's stages in pipeline order (active or not)."""
    principal.require("leads:read")
    result = await session.execute(
        select(PipelineStage)
        .where(PipelineStage.organization_id == principal.org())
        .order_by(PipelineStage.stage_order)
    )
    return list(result.scalars())


async def get_stage(
    session: AsyncSession, principal: Principal, stage_id: uuid.UUID
) -> PipelineStage:
    return await get_in_org(
        session,
        PipelineStage,
        stage_id,
        principal,
        NotFound("No pipeline stage with that id.", code="stage_not_found"),
    )


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
    await save_new(session, stage)
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
    await _audit(session, principal, None, before, after, "reorder")


async def remove_stage(session: AsyncSession, principal: Principal, stage: PipelineStage) -> None:
    """Delete a stage that holds no lead (``pipeline.service.delete_stage`` moves them first)."""
    principal.require("pipeline:manage")
    before = _snapshot(stage)
    stage_id = stage.id
    await session.delete(stage)
    await session.flush()
    await _audit(session, principal, stage_id, before, None, "delete")
