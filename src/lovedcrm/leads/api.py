"""JSON routes for leads (thin: rules in leads.service)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from lovedcrm.core.deps import Require, SessionDep
from lovedcrm.core.fields import fields_query, page_response, selected
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.core.schemas import IsoDateTime
from lovedcrm.leads import service
from lovedcrm.leads.schemas import (
    LeadFieldsPageOut,
    LeadIn,
    LeadOut,
    LeadPageOut,
    LeadSort,
    LeadStatus,
    LeadUpdateIn,
)

router = APIRouter(prefix="/api/v1/leads", tags=["leads"])
Reader = Annotated[Principal, Depends(Require("leads:read"))]
Writer = Annotated[Principal, Depends(Require("leads:write"))]
Deleter = Annotated[Principal, Depends(Require("leads:delete"))]


LEAD_FIELDS = tuple(LeadOut.model_fields)


@router.get(
    "",
    response_model=LeadPageOut | LeadFieldsPageOut,
    responses=problem_responses(400, 401, 403, 422),
)
async def list_leads(
    principal: Reader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    stage_id: uuid.UUID | None = None,
    assigned_to: uuid.UUID | None = None,
    status: LeadStatus | None = None,
    source: Annotated[str | None, Query(max_length=100, examples=["whatsapp"])] = None,
    score_min: Annotated[int | None, Query(ge=0, le=100)] = None,
    score_max: Annotated[int | None, Query(ge=0, le=100)] = None,
    created_after: Annotated[IsoDateTime | None, Query(description="Inclusive")] = None,
    created_before: Annotated[IsoDateTime | None, Query(description="Exclusive")] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Search name, e-mail, company and phone (case and accents ignored; "
            "a phone in any format matches).",
            examples=["joao"],
        ),
    ] = None,
    sort: Annotated[
        LeadSort | None,
        Query(
            description="Sort key; a leading '-' sorts descending. By default `-created_at` "
            "(newest first), or `relevance` with `q`: the leads matching the text as typed "
            "first, then those matching every word within one typo, newest first within each."
        ),
    ] = None,
    fields: Annotated[str | None, fields_query(LeadOut, "id,full_name,phone")] = None,
) -> Response:
    """Leads you can see, newest first by default, one keyset page at a time."""
    names = selected(fields) or list(LEAD_FIELDS)
    page = await service.list_leads(
        session,
        principal,
        limit=limit,
        cursor=cursor,
        stage_id=stage_id,
        assigned_to=assigned_to,
        status=status,
        source=source,
        score_min=score_min,
        score_max=score_max,
        created_after=created_after,
        created_before=created_before,
        q=q,
        sort=sort,
        columns=names,
    )
    return page_response(page.items, names, page.next_cursor)


@router.post(
    "",
    response_model=LeadOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 422),
)
async def create_lead(body: LeadIn, principal: Writer, session: SessionDep) -> LeadOut:
    lead = await service.create_lead(session, principal, body.model_dump(exclude_unset=True))
    return LeadOut.model_validate(lead)


@router.get("/{lead_id}", response_model=LeadOut, responses=problem_responses(401, 403, 404, 422))
async def get_lead(lead_id: uuid.UUID, principal: Reader, session: SessionDep) -> LeadOut:
    return LeadOut.model_validate(await service.get_lead(session, principal, lead_id))


@router.patch("/{lead_id}", response_model=LeadOut, responses=problem_responses(401, 403, 404, 422))
async def update_lead(
    lead_id: uuid.UUID, body: LeadUpdateIn, principal: Writer, session: SessionDep
) -> LeadOut:
    """Change some fields. Moving stage writes a timeline entry; `status: lost` needs a
    `lost_reason`; `status: converted` sets `converted_at`."""
    lead = await service.update_lead(
        session, principal, lead_id, body.model_dump(exclude_unset=True)
    )
    return LeadOut.model_validate(lead)


@router.delete(
    "/{lead_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_lead(lead_id: uuid.UUID, principal: Deleter, session: SessionDep) -> Response:
    await service.delete_lead(session, principal, lead_id)
    return Response(status_code=204)
