"""JSON routes of the signed-in member's notifications and their preferences."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from lovedcrm.core.deps import CurrentMember, SessionDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.notifications import service
from lovedcrm.notifications.schemas import (
    MarkedOut,
    NotificationOut,
    NotificationPageOut,
    PreferencesIn,
    PreferencesOut,
    UnreadOut,
)

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


@router.get("", response_model=NotificationPageOut, responses=problem_responses(400))
async def list_notifications(
    principal: CurrentMember,
    session: SessionDep,
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> NotificationPageOut:
    """Your notifications, newest first (``unread=true``: only the unread ones)."""
    items, next_cursor = await service.list_notifications(
        session, principal, unread_only=unread, limit=limit, cursor=cursor
    )
    return NotificationPageOut(
        items=[NotificationOut.model_validate(n) for n in items],
        next_cursor=next_cursor,
        unread=await service.unread_count(session, principal),
    )


@router.get("/unread-count", response_model=UnreadOut)
async def unread_count(principal: CurrentMember, session: SessionDep) -> UnreadOut:
    """How many of your notifications are unread (the bell's number)."""
    return UnreadOut(unread=await service.unread_count(session, principal))


@router.post("/read-all", response_model=MarkedOut)
async def mark_all_read(principal: CurrentMember, session: SessionDep) -> MarkedOut:
    """Mark every notification of yours read."""
    return MarkedOut(marked=await service.mark_all_read(session, principal))


@router.get("/preferences", response_model=PreferencesOut)
async def get_preferences(principal: CurrentMember, session: SessionDep) -> PreferencesOut:
    """Your channel for every notification type."""
    return PreferencesOut.model_validate(
        {"preferences": await service.preferences(session, principal)}
    )


@router.put("/preferences", response_model=PreferencesOut)
async def set_preferences(
    body: PreferencesIn, principal: CurrentMember, session: SessionDep
) -> PreferencesOut:
    """Change the channel of some types; an unknown type or channel is refused (422)."""
    changes: dict[str, str] = {str(k): str(v) for k, v in body.preferences.items()}
    prefs = await service.set_preferences(session, principal, changes)
    return PreferencesOut.model_validate({"preferences": prefs})


@router.post(
    "/{notification_id}/read", response_model=NotificationOut, responses=problem_responses(404)
)
async def mark_read(
    notification_id: uuid.UUID, principal: CurrentMember, session: SessionDep
) -> NotificationOut:
    """Mark one of your notifications read."""
    return NotificationOut.model_validate(
        await service.mark_read(session, principal, notification_id)
    )
