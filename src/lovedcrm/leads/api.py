"""JSON routes for leads (thin: rules in leads.service)."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.deps import Require, SessionDep, require_request, unit_of_work
from lovedcrm.core.fields import (
    FIELDS_MAX_LENGTH,
    fields_pattern,
    fields_query,
    page_response,
    selected,
)
from lovedcrm.core.lean import LeanRoute, json_body, lean, single_values
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

router = APIRouter(prefix="/api/v1/leads", tags=["leads"], route_class=LeanRoute)
Reader = Annotated[Principal, Depends(Require("leads:read"))]
Writer = Annotated[Principal, Depends(Require("leads:write"))]
Deleter = Annotated[Principal, Depends(Require("leads:delete"))]


LEAD_FIELDS = tuple(LeadOut.model_fields)

# The list's common requests, read without FastAPI's per-parameter validation (core.lean):
# every value is taken only in the form FastAPI would surely accept, else FastAPI answers.
_LIST_PARAMETERS = frozenset(
    {
        "limit", "cursor", "stage_id", "assigned_to", "status", "source", "score_min",
        "score_max", "created_after", "created_before", "q", "sort", "fields",
    }
)  # fmt: skip
_LEAN_DECLINES = frozenset({"score_min", "score_max", "created_after", "created_before"})
_LEAN_TEXT_LIMITS = {"cursor": 500, "source": 100, "q": 200, "fields": FIELDS_MAX_LENGTH}
_LEAN_CHOICES = {"status": frozenset(get_args(LeadStatus)), "sort": frozenset(get_args(LeadSort))}
_LIMIT = re.compile(r"[1-9][0-9]{0,2}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_FIELDS = re.compile(fields_pattern(LeadOut))


def _lean_arguments(request: Request) -> dict[str, Any] | None:
    given = single_values(request, _LIST_PARAMETERS)
    if given is None or not given.keys().isdisjoint(_LEAN_DECLINES):
        return None
    limit = given.pop("limit", "50")
    if not _LIMIT.fullmatch(limit) or int(limit) > 200:
        return None
    for name, longest in _LEAN_TEXT_LIMITS.items():
        if len(given.get(name, "")) > longest:
            return None
    if "fields" in given and not _FIELDS.fullmatch(given["fields"]):
        return None
    for name, choices in _LEAN_CHOICES.items():
        if name in given and given[name] not in choices:
            return None
    arguments: dict[str, Any] = {**given, "limit": int(limit)}
    for name in ("stage_id", "assigned_to"):
        if name in given:
            if not _UUID.fullmatch(given[name]):
                return None
            arguments[name] = uuid.UUID(given[name])
    return arguments


async def _lean_list(request: Request) -> Response | None:
    arguments = _lean_arguments(request)
    if arguments is None:
        return None
    async with unit_of_work(request) as session:
        principal = await require_request(request, session, "leads:read")
        return await _leads_page(session, principal, **arguments)


async def _leads_page(
    session: AsyncSession, principal: Principal, fields: str | None = None, **filters: Any
) -> Response:
    names = selected(fields) or list(LEAD_FIELDS)
    page = await service.list_leads(session, principal, columns=names, **filters)
    return page_response(page.items, names, page.next_cursor)


@router.get(
    "",
    response_model=LeadPageOut | LeadFieldsPageOut,
    responses=problem_responses(400, 401, 403, 422),
)
@lean(_lean_list)
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
    return await _leads_page(
        session,
        principal,
        fields=fields,
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
    )


async def _lean_create(request: Request) -> Response | None:
    """A create with a plain JSON body that validates: answered without FastAPI's dependency
    solving (core.lean), with the bytes FastAPI would write."""
    body = await json_body(request, LeadIn)
    if body is None:
        return None
    async with unit_of_work(request) as session:
        principal = await require_request(request, session, "leads:write")
        created = await _create(session, principal, body)
    return Response(
        created.model_dump_json(by_alias=True), status_code=201, media_type="application/json"
    )


async def _create(session: AsyncSession, principal: Principal, body: LeadIn) -> LeadOut:
    lead = await service.create_lead(session, principal, body.model_dump(exclude_unset=True))
    return LeadOut.model_validate(lead)


@router.post(
    "",
    response_model=LeadOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 422),
)
@lean(_lean_create)
async def create_lead(body: LeadIn, principal: Writer, session: SessionDep) -> LeadOut:
    return await _create(session, principal, body)


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
