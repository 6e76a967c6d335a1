"""JSON routes for pipeline stages (thin: rules in pipeline.service)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from lovedcrm.core.deps import Require, SessionDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.leads import stages
from lovedcrm.pipeline import service
from lovedcrm.pipeline.schemas import StageIn, StageOut, StageReorderIn, StageUpdateIn

router = APIRouter(prefix="/api/v1/pipeline/stages", tags=["pipeline"])
Reader = Annotated[Principal, Depends(Require("leads:read"))]
Manager = Annotated[Principal, Depends(Require("pipeline:manage"))]


def _out(totals: service.StageTotals) -> StageOut:
    out = StageOut.model_validate(totals.stage)
    out.lead_count, out.total_value = totals.lead_count, totals.total_value
    return out


async def _listing(session: SessionDep, principal: Principal) -> list[StageOut]:
    return [_out(t) for t in await service.list_stages(session, principal)]


@router.get("", response_model=list[StageOut], responses=problem_responses(401, 403))
async def list_stages(principal: Reader, session: SessionDep) -> list[StageOut]:
    """The stages in pipeline order, with how many leads each holds and their total value
    (counting the leads you can see)."""
    return await _listing(session, principal)


@router.post(
    "",
    response_model=StageOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 422),
)
async def create_stage(body: StageIn, principal: Manager, session: SessionDep) -> StageOut:
    """Add a stage at the end of the pipeline."""
    stage = await stages.create_stage(
        session, principal, name=body.name, color=body.color, stage_type=body.stage_type
    )
    return StageOut.model_validate(stage)


@router.post("/reorder", response_model=list[StageOut], responses=problem_responses(401, 403, 422))
async def reorder_stages(
    body: StageReorderIn, principal: Manager, session: SessionDep
) -> list[StageOut]:
    """Give every stage id in the new order; answers the reordered pipeline."""
    await stages.reorder_stages(session, principal, body.stage_ids)
    return await _listing(session, principal)


@router.patch(
    "/{stage_id}", response_model=StageOut, responses=problem_responses(401, 403, 404, 422)
)
async def update_stage(
    stage_id: uuid.UUID, body: StageUpdateIn, principal: Manager, session: SessionDep
) -> StageOut:
    """Rename, recolor, retype or (de)activate a stage."""
    stage = await stages.update_stage(
        session, principal, stage_id, body.model_dump(exclude_unset=True)
    )
    return StageOut.model_validate(stage)


@router.delete(
    "/{stage_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def delete_stage(
    stage_id: uuid.UUID,
    principal: Manager,
    session: SessionDep,
    move_to: Annotated[
        uuid.UUID | None,
        Query(description="Stage that receives the leads; required when the stage has any."),
    ] = None,
) -> Response:
    await service.delete_stage(session, principal, stage_id, move_to)
    return Response(status_code=204)
