"""Leads: create, read, update, delete, with the role's scope and an audit row per change.

Scope: without ``leads:read_all`` a member sees only the leads assigned to them; without
``leads:write_all`` they edit only those (and cannot give a lead to someone else).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.auth.deps import Principal
from lovedcrm.core.errors import NotFound, ValidationFailed
from lovedcrm.core.pagination import decode_cursor, encode_cursor
from lovedcrm.core.phones import to_e164
from lovedcrm.leads.models import Lead
from lovedcrm.organizations.models import Organization, OrganizationMember
from lovedcrm.pipeline.models import PipelineStage

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


def visible(principal: Principal, query: Select[Any]) -> Select[Any]:
    """Limit a lead query to what the principal may see."""
    if not principal.can("leads:read_all"):
        query = query.where(Lead.assigned_to == principal.user_id)
    return query


@dataclass
class LeadPage:
    items: list[Lead]
    next_cursor: str | None


async def _org_region(session: AsyncSession, organization_id: uuid.UUID) -> str:
    org = await session.get(Organization, organization_id)
    return str((org.settings or {}).get("phone_region", "BR")) if org else "BR"


async def _clean(
    session: AsyncSession, principal: Principal, data: dict[str, Any]
) -> dict[str, Any]:
    errors: list[dict[str, str]] = []
    if data.get("email"):
        data["email"] = str(data["email"]).strip().lower()
    if data.get("phone"):
        try:
            data["phone"] = to_e164(str(data["phone"]), await _org_region(session, principal.org()))
        except ValueError as exc:
            errors.append({"field": "phone", "message": str(exc)})
    if data.get("stage_id") is not None:
        stage = await session.get(PipelineStage, data["stage_id"])
        if stage is None or stage.organization_id != principal.org() or not stage.is_active:
            errors.append(
                {
                    "field": "stage_id",
                    "message": "No active stage with that id in this organization",
                }
            )
    if data.get("assigned_to") is not None:
        member = await session.execute(
            select(OrganizationMember.id).where(
                OrganizationMember.organization_id == principal.org(),
                OrganizationMember.user_id == data["assigned_to"],
                OrganizationMember.is_active.is_(True),
            )
        )
        if member.first() is None:
            errors.append(
                {"field": "assigned_to", "message": "Not an active member of this organization"}
            )
    if data.get("status") == "lost" and not data.get("lost_reason"):
        errors.append({"field": "lost_reason", "message": "A lost lead needs a reason"})
    if errors:
        raise ValidationFailed(
            "The lead has invalid fields: " + ", ".join(e["field"] for e in errors),
            extra={"errors": errors},
        )
    return data


async def first_stage(session: AsyncSession, organization_id: uuid.UUID) -> PipelineStage:
    result = await session.execute(
        select(PipelineStage)
        .where(PipelineStage.organization_id == organization_id, PipelineStage.is_active.is_(True))
        .order_by(PipelineStage.stage_order)
        .limit(1)
    )
    stage = result.scalar_one_or_none()
    if stage is None:
        raise ValidationFailed("The organization has no active pipeline stage.", code="no_stage")
    return stage


async def create_lead(session: AsyncSession, principal: Principal, data: dict[str, Any]) -> Lead:
    principal.require("leads:write")
    if not principal.can("leads:write_all"):
        # Without write_all a member's new lead is theirs.
        data["assigned_to"] = principal.user_id
    data = await _clean(session, principal, data)
    if data.get("stage_id") is None:
        data["stage_id"] = (await first_stage(session, principal.org())).id
    lead = Lead(organization_id=principal.org(), **data)
    session.add(lead)
    await session.flush()
    await session.refresh(lead)
    await audit.record(
        session,
        action="create",
        resource_type="lead",
        resource_id=lead.id,
        organization_id=lead.organization_id,
        user_id=principal.user_id,
        changes=audit.diff(None, snapshot(lead)),
    )
    return lead


async def get_lead(session: AsyncSession, principal: Principal, lead_id: uuid.UUID) -> Lead:
    principal.require("leads:read")
    query = visible(
        principal, select(Lead).where(Lead.id == lead_id, Lead.organization_id == principal.org())
    )
    lead: Lead | None = (await session.execute(query)).scalar_one_or_none()
    if lead is None:
        raise NotFound("No lead with that id.", code="lead_not_found")
    return lead


async def _editable(session: AsyncSession, principal: Principal, lead_id: uuid.UUID) -> Lead:
    principal.require("leads:write")
    lead = await get_lead(session, principal, lead_id)
    if not principal.can("leads:write_all") and lead.assigned_to != principal.user_id:
        raise NotFound("No lead with that id.", code="lead_not_found")
    return lead


async def update_lead(
    session: AsyncSession, principal: Principal, lead_id: uuid.UUID, changes: dict[str, Any]
) -> Lead:
    lead = await _editable(session, principal, lead_id)
    if (
        "assigned_to" in changes
        and changes["assigned_to"] != lead.assigned_to
        and not principal.can("leads:write_all")
    ):
        from lovedcrm.core.errors import Forbidden

        raise Forbidden(
            "You cannot reassign leads.",
            code="permission_denied",
            extra={"permission": "leads:write_all"},
        )
    merged = {**snapshot(lead), **changes}
    cleaned = await _clean(
        session, principal, {k: v for k, v in merged.items() if k in changes or k == "lost_reason"}
    )
    before = snapshot(lead)
    for key, value in cleaned.items():
        setattr(lead, key, value)
    if changes.get("status") == "converted" and lead.converted_at is None:
        lead.converted_at = func.now()
    lead.updated_at = func.now()
    await session.flush()
    await session.refresh(lead)
    await audit.record(
        session,
        action="update",
        resource_type="lead",
        resource_id=lead.id,
        organization_id=lead.organization_id,
        user_id=principal.user_id,
        changes=audit.diff(before, snapshot(lead)),
    )
    return lead


async def delete_lead(session: AsyncSession, principal: Principal, lead_id: uuid.UUID) -> None:
    principal.require("leads:delete")
    lead = await get_lead(session, principal, lead_id)
    before = snapshot(lead)
    await session.delete(lead)
    await session.flush()
    await audit.record(
        session,
        action="delete",
        resource_type="lead",
        resource_id=lead_id,
        organization_id=principal.org(),
        user_id=principal.user_id,
        changes=audit.diff(before, None),
    )


async def list_leads(
    session: AsyncSession,
    principal: Principal,
    *,
    limit: int = 50,
    cursor: str | None = None,
    stage_id: uuid.UUID | None = None,
    assigned_to: uuid.UUID | None = None,
    status: str | None = None,
    q: str | None = None,
) -> LeadPage:
    principal.require("leads:read")
    query = visible(principal, select(Lead).where(Lead.organization_id == principal.org()))
    if stage_id:
        query = query.where(Lead.stage_id == stage_id)
    if assigned_to:
        query = query.where(Lead.assigned_to == assigned_to)
    if status:
        query = query.where(Lead.status == status)
    if q:
        like = f"%{q.strip()}%"
        query = query.where(
            or_(
                Lead.full_name.ilike(like),
                Lead.email.ilike(like),
                Lead.company.ilike(like),
                Lead.phone.ilike(like),
            )
        )
    if cursor:
        created_raw, id_raw = decode_cursor(cursor, 2)
        try:
            created, last_id = datetime.fromisoformat(created_raw), uuid.UUID(id_raw)
        except ValueError as exc:
            from lovedcrm.core.pagination import BadCursor

            raise BadCursor(
                "The cursor is not valid. Use the next_cursor of a previous page."
            ) from exc
        query = query.where(
            or_(Lead.created_at < created, and_(Lead.created_at == created, Lead.id < last_id))
        )
    rows = list(
        (
            await session.execute(
                query.order_by(Lead.created_at.desc(), Lead.id.desc()).limit(limit + 1)
            )
        ).scalars()
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(
            [last.created_at.isoformat() if last.created_at else "", last.id]
        )
    return LeadPage(items=rows, next_cursor=next_cursor)


def money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"
