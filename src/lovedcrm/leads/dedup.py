"""Duplicate leads: the one rule that says two leads are the same person, and merging them.

**The rule** (:func:`match_reason`), used wherever a lead may come in twice — the create form,
``POST /api/v1/leads``, the import and a WhatsApp sender: a new lead and an existing one of the
same organization are the same person when they have

1. the same e-mail (normalised to lower case), or
2. the same phone (E.164; a Brazilian mobile with or without the ninth digit is one phone), or
3. both a company, a name similar above ``NAME_SIMILARITY`` and a company similar above
   ``COMPANY_SIMILARITY`` (pg_trgm similarity of the texts folded: lower case, no accents,
   punctuation as spaces).

The database only narrows the candidates (:func:`candidates_clause`: companies similar at 0.45
on the trigram index); the decision is always :func:`match_reason`'s, in Python, so every path
answers the same.

Merging keeps one lead, moves everything that points at the other (timeline, messages, calls,
calendar events, AI conversations, template usage) onto it, fills the kept lead's empty fields
from the other, deletes the other, and records both snapshots in one ``lead_merge`` audit row.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, Text, cast, func, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.core.errors import Conflict, NotFound, ValidationFailed
from lovedcrm.core.events import DomainEvent, emit
from lovedcrm.core.phones import equivalent_numbers, to_e164
from lovedcrm.core.principal import Principal
from lovedcrm.core.text import fold, similarity
from lovedcrm.leads import access
from lovedcrm.leads.models import Lead

NAME_SIMILARITY = 0.8
COMPANY_SIMILARITY = 0.6
MAX_CANDIDATES = 10

Reason = Literal["email", "phone", "name_and_company"]

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


@dataclass(frozen=True)
class Contact:
    """What identifies a person, normalised: e-mail (lower case), phone (E.164), name and
    company (as typed; folded when compared)."""

    email: str | None = None
    phone: str | None = None
    full_name: str | None = None
    company: str | None = None

    @classmethod
    def of(cls, lead: Lead) -> Contact:
        return cls(lead.email, lead.phone, lead.full_name, lead.company)

    @classmethod
    def from_values(cls, data: Mapping[str, Any], region: str) -> Contact:
        return cls(
            normalise_email(data.get("email")),
            normalise_phone(data.get("phone"), region),
            (data.get("full_name") or "").strip() or None,
            (data.get("company") or "").strip() or None,
        )

    def phones(self) -> list[str]:
        return equivalent_numbers(self.phone) if self.phone else []

    def has_name_and_company(self) -> bool:
        return bool(self.full_name and fold(self.full_name) and self.company and fold(self.company))


def match_reason(new: Contact, existing: Contact) -> Reason | None:
    """THE rule: why ``new`` is the same person as ``existing``, or None."""
    if new.email and existing.email and new.email == existing.email:
        return "email"
    if new.phone and existing.phone and existing.phone in new.phones():
        return "phone"
    if (
        new.has_name_and_company()
        and existing.has_name_and_company()
        and similarity(str(new.full_name), str(existing.full_name)) > NAME_SIMILARITY
        and similarity(str(new.company), str(existing.company)) > COMPANY_SIMILARITY
    ):
        return "name_and_company"
    return None


def candidates_clause(contacts: Iterable[Contact]) -> ColumnElement[bool] | None:
    """A superset of the leads :func:`match_reason` may match, for the database to narrow:
    the same e-mail, one of the phones, or a company trigram-similar at 0.45 (on the index,
    ``lovedcrm_similar_companies``, migration 0007)."""
    contacts = list(contacts)
    emails = sorted({c.email for c in contacts if c.email})
    phones = sorted({p for c in contacts for p in c.phones()})
    companies = sorted({fold(str(c.company)) for c in contacts if c.has_name_and_company()})
    clauses: list[ColumnElement[bool]] = []
    if emails:
        clauses.append(Lead.email.in_(emails))
    if phones:
        clauses.append(Lead.phone.in_(phones))
    if companies:
        similar = select(
            func.lovedcrm_similar_companies(cast(companies, ARRAY(Text)))
        ).scalar_subquery()
        clauses.append(Lead.id.in_(similar))
    return or_(*clauses) if clauses else None


async def find_duplicates(
    session: AsyncSession,
    organization_id: uuid.UUID,
    contact: Contact,
    exclude_id: uuid.UUID | None = None,
) -> list[tuple[Lead, Reason]]:
    """Leads of the organization that are the same person as ``contact`` (all of them,
    whoever they are assigned to: callers decide what to show), oldest first."""
    clause = candidates_clause([contact])
    if clause is None:
        return []
    # The candidates' contacts first (a new lead usually has none, and a row of five columns
    # costs the driver far less than a whole lead); the whole leads only of those that match.
    query = select(Lead.id, Lead.email, Lead.phone, Lead.full_name, Lead.company).where(
        Lead.organization_id == organization_id, clause
    )
    if exclude_id is not None:
        query = query.where(Lead.id != exclude_id)
    query = query.order_by(Lead.created_at, Lead.id)
    matched: dict[uuid.UUID, Reason] = {}
    for lead_id, *values in (await session.execute(query)).all():
        reason = match_reason(contact, Contact(*values))
        if reason is not None:
            matched[lead_id] = reason
            if len(matched) == MAX_CANDIDATES:
                break
    if not matched:
        return []
    whole = select(Lead).where(Lead.organization_id == organization_id, Lead.id.in_(list(matched)))
    leads = (await session.execute(whole)).scalars()
    by_id = {lead.id: lead for lead in leads}
    # In the candidates' order; a lead deleted meanwhile is no duplicate.
    return [(by_id[i], reason) for i, reason in matched.items() if i in by_id]


async def refuse_duplicates(
    session: AsyncSession, principal: Principal, data: dict[str, Any]
) -> None:
    """409 ``duplicate_lead`` when ``data`` (already cleaned) is the same person as existing
    leads. Only the candidates the principal may see are listed; the others are counted."""
    region = await access.org_region(session, principal)
    found = await find_duplicates(session, principal.org(), Contact.from_values(data, region))
    if not found:
        return
    shown = [
        (lead, reason)
        for lead, reason in found
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
                    "matched_on": [reason],
                }
                for lead, reason in shown
            ],
            "hidden_candidates": len(found) - len(shown),
        },
    )


@dataclass
class DuplicateIndex:
    """The leads a batch may duplicate (those the database found, then each one the batch
    creates), matched with the same rule — for the import, row by row."""

    leads: list[Lead] = field(default_factory=list)
    _by_email: dict[str, Lead] = field(default_factory=dict)
    _by_phone: dict[str, Lead] = field(default_factory=dict)
    # Leads with a name and a company, with their contact read once (not per comparison).
    _named: list[tuple[Lead, Contact]] = field(default_factory=list)

    def add(self, lead: Lead) -> None:
        self.leads.append(lead)
        contact = Contact.of(lead)
        if contact.has_name_and_company():
            self._named.append((lead, contact))
        if lead.email:
            self._by_email.setdefault(lead.email, lead)
        if lead.phone:
            self._by_phone.setdefault(lead.phone, lead)

    def match(self, contact: Contact) -> Lead | None:
        """The first lead (oldest first) that is the same person, by the rule's order."""
        if contact.email and contact.email in self._by_email:
            return self._by_email[contact.email]
        for phone in contact.phones():
            if phone in self._by_phone:
                return self._by_phone[phone]
        if contact.has_name_and_company():
            for lead, known in self._named:
                if match_reason(contact, known) == "name_and_company":
                    return lead
        return None

    @classmethod
    async def load(
        cls, session: AsyncSession, organization_id: uuid.UUID, contacts: list[Contact]
    ) -> DuplicateIndex:
        index = cls()
        clause = candidates_clause(contacts)
        if clause is None:
            return index
        query = (
            select(Lead)
            .where(Lead.organization_id == organization_id, clause)
            .order_by(Lead.created_at, Lead.id)
        )
        for lead in (await session.execute(query)).scalars():
            index.add(lead)
        return index


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
                access.visible(
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

    keep_before = access.snapshot(keep)
    merged_snapshot = access.snapshot(other)
    merged_body = access.lead_json(other)

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
    keep_after = access.snapshot(keep)
    changed = [f for f in access.AUDITED_FIELDS if keep_before[f] != keep_after[f]]

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
                "lead": access.lead_json(keep),
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
