"""LGPD use cases: a lead's export and erasure, the whole organization's export and deletion
(owner only, with a grace period), retention settings, and the downloads of exports.

Each request is a ``privacy_requests`` row and a job (``privacy.jobs``); the job writes the
receipt. An export's link is single-use, expires after ``EXPORT_LINK_TTL`` and is refused to
any member but the one who asked (404, as for a link that does not exist).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.core.clock import now
from lovedcrm.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from lovedcrm.core.principal import Principal
from lovedcrm.core.security import new_token, token_hash
from lovedcrm.jobs.queue import enqueue
from lovedcrm.leads import service as leads
from lovedcrm.organizations.models import Organization
from lovedcrm.privacy import erasure
from lovedcrm.privacy.models import PrivacyRequest

EXPORT_LINK_TTL = timedelta(days=7)
DELETION_GRACE = timedelta(days=30)

LEAD_EXPORT_JOB = "privacy.lead_export"
LEAD_ERASURE_JOB = "privacy.lead_erasure"
ORG_EXPORT_JOB = "privacy.org_export"
ORG_DELETION_JOB = "privacy.org_deletion"

# organizations.settings["privacy"]: each a whole number or null (keep forever).
RETENTION_LIMITS: dict[str, tuple[int, int]] = {
    "audit_retention_days": (30, 3650),
    "message_retention_months": (1, 120),
    "recording_retention_months": (1, 120),
}


@dataclass(frozen=True)
class NewRequest:
    request: PrivacyRequest
    download_token: str | None = None


def require_owner(principal: Principal) -> None:
    """The organization's owner: an admin (settings and members), never an API key."""
    principal.require("settings:manage")
    principal.require("members:manage")
    if principal.role != "admin" or principal.api_key_id is not None:
        raise Forbidden("Only the organization's owner may do this.", code="owner_only")


async def _queue(
    session: AsyncSession,
    principal: Principal,
    kind: str,
    job_type: str,
    action: str,
    *,
    lead_id: uuid.UUID | None = None,
    scheduled_for: datetime | None = None,
) -> PrivacyRequest:
    """A request row, its job (at ``scheduled_for`` or now) and the audit row, at once."""
    request = PrivacyRequest(
        organization_id=principal.org(),
        lead_id=lead_id,
        kind=kind,
        status="pending",
        requested_by=principal.user_id,
        receipt={},
        scheduled_for=scheduled_for,
        created_at=now(),
    )
    session.add(request)
    await session.flush()
    await enqueue(
        session,
        job_type,
        {"request_id": str(request.id)},
        organization_id=principal.org(),
        scheduled_for=scheduled_for,
    )
    changes: dict[str, Any] = {"request": request.id}
    if scheduled_for is not None:
        changes["scheduled_for"] = scheduled_for
    resource = ("lead", lead_id) if lead_id is not None else ("organization", principal.org())
    await audit.record_by(session, principal, action, resource[0], resource[1], changes)
    return request


def _not_erased(lead: Any) -> None:
    if lead.erased_at is not None:
        raise Conflict("This lead's data was erased.", code="lead_erased")


async def request_lead_export(
    session: AsyncSession, principal: Principal, lead_id: uuid.UUID
) -> PrivacyRequest:
    """Queue the export of everything held about a lead (who may export and see it)."""
    principal.require("leads:export")
    lead = await leads.get_lead(session, principal, lead_id)
    _not_erased(lead)
    return await _queue(
        session,
        principal,
        "lead_export",
        LEAD_EXPORT_JOB,
        "privacy.export_requested",
        lead_id=lead.id,
    )


async def request_lead_erasure(
    session: AsyncSession, principal: Principal, lead_id: uuid.UUID
) -> PrivacyRequest:
    """Queue the erasure of a lead's personal data (who may delete leads and edit this one).
    The lead is marked at once, so jobs already queued for it send nothing."""
    principal.require("leads:delete")
    lead = await leads.editable_lead(session, principal, lead_id)
    _not_erased(lead)
    lead.erased_at = now()
    await session.flush()
    await erasure.stop_pending(session, principal.org(), lead.id)
    return await _queue(
        session,
        principal,
        "lead_erasure",
        LEAD_ERASURE_JOB,
        "privacy.erasure_requested",
        lead_id=lead.id,
    )


async def request_org_export(session: AsyncSession, principal: Principal) -> PrivacyRequest:
    require_owner(principal)
    return await _queue(
        session, principal, "org_export", ORG_EXPORT_JOB, "privacy.org_export_requested"
    )


async def pending_deletion(
    session: AsyncSession, organization_id: uuid.UUID
) -> PrivacyRequest | None:
    found: PrivacyRequest | None = await session.scalar(
        select(PrivacyRequest).where(
            PrivacyRequest.organization_id == organization_id,
            PrivacyRequest.kind == "org_deletion",
            PrivacyRequest.status == "pending",
        )
    )
    return found


async def request_org_deletion(session: AsyncSession, principal: Principal) -> PrivacyRequest:
    """Schedule the deletion of the whole organization after the grace period."""
    require_owner(principal)
    if await pending_deletion(session, principal.org()) is not None:
        raise Conflict("A deletion is already scheduled.", code="deletion_already_scheduled")
    return await _queue(
        session,
        principal,
        "org_deletion",
        ORG_DELETION_JOB,
        "privacy.org_deletion_scheduled",
        scheduled_for=now() + DELETION_GRACE,
    )


async def cancel_org_deletion(session: AsyncSession, principal: Principal) -> PrivacyRequest:
    require_owner(principal)
    request = await pending_deletion(session, principal.org())
    if request is None:
        raise NotFound("No deletion is scheduled.", code="deletion_not_scheduled")
    request.status = "cancelled"
    request.completed_at = now()
    await session.flush()
    await audit.record_by(
        session,
        principal,
        "privacy.org_deletion_cancelled",
        "organization",
        principal.org(),
        {"request": request.id},
    )
    return request


def _visible(principal: Principal) -> Any:
    query = select(PrivacyRequest).where(PrivacyRequest.organization_id == principal.org())
    if not principal.can("settings:manage"):
        query = query.where(PrivacyRequest.requested_by == principal.user_id)
    return query


async def list_requests(
    session: AsyncSession, principal: Principal, *, lead_id: uuid.UUID | None = None
) -> list[PrivacyRequest]:
    """The organization's requests (an admin) or the principal's own, newest first."""
    query = _visible(principal)
    if lead_id is not None:
        query = query.where(PrivacyRequest.lead_id == lead_id)
    rows = await session.scalars(
        query.order_by(PrivacyRequest.created_at.desc(), PrivacyRequest.id.desc()).limit(200)
    )
    return list(rows)


async def get_request(
    session: AsyncSession, principal: Principal, request_id: uuid.UUID
) -> PrivacyRequest:
    found: PrivacyRequest | None = await session.scalar(
        _visible(principal).where(PrivacyRequest.id == request_id)
    )
    if found is None:
        raise NotFound("No privacy request with that id.", code="privacy_request_not_found")
    return found


def issue_link(request: PrivacyRequest) -> str:
    """A fresh single-use download token for a finished export (its hash is stored)."""
    token = new_token()
    request.token_hash = token_hash(token)
    request.expires_at = now() + EXPORT_LINK_TTL
    request.downloaded_at = None
    return token


async def new_link(
    session: AsyncSession, principal: Principal, request_id: uuid.UUID
) -> tuple[PrivacyRequest, str]:
    """Another link for one's own finished export (the previous one stops working)."""
    request = await get_request(session, principal, request_id)
    if request.requested_by != principal.user_id:
        raise NotFound("No privacy request with that id.", code="privacy_request_not_found")
    if request.kind not in ("lead_export", "org_export") or request.status != "done":
        raise Conflict("This export is not ready.", code="export_not_ready")
    token = issue_link(request)
    await session.flush()
    return request, token


async def redeem(session: AsyncSession, principal: Principal, token: str) -> PrivacyRequest:
    """Use a download link: once, before it expires, by the member who asked only."""
    if not token or len(token) > 200:
        raise NotFound("This download link is not valid.", code="export_link_invalid")
    claimed = await session.execute(
        update(PrivacyRequest)
        .where(
            PrivacyRequest.organization_id == principal.org(),
            PrivacyRequest.token_hash == token_hash(token),
            PrivacyRequest.requested_by == principal.user_id,
            PrivacyRequest.downloaded_at.is_(None),
            PrivacyRequest.expires_at > now(),
            PrivacyRequest.status == "done",
        )
        .values(downloaded_at=now())
        .returning(PrivacyRequest.id)
    )
    request_id = claimed.scalar_one_or_none()
    if request_id is None:
        raise NotFound(
            "This download link is not valid, was already used or has expired.",
            code="export_link_invalid",
        )
    request = await session.get(PrivacyRequest, request_id, populate_existing=True)
    assert request is not None
    await audit.record_by(
        session,
        principal,
        "privacy.export_downloaded",
        "privacy_request",
        request.id,
        {"kind": request.kind},
    )
    return request


# --- retention -------------------------------------------------------------------------------


def retention_of(org_settings: dict[str, Any] | None) -> dict[str, int | None]:
    stored = dict((org_settings or {}).get("privacy") or {})
    return {key: stored.get(key) for key in RETENTION_LIMITS}


async def get_retention(session: AsyncSession, principal: Principal) -> dict[str, int | None]:
    principal.require("settings:manage")
    org = await session.get(Organization, principal.org())
    return retention_of(org.settings if org is not None else None)


async def set_retention(
    session: AsyncSession, principal: Principal, values: dict[str, int | None]
) -> dict[str, int | None]:
    principal.require("settings:manage")
    for key, value in values.items():
        if key not in RETENTION_LIMITS:
            raise ValidationFailed("Unknown retention setting.", code="retention_unknown")
        low, high = RETENTION_LIMITS[key]
        if value is not None and (isinstance(value, bool) or not low <= value <= high):
            raise ValidationFailed(
                "The retention period is out of range.", code="retention_out_of_range"
            )
    org = (
        await session.execute(
            select(Organization)
            .where(Organization.id == principal.org())
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    before = retention_of(org.settings)
    after = before | values
    org.settings = {**(org.settings or {}), "privacy": after}
    await session.flush()
    await audit.record_by(
        session,
        principal,
        "privacy.retention_updated",
        "organization",
        org.id,
        audit.diff(before, after),
    )
    return after
