"""Duplicate leads: finding them (on create and on import) and merging two into one.

A lead is a duplicate candidate of another in the same organization when it has the same
normalised e-mail (lower case), the same phone in E.164, or a very similar name (pg_trgm
``similarity`` above ``NAME_SIMILARITY``) at a similar company (above
``COMPANY_SIMILARITY``); names and companies are compared lower case and without accents.

Merging keeps one lead, moves everything that points at the other (timeline, messages, calls,
calendar events, AI conversations, template usage) onto it, fills the kept lead's empty fields
from the other, deletes the other, and records both snapshots in one ``lead_merge`` audit row.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from sqlalchemy import ColumnElement, and_, func, literal, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.core.errors import Conflict, NotFound, ValidationFailed
from lovedcrm.core.events import DomainEvent, emit
from lovedcrm.core.phones import to_e164
from lovedcrm.core.principal import Principal
from lovedcrm.leads import service
from lovedcrm.leads.models import Lead

NAME_SIMILARITY = 0.8
COMPANY_SIMILARITY = 0.6
MAX_CANDIDATES = 10

# Tables whose rows point at a lead and follow it into the kept lead on a merge.
LEAD_CHILD_TABLES = (
    "lead_activities",
    "messages",
    "call_logs",
    "calendar_events",
    "ai_conversations",
    "template_usage_stats",
)

# Fields copied from the merged lead when the kept one has none.
FILLABLE_FIELDS = (
    "email",
    "phone",
    "company",
    "job_title",
    "assigned_to",
    "source",
    "estimated_value",
)


def _folded(value: Any) -> ColumnElement[Any]:
    return func.unaccent(func.lower(value))


def normalise_email(email: str | None) -> str | None:
    email = (email or "").strip().lower()
    return email or None


def normalise_phone(phone: str | None, region: str) -> str | None:
    """E.164, or None when the text is empty or not a phone number."""
    if not phone or not phone.strip():
        return None
    with contextlib.suppress(ValueError):
        return to_e164(phone, region)
    return None


def similar_name_and_company(
    name_col: Any, company_col: Any, full_name: str, company: str
) -> ColumnElement[bool]:
    return and_(
        company_col.is_not(None),
        func.similarity(_folded(name_col), _folded(literal(full_name))) > NAME_SIMILARITY,
        func.similarity(_folded(company_col), _folded(literal(company))) > COMPANY_SIMILARITY,
    )


async def find_duplicates(
    session: AsyncSession,
    principal: Principal,
    email: str | None,
    phone: str | None,
    full_name: str | None,
    company: str | None,
    exclude_id: uuid.UUID | None = None,
) -> list[Lead]:
    """Leads of the principal's organization that look like the same person (all of them,
    whoever they are assigned to: callers decide what to show)."""
    org_id = principal.org()
    region = service._region(await service._org(session, org_id))
    clauses: list[ColumnElement[bool]] = []
    if email := normalise_email(email):
        clauses.append(Lead.email == email)
    if phone := normalise_phone(phone, region):
        clauses.append(Lead.phone == phone)
    if full_name and full_name.strip() and company and company.strip():
        clauses.append(
            similar_name_and_company(
                Lead.full_name, Lead.company, full_name.strip(), company.strip()
            )
        )
    if not clauses:
        return []
    query = select(Lead).where(Lead.organization_id == org_id, or_(*clauses))
    if exclude_id is not None:
        query = query.where(Lead.id != exclude_id)
    query = query.order_by(Lead.created_at, Lead.id).limit(MAX_CANDIDATES)
    return list((await session.execute(query)).scalars())


def _reasons(lead: Lead, email: str | None, phone: str | None) -> list[str]:
    reasons = []
    if email and lead.email == email:
        reasons.append("email")
    if phone and lead.phone == phone:
        reasons.append("phone")
    return reasons or ["name_and_company"]


async def refuse_duplicates(
    session: AsyncSession, principal: Principal, data: dict[str, Any]
) -> None:
    """409 ``duplicate_lead`` when ``data`` (already cleaned) matches existing leads. Only the
    candidates the principal may see are listed; the others are counted."""
    found = await find_duplicates(
        session,
        principal,
        data.get("email"),
        data.get("phone"),
        data.get("full_name"),
        data.get("company"),
    )
    if not found:
        return
    shown = [
        lead
        for lead in found
        if principal.can("leads:read_all") or lead.assigned_to == principal.user_id
    ]
    raise Conflict(
        "This lead looks like a duplicate of an existing one (same e-mail or phone, or a very "
        "similar name and company). Merge them, or send allow_duplicate: true to create it "
        "anyway.",
        code="duplicate_lead",
        extra={
            "candidates": [
                {
                    "id": str(lead.id),
                    "full_name": lead.full_name,
                    "email": lead.email,
                    "phone": lead.phone,
                    "company": lead.company,
                    "matched_on": _reasons(lead, data.get("email"), data.get("phone")),
                }
                for lead in shown
            ],
            "hidden_candidates": len(found) - len(shown),
        },
    )


# --- merge --------------------------------------------------------------------------------


async def merge(
    session: AsyncSession, principal: Principal, keep_id: uuid.UUID, merge_id: uuid.UUID
) -> Lead:
    principal.require("leads:write_all")
    principal.require("leads:delete")
    if keep_id == merge_id:
        raise ValidationFailed("A lead cannot be merged into itself.", code="merge_same_lead")
    org_id = principal.org()
    # Both rows locked, in id order (two merges of the same pair cannot deadlock).
    rows = (
        (
            await session.execute(
                service.visible(
                    principal,
                    select(Lead)
                    .where(Lead.organization_id == org_id, Lead.id.in_([keep_id, merge_id]))
                    .order_by(Lead.id)
                    .with_for_update(),
                )
            )
        )
        .scalars()
        .all()
    )
    by_id = {lead.id: lead for lead in rows}
    keep, other = by_id.get(keep_id), by_id.get(merge_id)
    if keep is None or other is None:
        raise NotFound("No lead with that id.", code="lead_not_found")

    keep_before = service.snapshot(keep)
    merged_snapshot = service.snapshot(other)
    merged_body = service.lead_json(other)

    moved: dict[str, int] = {}
    for table in LEAD_CHILD_TABLES:
        result = await session.execute(
            text(
                f"UPDATE {table} SET lead_id = :keep"  # table: from the fixed list above
                " WHERE organization_id = :org AND lead_id = :other"
            ),
            {"keep": keep.id, "other": other.id, "org": org_id},
        )
        moved[table] = int(result.rowcount)  # type: ignore[attr-defined]

    for name in FILLABLE_FIELDS:
        if getattr(keep, name) in (None, "") and getattr(other, name) not in (None, ""):
            setattr(keep, name, getattr(other, name))
    if other.custom_fields:
        keep.custom_fields = {**other.custom_fields, **(keep.custom_fields or {})}
    if other.last_activity_at and (
        keep.last_activity_at is None or other.last_activity_at > keep.last_activity_at
    ):
        keep.last_activity_at = other.last_activity_at
    keep.updated_at = func.now()

    await session.delete(other)
    await session.flush()
    await session.refresh(keep)
    keep_after = service.snapshot(keep)
    changed = [f for f in service.AUDITED_FIELDS if keep_before[f] != keep_after[f]]

    await audit.record(
        session,
        action="lead_merge",
        resource_type="lead",
        resource_id=keep.id,
        organization_id=org_id,
        user_id=principal.user_id,
        changes={
            "kept_id": str(keep.id),
            "merged_id": str(merge_id),
            "kept_before": keep_before,
            "merged": merged_snapshot,
            "kept_after": keep_after,
            "moved": moved,
        },
    )
    await emit(
        session,
        DomainEvent(
            type="lead.updated",
            organization_id=org_id,
            data={
                "lead_id": str(keep.id),
                "changed": changed,
                "merged_from": str(merge_id),
                "lead": service.lead_json(keep),
            },
            actor_id=principal.user_id,
        ),
    )
    await emit(
        session,
        DomainEvent(
            type="lead.deleted",
            organization_id=org_id,
            data={"lead_id": str(merge_id), "merged_into": str(keep.id), "lead": merged_body},
            actor_id=principal.user_id,
        ),
    )
    return keep
