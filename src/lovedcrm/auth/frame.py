"""The page kit's :class:`~lovedcrm.web.kit.FrameSource`: the signed-in person's
organizations (for the switcher), the current one (brand and language) and the CSRF token
of their web session. Installed by ``create_app`` as ``app.state.frame_source``."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth import service
from lovedcrm.auth.models import UserSession
from lovedcrm.config import Settings
from lovedcrm.core import security
from lovedcrm.core.principal import Principal
from lovedcrm.organizations.models import Organization
from lovedcrm.web.kit import FrameData, OrgView


def org_view(org: Organization) -> OrgView:
    return OrgView(id=org.id, name=org.name, slug=org.slug, settings=dict(org.settings or {}))


async def frame_source(
    request: Request, session: AsyncSession, settings: Settings, principal: Principal
) -> FrameData:
    memberships = [
        (member.role, org_view(org))
        for member, org in await service.memberships_of(session, principal.user_id)
    ]
    current = next((o for _, o in memberships if o.id == principal.organization_id), None)
    user_session: UserSession = request.state.user_session
    return FrameData(
        org=current,
        memberships=memberships,
        csrf=security.csrf_token(settings, user_session.token_hash),
    )
