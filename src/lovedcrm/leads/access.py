"""Reading leads within the principal's scope: the base every leads module builds on.

Scope: without ``leads:read_all`` a member sees only the leads assigned to them; without
``leads:write_all`` they edit only those. ``leads.service`` is the public face of the domain
and re-exports what other domains use from here.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.errors import NotFound
from lovedcrm.core.principal import Principal
from lovedcrm.leads.models import Lead
from lovedcrm.leads.schemas import LeadOut
from lovedcrm.organizations.models import Organization

AUDITED_FIELDS = (
    "full_name",
    "email",
    "phone",
    "company",
    "job_title",
    "stage_id",
    "assigned_to",
    "source",
    "estimated_value",
    "probability_percentage",
    "custom_fields",
    "status",
    "lost_reason",
)


def snapshot(lead: Lead) -> dict[str, Any]:
    return {f: getattr(lead, f) for f in AUDITED_FIELDS}


def lead_json(lead: Lead) -> dict[str, Any]:
    """The lead as the API shows it (what events and webhooks carry)."""
    return LeadOut.model_validate(lead).model_dump(mode="json")


_Q = TypeVar("_Q", bound="Select[*tuple[Any, ...]]")


def visible(principal: Principal, query: _Q) -> _Q:
    """Limit a lead query to what the principal may see."""
    if not principal.can("leads:read_all"):
        query = query.where(Lead.assigned_to == principal.user_id)
    return query


_HELD = "lovedcrm.leads.organizations"


async def organization_settings(
    session: AsyncSession, organization_id: uuid.UUID
) -> dict[str, Any]:
    org = await session.get(Organization, organization_id)
    if org is not None:
        hold_organization(session, org)
    return dict(org.settings or {}) if org is not None else {}


def hold_organization(session: AsyncSession, org: Organization) -> None:
    """Keep ``org`` (read in ``session``) for the session's later :func:`organization_settings`.
    The identity map holds objects weakly: without a reference the organization is read again
    by each caller of the same request (a create read it three times). Held for the session;
    an expired one (after a commit) is still read afresh."""
    session.info.setdefault(_HELD, {})[org.id] = org


def region_of(org_settings: dict[str, Any]) -> str:
    """The organization's phone region (ISO country code) for numbers typed without +."""
    return str(org_settings.get("phone_region", "BR"))


async def org_region(session: AsyncSession, principal: Principal) -> str:
    return region_of(await organization_settings(session, principal.org()))


async def get_lead(session: AsyncSession, principal: Principal, lead_id: uuid.UUID) -> Lead:
    principal.require("leads:read")
    query = visible(
        principal, select(Lead).where(Lead.id == lead_id, Lead.organization_id == principal.org())
    )
    lead: Lead | None = (await session.execute(query)).scalar_one_or_none()
    if lead is None:
        raise NotFound("No lead with that id.", code="lead_not_found")
    return lead


def may_see(principal: Principal, lead: Lead) -> bool:
    """``visible`` for a lead already read: the same rule, without a query."""
    return principal.can("leads:read") and (
        principal.can("leads:read_all") or lead.assigned_to == principal.user_id
    )


def may_edit(principal: Principal, lead: Lead) -> bool:
    return principal.can("leads:write") and (
        principal.can("leads:write_all") or lead.assigned_to == principal.user_id
    )


async def editable_lead(session: AsyncSession, principal: Principal, lead_id: uuid.UUID) -> Lead:
    """A lead the principal may change (404 when it is not theirs to change)."""
    principal.require("leads:write")
    lead = await get_lead(session, principal, lead_id)
    if not may_edit(principal, lead):
        raise NotFound("No lead with that id.", code="lead_not_found")
    return lead
