"""JSON routes for a lead's timeline: activities and notes (thin: rules in leads.activities)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from lovedcrm.core.deps import Require, SessionDep
from lovedcrm.core.fields import attribute_names, fields_query, page_response, selected
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.leads import activities
from lovedcrm.leads.schemas import (
    ActivityFieldsPageOut,
    ActivityIn,
    ActivityOut,
    ActivityPageOut,
    ActivityType,
    ActivityUpdateIn,
    NoteIn,
)

router = APIRouter(prefix="/api/v1", tags=["activities"])
Reader = Annotated[Principal, Depends(Require("leads:read"))]
Writer = Annotated[Principal, Depends(Require("leads:write"))]
ACTIVITY_FIELDS = tuple(ActivityOut.model_fields)
ACTIVITY_ATTRIBUTES = attribute_names(ActivityOut)


@router.get(
    "/leads/{lead_id}/activities",
    response_model=ActivityPageOut | ActivityFieldsPageOut,
    responses=problem_responses(400, 401, 403, 404, 422),
)
async def list_activities(
    lead_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    type: Annotated[str | None, Query(max_length=50, examples=["note"])] = None,
    fields: Annotated[str | None, fields_query(ActivityOut, "id,type,title,created_at")] = None,
) -> Response:
    """The lead's timeline, newest first."""
    page = await activities.list_activities(
        session, principal, lead_id, limit=limit, cursor=cursor, activity_type=type
    )
    names = selected(fields) or list(ACTIVITY_FIELDS)
    return page_response(page.items, names, page.next_cursor, ACTIVITY_ATTRIBUTES)


@router.post(
    "/leads/{lead_id}/notes",
    response_model=ActivityOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 422),
)
async def create_note(
    lead_id: uuid.UUID, body: NoteIn, principal: Writer, session: SessionDep
) -> ActivityOut:
    activity = await activities.create_activity(
        session,
        principal,
        lead_id,
        activity_type="note",
        title=body.title,
        description=body.description,
    )
    return ActivityOut.model_validate(activity)


@router.post(
    "/leads/{lead_id}/activities",
    response_model=ActivityOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 422),
)
async def create_activity(
    lead_id: uuid.UUID, body: ActivityIn, principal: Writer, session: SessionDep
) -> ActivityOut:
    """Log a call, e-mail, meeting or note, or add a task (`metadata.due_at` required)."""
    kind: ActivityType = body.type
    activity = await activities.create_activity(
        session,
        principal,
        lead_id,
        activity_type=kind,
        title=body.title,
        description=body.description,
        metadata=body.metadata,
        duration_minutes=body.duration_minutes,
    )
    return ActivityOut.model_validate(activity)


@router.patch(
    "/activities/{activity_id}",
    response_model=ActivityOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def update_activity(
    activity_id: uuid.UUID, body: ActivityUpdateIn, principal: Writer, session: SessionDep
) -> ActivityOut:
    """Edit your note's text or mark a task done (anyone's with `leads:write_all`)."""
    activity = await activities.update_activity(
        session, principal, activity_id, body.model_dump(exclude_unset=True)
    )
    return ActivityOut.model_validate(activity)


@router.delete(
    "/activities/{activity_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def delete_activity(
    activity_id: uuid.UUID, principal: Writer, session: SessionDep
) -> Response:
    await activities.delete_activity(session, principal, activity_id)
    return Response(status_code=204)
