"""JSON routes for your own account: your profile and your sessions (thin: the rules live in
``auth.account``). People only: an API key acts for an organization, not for an account."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response, status
from pydantic import Field

from lovedcrm.auth import account
from lovedcrm.auth import service as auth_service
from lovedcrm.auth.models import UserSession
from lovedcrm.auth.schemas import UserOut
from lovedcrm.core.deps import CurrentPrincipal, SessionDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.core.schemas import Out, StrictIn

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

_AUTH = problem_responses(401, 403)


class ProfileIn(StrictIn):
    """Only the fields sent change. ``phone``: in any format people write it (stored in
    E.164); empty or null removes it."""

    full_name: str | None = Field(
        default=None, min_length=1, max_length=account.NAME_MAX, pattern=r"\S"
    )
    phone: str | None = Field(default=None, max_length=50, examples=["+55 11 98765-4321"])


class SessionOut(Out):
    id: uuid.UUID
    kind: Literal["web", "api"] = Field(description="web: a browser; api: an API log-in")
    current: bool = Field(description="The session making this request")
    device: str | None = Field(description="Read from the user agent", examples=["Chrome · Linux"])
    user_agent: str | None
    ip_address: str | None
    created_at: datetime
    last_seen_at: datetime | None
    expires_at: datetime


class EndedOut(Out):
    ended: int = Field(description="How many sessions ended")


def _session_out(principal: Principal, row: UserSession) -> SessionOut:
    return SessionOut(
        id=row.id,
        kind="api" if row.kind == "api" else "web",
        current=account.is_current(principal, row),
        device=account.describe_device(row.user_agent),
        user_agent=row.user_agent,
        ip_address=account.address_of(row),
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        expires_at=row.expires_at,
    )


@router.get("/me/profile", response_model=UserOut, responses=_AUTH)
async def get_profile(principal: CurrentPrincipal, session: SessionDep) -> UserOut:
    """Your name, email and phone."""
    return UserOut.model_validate(await auth_service.user_of(session, principal))


@router.patch("/me/profile", response_model=UserOut, responses={**_AUTH, **problem_responses(422)})
async def update_profile(
    body: ProfileIn, principal: CurrentPrincipal, session: SessionDep
) -> UserOut:
    """Change your name or phone (422 ``invalid_phone`` for a number that is not one)."""
    changes: dict[str, Any] = {}
    if "full_name" in body.model_fields_set and body.full_name is not None:
        changes["full_name"] = body.full_name
    if "phone" in body.model_fields_set:
        changes["phone"] = body.phone
    user = await account.update_profile(session, principal, **changes)
    return UserOut.model_validate(user)


@router.get("/sessions", response_model=list[SessionOut], responses=_AUTH)
async def list_sessions(principal: CurrentPrincipal, session: SessionDep) -> list[SessionOut]:
    """Your sessions that still work: each browser and each API log-in, most recent first."""
    return [_session_out(principal, s) for s in await account.list_sessions(session, principal)]


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_AUTH, **problem_responses(404)},
)
async def end_session(
    session_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> Response:
    """End one of your sessions: its tokens (or its browser cookie) stop working at once."""
    await account.end_session(session, principal, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/sessions/end-others", response_model=EndedOut, responses=_AUTH)
async def end_other_sessions(principal: CurrentPrincipal, session: SessionDep) -> EndedOut:
    """End every session of yours except the one making this request."""
    return EndedOut(ended=await account.end_other_sessions(session, principal))
