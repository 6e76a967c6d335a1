"""JSON routes of LGPD and the audit trail (thin: rules in ``privacy.service``,
``privacy.trail`` and ``leads.consent``)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse

from lovedcrm.config import Settings
from lovedcrm.core.deps import DatabaseDep, Require, SessionDep, SettingsDep
from lovedcrm.core.errors import NotFound
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.core.schemas import IsoDate
from lovedcrm.core.storage import FileMissing, get_storage
from lovedcrm.leads import consent
from lovedcrm.privacy import service, trail
from lovedcrm.privacy.models import PrivacyRequest
from lovedcrm.privacy.schemas import (
    AuditDiffOut,
    AuditEntryOut,
    AuditPageOut,
    ConsentIn,
    ConsentOut,
    DownloadLinkOut,
    LoginFailureOut,
    PrivacyRequestOut,
    RetentionIn,
    RetentionOut,
)

router = APIRouter(prefix="/api/v1", tags=["privacy"])
LeadReader = Annotated[Principal, Depends(Require("leads:read"))]
LeadWriter = Annotated[Principal, Depends(Require("leads:write"))]
Exporter = Annotated[Principal, Depends(Require("leads:export"))]
Eraser = Annotated[Principal, Depends(Require("leads:delete"))]
Admin = Annotated[Principal, Depends(Require("settings:manage"))]
Owner = Annotated[Principal, Depends(Require("members:manage"))]
AuditReader = Annotated[Principal, Depends(Require("audit:read"))]

ZIP: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}
}


def _out(request: PrivacyRequest) -> PrivacyRequestOut:
    return PrivacyRequestOut.model_validate(request)


# --- consents ----------------------------------------------------------------------------------


@router.get(
    "/leads/{lead_id}/consents",
    response_model=list[ConsentOut],
    responses=problem_responses(401, 403, 404),
)
async def list_consents(
    lead_id: uuid.UUID, principal: LeadReader, session: SessionDep
) -> list[ConsentOut]:
    """The lead's consent history, newest first."""
    rows = await consent.history(session, principal, lead_id)
    return [ConsentOut.model_validate(r) for r in rows]


@router.post(
    "/leads/{lead_id}/consents",
    response_model=ConsentOut,
    status_code=201,
    responses=problem_responses(401, 403, 404, 422),
)
async def record_consent(
    lead_id: uuid.UUID, body: ConsentIn, principal: LeadWriter, session: SessionDep
) -> ConsentOut:
    """Record a consent decision (appended: the history is never rewritten)."""
    row = await consent.record_by(
        session,
        principal,
        lead_id,
        purpose=body.purpose,
        legal_basis=body.legal_basis,
        status=body.status,
        source=body.source,
        evidence=body.evidence,
    )
    return ConsentOut.model_validate(row)


# --- a lead's export and erasure -----------------------------------------------------------------


@router.post(
    "/leads/{lead_id}/privacy/export",
    response_model=PrivacyRequestOut,
    status_code=202,
    responses=problem_responses(401, 403, 404, 409),
)
async def export_lead(
    lead_id: uuid.UUID, principal: Exporter, session: SessionDep
) -> PrivacyRequestOut:
    """Queue the export of everything held about the lead (a zip: JSON, attachments,
    recordings). When done, ``POST /privacy/requests/{id}/link`` gives its download link."""
    return _out(await service.request_lead_export(session, principal, lead_id))


@router.post(
    "/leads/{lead_id}/privacy/erase",
    response_model=PrivacyRequestOut,
    status_code=202,
    responses=problem_responses(401, 403, 404, 409),
)
async def erase_lead(
    lead_id: uuid.UUID, principal: Eraser, _writer: LeadWriter, session: SessionDep
) -> PrivacyRequestOut:
    """Queue the erasure of the lead's personal data (anonymised everywhere; totals stay).
    Jobs queued for the lead send nothing from now on. Cannot be undone."""
    return _out(await service.request_lead_erasure(session, principal, lead_id))


# --- requests and downloads ----------------------------------------------------------------------


@router.get(
    "/privacy/requests",
    response_model=list[PrivacyRequestOut],
    responses=problem_responses(401, 403),
)
async def list_requests(
    principal: LeadReader,
    session: SessionDep,
    lead_id: Annotated[uuid.UUID | None, Query()] = None,
) -> list[PrivacyRequestOut]:
    """The organization's requests (admins) or your own, newest first (at most 200)."""
    return [_out(r) for r in await service.list_requests(session, principal, lead_id=lead_id)]


@router.get(
    "/privacy/requests/{request_id}",
    response_model=PrivacyRequestOut,
    responses=problem_responses(401, 403, 404),
)
async def get_request(
    request_id: uuid.UUID, principal: LeadReader, session: SessionDep
) -> PrivacyRequestOut:
    return _out(await service.get_request(session, principal, request_id))


@router.post(
    "/privacy/requests/{request_id}/link",
    response_model=DownloadLinkOut,
    responses=problem_responses(401, 403, 404, 409),
)
async def new_link(
    request_id: uuid.UUID, principal: LeadReader, session: SessionDep
) -> DownloadLinkOut:
    """A fresh single-use link to your finished export (any earlier link stops working)."""
    request, token = await service.new_link(session, principal, request_id)
    assert request.expires_at is not None
    return DownloadLinkOut(url=f"/api/v1/privacy/downloads/{token}", expires_at=request.expires_at)


async def _zip(settings: Settings, request: PrivacyRequest) -> Response:
    if not request.file_key:
        raise NotFound("This export has no file.", code="export_link_invalid")
    storage = get_storage(settings)
    try:
        data = await asyncio.to_thread(storage.read, request.file_key)
    except FileMissing as exc:
        raise NotFound("This export has no file.", code="export_link_invalid") from exc
    name = f"lgpd-{request.kind}-{request.id}.zip"
    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/privacy/downloads/{token}",
    response_class=Response,
    responses={**ZIP, **problem_responses(401, 403, 404)},
)
async def download(
    token: Annotated[str, Path(min_length=1, max_length=200)],
    principal: LeadReader,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Download an export: once, before it expires, by the member who asked only."""
    request = await service.redeem(session, principal, token)
    return await _zip(settings, request)


# --- the organization ---------------------------------------------------------------------------


@router.post(
    "/privacy/organization/export",
    response_model=PrivacyRequestOut,
    status_code=202,
    responses=problem_responses(401, 403),
)
async def export_organization(
    principal: Owner, _admin: Admin, session: SessionDep
) -> PrivacyRequestOut:
    """Queue the export of the whole organization (owner only)."""
    return _out(await service.request_org_export(session, principal))


@router.post(
    "/privacy/organization/deletion",
    response_model=PrivacyRequestOut,
    status_code=202,
    responses=problem_responses(401, 403, 409),
)
async def schedule_deletion(
    principal: Owner, _admin: Admin, session: SessionDep
) -> PrivacyRequestOut:
    """Schedule the deletion of the whole organization after a 30-day grace period (owner
    only; cancellable until then)."""
    return _out(await service.request_org_deletion(session, principal))


@router.delete(
    "/privacy/organization/deletion",
    response_model=PrivacyRequestOut,
    responses=problem_responses(401, 403, 404),
)
async def cancel_deletion(
    principal: Owner, _admin: Admin, session: SessionDep
) -> PrivacyRequestOut:
    """Cancel the scheduled deletion (owner only)."""
    return _out(await service.cancel_org_deletion(session, principal))


@router.get(
    "/privacy/retention", response_model=RetentionOut, responses=problem_responses(401, 403)
)
async def get_retention(principal: Admin, session: SessionDep) -> RetentionOut:
    return RetentionOut(**await service.get_retention(session, principal))


@router.put(
    "/privacy/retention",
    response_model=RetentionOut,
    responses=problem_responses(401, 403, 422),
)
async def set_retention(body: RetentionIn, principal: Admin, session: SessionDep) -> RetentionOut:
    """Retention periods (null: keep forever); a daily job applies them."""
    values = body.model_dump(exclude_unset=True)
    return RetentionOut(**await service.set_retention(session, principal, values))


# --- the audit trail ----------------------------------------------------------------------------


@router.get("/audit", response_model=AuditPageOut, responses=problem_responses(400, 401, 403, 422))
async def audit_trail(
    principal: AuditReader,
    session: SessionDep,
    user_id: Annotated[uuid.UUID | None, Query()] = None,
    action: Annotated[str | None, Query(max_length=100, pattern=r"^[\w.:-]+$")] = None,
    resource_type: Annotated[str | None, Query(max_length=100, pattern=r"^[\w.:-]+$")] = None,
    resource_id: Annotated[uuid.UUID | None, Query()] = None,
    since: Annotated[IsoDate | None, Query()] = None,
    until: Annotated[IsoDate | None, Query()] = None,
    security: Annotated[bool, Query(description="Security events only.")] = False,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AuditPageOut:
    """The organization's audit trail, newest first, with each change's before/after."""
    f = trail.TrailFilter(user_id, action, resource_type, resource_id, since, until, security)
    entries, next_cursor = await trail.page(session, principal, f, cursor=cursor, limit=limit)
    return AuditPageOut(
        items=[
            AuditEntryOut(
                id=e.row.id,
                created_at=e.row.created_at,
                user_id=e.row.user_id,
                member=e.member,
                action=e.row.action,
                resource_type=e.row.resource_type,
                resource_id=e.row.resource_id,
                ip_address=str(e.row.ip_address) if e.row.ip_address else None,
                user_agent=e.row.user_agent,
                success=e.row.success,
                failure_reason=e.row.failure_reason,
                risk_score=e.row.risk_score,
                diff=[AuditDiffOut(field=d.field, before=d.before, after=d.after) for d in e.diff],
            )
            for e in entries
        ],
        next_cursor=next_cursor,
    )


@router.get(
    "/audit/login-failures",
    response_model=list[LoginFailureOut],
    responses=problem_responses(401, 403),
)
async def login_failures(
    principal: AuditReader,
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=365)] = 30,
) -> list[LoginFailureOut]:
    """Failed log-ins into the members' accounts (kept outside any organization)."""
    rows = await trail.login_failures(session, principal, days=days)
    return [
        LoginFailureOut(**(r | {"ip_address": str(r["ip_address"]) if r["ip_address"] else None}))
        for r in rows
    ]


@router.get(
    "/audit/export.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        **problem_responses(401, 403, 422),
    },
)
async def audit_csv(
    principal: AuditReader,
    session: SessionDep,
    database: DatabaseDep,
    user_id: Annotated[uuid.UUID | None, Query()] = None,
    action: Annotated[str | None, Query(max_length=100, pattern=r"^[\w.:-]+$")] = None,
    resource_type: Annotated[str | None, Query(max_length=100, pattern=r"^[\w.:-]+$")] = None,
    since: Annotated[IsoDate | None, Query()] = None,
    until: Annotated[IsoDate | None, Query()] = None,
    security: Annotated[bool, Query()] = False,
) -> StreamingResponse:
    """The filtered trail as CSV (streamed)."""
    f = trail.TrailFilter(user_id, action, resource_type, None, since, until, security)
    body = await trail.export_csv(session, database, principal, f)
    return StreamingResponse(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )
