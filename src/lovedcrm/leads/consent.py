"""Consent records (LGPD): for each lead and purpose, an append-only history of what the
person granted or withdrew, on which legal basis, when and from where. The latest record of
a purpose decides (:func:`may_contact`); nothing is ever updated or deleted, except with the
lead itself (ON DELETE CASCADE) or when the person's data is erased (the evidence is
anonymised, the history of decisions stays).

``record`` carries no permission check: jobs and webhooks use it (an ad form's consent, an
unsubscribe link). ``record_by`` is the member's path: permission to edit the lead, 404
outside the tenant, audited.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, String, select, text
from sqlalchemy.dialects.postgresql import JSONB, distinct_on
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.audit import service as audit
from lovedcrm.core.clock import now
from lovedcrm.core.errors import ValidationFailed
from lovedcrm.core.principal import Principal
from lovedcrm.db.base import Base, TenantMixin, named_check, org_id_unique, same_org_fk, uuid_pk
from lovedcrm.leads import access

PURPOSES = ("email_marketing", "whatsapp_marketing", "data_processing")
LEGAL_BASES = ("consent", "legitimate_interest", "contract", "legal_obligation")
STATUSES = ("granted", "withdrawn")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class LeadConsent(TenantMixin, Base):
    """One decision of a data subject about one purpose (migration 0022)."""

    __tablename__ = "lead_consents"
    __table_args__ = (
        org_id_unique("lead_consents"),
        same_org_fk("lead_consents", "lead_id", "leads", ondelete="CASCADE"),
        named_check(_in("purpose", PURPOSES), "lead_consents_purpose"),
        named_check(_in("legal_basis", LEGAL_BASES), "lead_consents_legal_basis"),
        named_check(_in("status", STATUSES), "lead_consents_status"),
        Index(
            "ix_lead_consents_lead_purpose",
            "organization_id",
            "lead_id",
            "purpose",
            "recorded_at",
            "created_at",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    lead_id: Mapped[uuid.UUID] = mapped_column()
    purpose: Mapped[str] = mapped_column(String(40))
    legal_basis: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(100))
    evidence: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    recorded_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Breaks ties between records of the same instant (a ManualClock, a burst of imports).
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )


def _check(purpose: str, legal_basis: str, status: str, source: str) -> None:
    if purpose not in PURPOSES:
        raise ValidationFailed("Unknown consent purpose.", code="consent_purpose_unknown")
    if legal_basis not in LEGAL_BASES:
        raise ValidationFailed("Unknown legal basis.", code="consent_legal_basis_unknown")
    if status not in STATUSES:
        raise ValidationFailed("Unknown consent status.", code="consent_status_unknown")
    if not source or len(source) > 100:
        raise ValidationFailed("The consent source is required.", code="consent_source_invalid")


async def record(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    lead_id: uuid.UUID,
    purpose: str,
    legal_basis: str,
    status: str,
    source: str,
    evidence: dict[str, Any] | None = None,
    user_id: uuid.UUID | None = None,
) -> LeadConsent:
    """Append a consent record (no permission check: jobs and webhooks use it)."""
    _check(purpose, legal_basis, status, source)
    row = LeadConsent(
        organization_id=organization_id,
        lead_id=lead_id,
        purpose=purpose,
        legal_basis=legal_basis,
        status=status,
        source=source,
        evidence=dict(evidence or {}),
        recorded_by=user_id,
        recorded_at=now(),
    )
    session.add(row)
    await session.flush()
    return row


async def record_by(
    session: AsyncSession,
    principal: Principal,
    lead_id: uuid.UUID,
    *,
    purpose: str,
    legal_basis: str,
    status: str,
    source: str = "manual",
    evidence: dict[str, Any] | None = None,
) -> LeadConsent:
    """A member records a consent: needs the right to edit the lead (404 otherwise)."""
    lead = await access.editable_lead(session, principal, lead_id)
    row = await record(
        session,
        organization_id=principal.org(),
        lead_id=lead.id,
        purpose=purpose,
        legal_basis=legal_basis,
        status=status,
        source=source,
        evidence=evidence,
        user_id=principal.user_id,
    )
    await audit.record_by(
        session,
        principal,
        "lead.consent_recorded",
        "lead",
        lead.id,
        {
            "after": {
                "purpose": purpose,
                "legal_basis": legal_basis,
                "status": status,
                "source": source,
            }
        },
    )
    return row


async def history(
    session: AsyncSession, principal: Principal, lead_id: uuid.UUID
) -> list[LeadConsent]:
    """Every record of a lead the principal can see, newest first."""
    lead = await access.get_lead(session, principal, lead_id)
    rows = await session.scalars(
        select(LeadConsent)
        .where(LeadConsent.organization_id == principal.org(), LeadConsent.lead_id == lead.id)
        .order_by(LeadConsent.recorded_at.desc(), LeadConsent.created_at.desc())
    )
    return list(rows)


async def latest(
    session: AsyncSession,
    organization_id: uuid.UUID,
    lead_ids: Iterable[uuid.UUID],
    purpose: str,
) -> dict[uuid.UUID, LeadConsent]:
    """The latest record of ``purpose`` for each of ``lead_ids`` that has one."""
    ids = list(dict.fromkeys(lead_ids))
    if not ids:
        return {}
    rows = await session.scalars(
        select(LeadConsent)
        .where(
            LeadConsent.organization_id == organization_id,
            LeadConsent.lead_id.in_(ids),
            LeadConsent.purpose == purpose,
        )
        .ext(distinct_on(LeadConsent.lead_id))
        .order_by(
            LeadConsent.lead_id, LeadConsent.recorded_at.desc(), LeadConsent.created_at.desc()
        )
    )
    return {row.lead_id: row for row in rows}


async def may_contact(
    session: AsyncSession,
    organization_id: uuid.UUID,
    lead_ids: Iterable[uuid.UUID],
    purpose: str = "email_marketing",
) -> set[uuid.UUID]:
    """The leads whose latest record for ``purpose`` is 'granted' (any legal basis)."""
    found = await latest(session, organization_id, lead_ids, purpose)
    return {lead_id for lead_id, row in found.items() if row.status == "granted"}
