"""JSON routes for the team: your organizations, members and invitations (thin)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from lovedcrm.auth import service as auth_service
from lovedcrm.auth import team as service
from lovedcrm.auth.schemas import (
    InvitationAcceptIn,
    InvitationCreatedOut,
    InvitationIn,
    InvitationOut,
    MemberOut,
    MembershipOut,
    MemberUpdateIn,
)
from lovedcrm.core.deps import (
    CurrentPrincipal,
    Require,
    SessionDep,
    SettingsDep,
    bearer,
    get_principal,
)
from lovedcrm.core.errors import Unauthorized
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.organizations import service as organizations

router = APIRouter(prefix="/api/v1", tags=["organizations"])
ManageMembers = Annotated[Principal, Depends(Require("members:manage"))]


def _member_out(m: object, u: object) -> MemberOut:
    return MemberOut(
        id=m.id,  # type: ignore[attr-defined]
        user_id=u.id,  # type: ignore[attr-defined]
        email=u.email,  # type: ignore[attr-defined]
        full_name=u.full_name,  # type: ignore[attr-defined]
        role=m.role,  # type: ignore[attr-defined]
        permissions=dict(m.permissions or {}),  # type: ignore[attr-defined]
        is_active=m.is_active,  # type: ignore[attr-defined]
        joined_at=m.joined_at,  # type: ignore[attr-defined]
    )


@router.get("/organizations", response_model=list[MembershipOut])
async def my_organizations(principal: CurrentPrincipal, session: SessionDep) -> list[MembershipOut]:
    """The organizations you belong to, with your role in each."""
    return [
        MembershipOut(
            organization_id=o.id, organization_name=o.name, organization_slug=o.slug, role=m.role
        )
        for m, o in await auth_service.memberships_of(session, principal.user_id)
    ]


@router.get("/members", response_model=list[MemberOut])
async def list_members(
    principal: Annotated[Principal, Depends(Require("members:read"))], session: SessionDep
) -> list[MemberOut]:
    return [_member_out(m, u) for m, u in await service.list_members(session, principal)]


@router.patch("/members/{member_id}", response_model=MemberOut, responses=problem_responses(409))
async def update_member(
    member_id: uuid.UUID, body: MemberUpdateIn, principal: ManageMembers, session: SessionDep
) -> MemberOut:
    member = await service.update_member(
        session,
        principal,
        member_id,
        role=body.role.value if body.role else None,
        permissions=body.permissions,
        is_active=body.is_active,
    )
    pairs = {m.id: u for m, u in await service.list_members(session, principal)}
    return _member_out(member, pairs[member.id])


@router.delete(
    "/members/{member_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(409),
)
async def remove_member(
    member_id: uuid.UUID, principal: ManageMembers, session: SessionDep
) -> Response:
    await service.remove_member(session, principal, member_id)
    return Response(status_code=204)


@router.get("/invitations", response_model=list[InvitationOut])
async def list_invitations(principal: ManageMembers, session: SessionDep) -> list[InvitationOut]:
    return [
        InvitationOut.model_validate(i) for i in await service.list_invitations(session, principal)
    ]


@router.post(
    "/invitations",
    response_model=InvitationCreatedOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(409),
)
async def create_invitation(
    body: InvitationIn, principal: ManageMembers, session: SessionDep, settings: SettingsDep
) -> InvitationCreatedOut:
    """Invite someone by email with a role. The link is emailed; it is also returned once."""
    invitation, token = await service.create_invitation(
        session, settings, principal, email=body.email, role=body.role.value
    )
    return InvitationCreatedOut(
        **InvitationOut.model_validate(invitation).model_dump(),
        accept_url=f"{settings.base_url}/invitations/accept?token={token}",
    )


@router.delete("/invitations/{invitation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_invitation(
    invitation_id: uuid.UUID, principal: ManageMembers, session: SessionDep
) -> Response:
    await service.revoke_invitation(session, principal, invitation_id)
    return Response(status_code=204)


@router.post(
    "/invitations/accept", response_model=MembershipOut, responses=problem_responses(401, 409)
)
async def accept_invitation(
    body: InvitationAcceptIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[object, Depends(bearer)],
) -> MembershipOut:
    """Accept an invitation. Signed in: joins with your account. Not signed in: send
    full_name and password to create the account for the invited email."""
    user = None
    if credentials is not None:
        principal = await get_principal(request, session, settings, credentials)  # type: ignore[arg-type]
        user = await auth_service.user_of(session, principal)
    elif not (body.full_name and body.password):
        raise Unauthorized(
            "Log in, or send full_name and password to create your account.",
            code="not_authenticated",
        )
    user, invitation = await service.accept_invitation(
        session,
        settings,
        token=body.token,
        user=user,
        full_name=body.full_name,
        password=body.password,
    )
    org = await organizations.get_organization_by_id(session, invitation.organization_id)
    return MembershipOut(
        organization_id=org.id,
        organization_name=org.name,
        organization_slug=org.slug,
        role=invitation.role,
    )
