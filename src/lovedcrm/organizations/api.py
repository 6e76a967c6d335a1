"""JSON routes for organizations: create one, the current one's settings and logo (thin).
Members and invitations are ``auth.team_api``'s."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, UploadFile, status

from lovedcrm.core.deps import (
    CurrentMember,
    CurrentPrincipal,
    Require,
    SessionDep,
    SettingsDep,
)
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.organizations import branding, service
from lovedcrm.organizations.schemas import (
    OrganizationCreateIn,
    OrganizationOut,
    OrganizationUpdateIn,
)

router = APIRouter(prefix="/api/v1", tags=["organizations"])


@router.post(
    "/organizations",
    response_model=OrganizationOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(409),
)
async def create_organization(
    body: OrganizationCreateIn, principal: CurrentPrincipal, session: SessionDep
) -> OrganizationOut:
    """Create another organization; you become its admin. Switch to it to work in it."""
    org = await service.create_organization(session, name=body.name, owner_id=principal.user_id)
    return OrganizationOut.model_validate(org)


@router.get("/organizations/current", response_model=OrganizationOut)
async def current_organization(principal: CurrentMember, session: SessionDep) -> OrganizationOut:
    return OrganizationOut.model_validate(await service.get_organization(session, principal))


@router.patch("/organizations/current", response_model=OrganizationOut)
async def update_organization(
    body: OrganizationUpdateIn,
    principal: Annotated[Principal, Depends(Require("settings:manage"))],
    session: SessionDep,
) -> OrganizationOut:
    org = await service.update_organization(
        session, principal, name=body.name, settings=body.settings
    )
    return OrganizationOut.model_validate(org)


@router.put("/organizations/current/logo", response_model=OrganizationOut)
async def upload_logo(
    principal: Annotated[Principal, Depends(Require("settings:manage"))],
    session: SessionDep,
    settings: SettingsDep,
    logo: Annotated[UploadFile, File(description="PNG, JPEG or WebP; SVG is refused")],
) -> OrganizationOut:
    """Replace the organization's logo (multipart field ``logo``). Up to
    ``LOVEDCRM_LOGO_MAX_BYTES`` (1 MB); the image type is checked by its content."""
    data = await logo.read(settings.logo_max_bytes + 1)
    org = await branding.save_logo(session, settings, principal, data)
    return OrganizationOut.model_validate(org)
