"""JSON routes of the agenda (thin: rules in calendar.service)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from lovedcrm.calendar import service, sync
from lovedcrm.calendar.google import GoogleClient
from lovedcrm.calendar.schemas import (
    GoogleCalendarChoiceIn,
    GoogleCalendarChosenOut,
    GoogleCalendarListOut,
    GoogleCalendarOut,
    MeetingCreatedOut,
    MeetingIn,
    MeetingListOut,
    MeetingOut,
    MeetingUpdateIn,
)
from lovedcrm.core import clock
from lovedcrm.core.deps import Require, SessionDep, SettingsDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.core.schemas import IsoDateTime

router = APIRouter(prefix="/api/v1/calendar", tags=["calendar"])
Reader = Annotated[Principal, Depends(Require("leads:read"))]
Writer = Annotated[Principal, Depends(Require("leads:write"))]


@router.get(
    "/events", response_model=MeetingListOut, responses=problem_responses(401, 403, 404, 422)
)
async def list_events(
    principal: Reader,
    session: SessionDep,
    from_: Annotated[IsoDateTime | None, Query(alias="from")] = None,
    to: Annotated[IsoDateTime | None, Query()] = None,
    user_id: Annotated[uuid.UUID | None, Query()] = None,
    team: Annotated[bool, Query()] = False,
    lead_id: Annotated[uuid.UUID | None, Query()] = None,
) -> MeetingListOut:
    """Meetings overlapping [from, to) (default: the coming 7 days): the caller's, a
    teammate's (`user_id`) or the team's (`team=true`; both need `leads:read_all`)."""
    start = from_ or clock.now()
    end = to or start + timedelta(days=7)
    agenda = await service.list_events(
        session, principal, start, end, user_id=user_id, team=team, lead_id=lead_id
    )
    return MeetingListOut(items=[MeetingOut.model_validate(e) for e in agenda.events])


@router.post(
    "/events",
    response_model=MeetingCreatedOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 422),
)
async def create_event(
    body: MeetingIn, principal: Writer, session: SessionDep, settings: SettingsDep
) -> MeetingCreatedOut:
    """Create a meeting (a Jitsi room by default; `video: google` asks Google for a Meet link
    when the member's Google Calendar is connected). Overlaps are saved and reported in
    `conflicts`."""
    event = await service.create_event(
        session,
        principal,
        service.MeetingInput(**body.model_dump()),
        settings=settings,
    )
    clashes = await service.conflicts(
        session, principal, event.start_time, event.end_time, exclude=event.id
    )
    out = MeetingOut.model_validate(event).model_dump()
    return MeetingCreatedOut(**out, conflicts=[c.id for c in clashes])


@router.get(
    "/events/{event_id}", response_model=MeetingOut, responses=problem_responses(401, 403, 404, 422)
)
async def get_event(event_id: uuid.UUID, principal: Reader, session: SessionDep) -> MeetingOut:
    return MeetingOut.model_validate(await service.get_event(session, principal, event_id))


@router.patch(
    "/events/{event_id}",
    response_model=MeetingOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def update_event(
    event_id: uuid.UUID,
    body: MeetingUpdateIn,
    principal: Writer,
    session: SessionDep,
    settings: SettingsDep,
) -> MeetingOut:
    """Change a meeting or its status (scheduled → completed / cancelled / no_show)."""
    changes = body.model_dump(exclude_unset=True)
    event = await service.update_event(session, principal, event_id, changes, settings=settings)
    return MeetingOut.model_validate(event)


@router.delete(
    "/events/{event_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_event(
    event_id: uuid.UUID, principal: Writer, session: SessionDep, settings: SettingsDep
) -> Response:
    await service.delete_event(session, principal, event_id, settings=settings)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- the Google calendar to sync ---------------------------------------------------------------


@router.get(
    "/google/calendars",
    response_model=GoogleCalendarListOut,
    responses=problem_responses(401, 403, 409),
)
async def google_calendars(
    principal: Reader, session: SessionDep, settings: SettingsDep
) -> GoogleCalendarListOut:
    """The member's Google calendars; `writable` ones (owner/writer) can be chosen for the
    sync. 409 when Google Calendar is not connected."""
    client = GoogleClient(settings)
    try:
        integration, found = await sync.calendars(session, principal, settings, client)
    finally:
        await client.aclose()
    return GoogleCalendarListOut(
        items=[
            GoogleCalendarOut(
                id=c.id,
                summary=c.summary,
                primary=c.primary,
                access_role=c.access_role,
                writable=c.writable,
                selected=sync.is_current(integration, c),
            )
            for c in found
        ]
    )


@router.put(
    "/google/calendar",
    response_model=GoogleCalendarChosenOut,
    responses=problem_responses(401, 403, 409, 422),
)
async def choose_google_calendar(
    body: GoogleCalendarChoiceIn, principal: Reader, session: SessionDep, settings: SettingsDep
) -> GoogleCalendarChosenOut:
    """Sync with another of the member's calendars (422 naming `calendar_id` when it is not
    one they can write to). A change drops the sync token and queues a full pull."""
    client = GoogleClient(settings)
    try:
        integration = await sync.choose_calendar(
            session, principal, settings, client, body.calendar_id
        )
    finally:
        await client.aclose()
    return GoogleCalendarChosenOut(
        calendar_id=integration.calendar_id or "",
        calendar_name=integration.calendar_name,
        sync_status=integration.sync_status,
    )
