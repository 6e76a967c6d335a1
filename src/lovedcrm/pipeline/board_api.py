"""JSON routes for the pipeline board (thin: rules in pipeline.board)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from lovedcrm.core.deps import Require, SessionDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.pipeline import board
from lovedcrm.pipeline.board_schemas import BoardOut, CardOut, CardPageOut, ColumnOut, MoveIn
from lovedcrm.pipeline.schemas import StageOut

router = APIRouter(tags=["board"])
Reader = Annotated[Principal, Depends(Require("leads:read"))]
Writer = Annotated[Principal, Depends(Require("leads:write"))]


async def _filters(
    assigned_to: uuid.UUID | None = None,
    source: Annotated[str | None, Query(max_length=100)] = None,
    score_min: Annotated[int | None, Query(ge=0, le=100)] = None,
    score_max: Annotated[int | None, Query(ge=0, le=100)] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Search name, e-mail, company and phone (accents ignored, typos "
            "tolerated, a phone in any format).",
        ),
    ] = None,
) -> board.BoardFilters:
    return board.BoardFilters(assigned_to, source, score_min, score_max, q)


Filters = Annotated[board.BoardFilters, Depends(_filters)]


def _column(column: board.BoardColumn) -> ColumnOut:
    stage = StageOut.model_validate(column.stage)
    stage.lead_count, stage.total_value = column.lead_count, column.total_value
    return ColumnOut(
        stage=stage,
        lead_count=column.lead_count,
        total_value=column.total_value,
        cards=[CardOut.model_validate(c) for c in column.cards],
        next_cursor=column.next_cursor,
    )


@router.get("/api/v1/board", response_model=BoardOut, responses=problem_responses(401, 403, 422))
async def get_board(principal: Reader, session: SessionDep, filters: Filters) -> BoardOut:
    """One column per active stage in pipeline order: the count and total value of every
    matching lead you can see, and the first 50 cards in board order."""
    result = await board.board(session, principal, filters)
    return BoardOut(columns=[_column(c) for c in result.columns])


@router.get(
    "/api/v1/board/stages/{stage_id}/cards",
    response_model=CardPageOut,
    responses=problem_responses(400, 401, 403, 404, 422),
)
async def stage_cards(
    stage_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    filters: Filters,
    after: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=board.MAX_PAGE)] = board.PAGE,
) -> CardPageOut:
    """More cards of one column ("load more"): pass the column's `next_cursor` as `after`."""
    page = await board.stage_cards(session, principal, stage_id, filters, after=after, limit=limit)
    return CardPageOut.model_validate(page)


@router.get(
    "/api/v1/board/cards/{lead_id}",
    response_model=CardOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_card(lead_id: uuid.UUID, principal: Reader, session: SessionDep) -> CardOut:
    """One card as the board shows it (what a live page re-reads after an event)."""
    return CardOut.model_validate(await board.get_card(session, principal, lead_id))


@router.post(
    "/api/v1/leads/{lead_id}/move",
    response_model=CardOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def move_lead(
    lead_id: uuid.UUID, body: MoveIn, principal: Writer, session: SessionDep
) -> CardOut:
    """Move a card to a column and a place in it. 409 `stale_version` (with the current
    card in `lead`) when it changed since it was shown; 422 `invalid_stage` for a stage that
    is not an active stage of this organization. Nothing changes when refused."""
    card = await board.move_lead(
        session,
        principal,
        lead_id,
        stage_id=body.stage_id,
        expected_version=body.expected_version,
        before_id=body.before_id,
        after_id=body.after_id,
    )
    return CardOut.model_validate(card)
