"""Pages of LGPD and the audit trail: Configurações → Auditoria (filters, keyset pages, the
diff of each change, security events, CSV), Configurações → Privacidade (retention, the
whole organization's export and deletion), and the lead page's "Privacidade (LGPD)" panel
(consents, export, erasure; loaded by hx-get since leads cannot import privacy)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from lovedcrm.core.deps import DatabaseDep, SessionDep, SettingsDep
from lovedcrm.core.errors import AppError
from lovedcrm.core.storage import FileMissing, get_storage
from lovedcrm.leads import consent
from lovedcrm.leads import service as leads
from lovedcrm.privacy import service, trail
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import (
    Member,
    PageError,
    Shell,
    attempt,
    page_router,
    parse_uuid,
    redirect,
    render,
    require,
)

router = page_router()
AuditReader = Annotated[Shell, Depends(require("audit:read"))]
Admin = Annotated[Shell, Depends(require("settings:manage"))]

# The services' messages the pages show as they come (kept in the catalogs by extraction).
SERVICE_MESSAGES = (
    N_("This lead's data was erased."),
    N_("A deletion is already scheduled."),
    N_("No deletion is scheduled."),
    N_("Only the organization's owner may do this."),
    N_("This export is not ready."),
    N_("This download link is not valid, was already used or has expired."),
    N_("This download link is not valid."),
    N_("This export has no file."),
    N_("No privacy request with that id."),
    N_("The retention period is out of range."),
    N_("Unknown retention setting."),
    N_("Unknown consent purpose."),
    N_("Unknown legal basis."),
    N_("Unknown consent status."),
    N_("The consent source is required."),
)


def purpose_names(t: Any) -> dict[str, str]:
    return {
        "email_marketing": t("E-mail marketing"),
        "whatsapp_marketing": t("WhatsApp marketing"),
        "data_processing": t("Data processing"),
    }


def basis_names(t: Any) -> dict[str, str]:
    return {
        "consent": t("Consent"),
        "legitimate_interest": t("Legitimate interest"),
        "contract": t("Contract"),
        "legal_obligation": t("Legal obligation"),
    }


def request_names(t: Any) -> dict[str, str]:
    return {
        "lead_export": t("Data export"),
        "lead_erasure": t("Erasure"),
        "org_export": t("Organization export"),
        "org_deletion": t("Organization deletion"),
    }


def status_names(t: Any) -> dict[str, str]:
    return {
        "pending": t("Waiting"),
        "running": t("Running"),
        "done": t("Done"),
        "failed": t("Failed"),
        "cancelled": t("Cancelled"),
        "granted": t("Granted"),
        "withdrawn": t("Withdrawn"),
    }


# --- the audit page ------------------------------------------------------------------------------


def field_names(t: Any) -> dict[str, str]:
    """The diff's field names as the lead page says them (others are shown as stored)."""
    return {
        "full_name": t("Name"),
        "email": t("E-mail"),
        "phone": t("Phone"),
        "company": t("Company"),
        "job_title": t("Job title"),
        "stage_id": t("Stage"),
        "assigned_to": t("Owner"),
        "source": t("Source"),
        "estimated_value": t("Estimated value"),
        "probability_percentage": t("Probability"),
        "custom_fields": t("Custom fields"),
        "status": t("Status"),
        "title": t("Title"),
    }


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _filter(request: Request) -> tuple[trail.TrailFilter, dict[str, str]]:
    q = request.query_params
    raw = {
        k: (q.get(k) or "").strip()[:100]
        for k in ("member", "action", "entity", "since", "until", "security")
    }
    f = trail.TrailFilter(
        user_id=parse_uuid(raw["member"]),
        action=raw["action"] or None,
        resource_type=raw["entity"] or None,
        since=_date(raw["since"]),
        until=_date(raw["until"]),
        security_only=raw["security"] == "1",
    )
    return f, {k: v for k, v in raw.items() if v}


@router.get("/settings/audit", response_class=HTMLResponse)
async def audit_page(request: Request, frame: AuditReader, session: SessionDep) -> Response:
    f, raw = _filter(request)
    cursor = (request.query_params.get("cursor") or "")[:500] or None
    try:
        entries, next_cursor = await trail.page(session, frame.principal, f, cursor=cursor)
    except AppError:
        entries, next_cursor = await trail.page(session, frame.principal, f)
    failures = await trail.login_failures(session, frame.principal)
    return render(
        request,
        "privacy/audit.html",
        **frame.context("settings"),
        tab="audit",
        entries=entries,
        next_url=f"/settings/audit?{urlencode(raw | {'cursor': next_cursor})}"
        if next_cursor
        else None,
        csv_url=f"/settings/audit.csv?{urlencode(raw)}",
        filters=raw,
        members=await trail.members(session, frame.principal),
        actions=await trail.actions(session, frame.principal),
        entities=("lead", "user", "organization", "api_key", "privacy_request", "message"),
        failures=failures,
        field_names=field_names(frame.i18n.gettext),
    )


@router.get("/settings/audit.csv")
async def audit_csv(
    request: Request, frame: AuditReader, session: SessionDep, database: DatabaseDep
) -> Response:
    f, _raw = _filter(request)
    body = await trail.export_csv(session, database, frame.principal, f)
    return StreamingResponse(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="auditoria.csv"'},
    )


# --- the privacy settings page --------------------------------------------------------------------


async def _privacy_page(
    request: Request,
    frame: Shell,
    session: SessionDep,
    *,
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    principal = frame.principal
    retention = await service.get_retention(session, principal)
    requests = await service.list_requests(session, principal)
    deletion = await service.pending_deletion(session, principal.org())
    t = frame.i18n.gettext
    return render(
        request,
        "privacy/settings.html",
        status_code,
        **frame.context("settings"),
        tab="audit",
        retention=retention,
        requests=[r for r in requests if r.kind in ("org_export", "org_deletion")],
        deletion=deletion,
        is_owner=principal.role == "admin" and principal.can("members:manage"),
        error=error,
        request_names=request_names(t),
        status_names=status_names(t),
    )


@router.get("/settings/privacy", response_class=HTMLResponse)
async def privacy_page(request: Request, frame: Admin, session: SessionDep) -> Response:
    return await _privacy_page(request, frame, session)


def _int_or_none(value: object) -> int | None:
    text = str(value or "").strip()
    return int(text) if text.isdigit() else None


@router.post("/settings/privacy/retention", response_class=HTMLResponse)
async def retention_update(request: Request, frame: Admin, session: SessionDep) -> Response:
    form = await request.form()
    values = {key: _int_or_none(form.get(key)) for key in service.RETENTION_LIMITS}
    t = frame.i18n.gettext
    try:
        await attempt(session, service.set_retention(session, frame.principal, values))
    except AppError as exc:
        return await _privacy_page(request, frame, session, status_code=422, error=t(exc.detail))
    return redirect("/settings/privacy", t("Retention saved."))


@router.post("/settings/privacy/organization/{action}", response_class=HTMLResponse)
async def organization_action(
    request: Request, action: str, frame: Admin, session: SessionDep
) -> Response:
    t = frame.i18n.gettext
    calls = {
        "export": (service.request_org_export, t("The export is being prepared.")),
        "delete": (service.request_org_deletion, t("The deletion is scheduled.")),
        "cancel": (service.cancel_org_deletion, t("The deletion was cancelled.")),
    }
    if action not in calls:
        raise PageError(404, N_("Not found"), N_("Page not found."), back_url="/settings/privacy")
    fn, done = calls[action]
    if action == "delete":
        form = await request.form()
        if str(form.get("confirm") or "").strip() != (frame.org.name if frame.org else ""):
            return await _privacy_page(
                request,
                frame,
                session,
                status_code=422,
                error=t("Type the organization's name to confirm."),
            )
    try:
        await attempt(session, fn(session, frame.principal))
    except AppError as exc:
        return redirect("/settings/privacy", t(exc.detail), "error")
    return redirect("/settings/privacy", done)


# --- downloads ---------------------------------------------------------------------------------


@router.post("/privacy/requests/{request_id}/download")
async def download_link(
    request: Request, request_id: str, frame: Member, session: SessionDep
) -> Response:
    """A fresh single-use link to one's own finished export, followed at once."""
    parsed = parse_uuid(request_id)
    if parsed is None:
        raise PageError(404, N_("Not found"), N_("No privacy request with that id."))
    _req, token = await service.new_link(session, frame.principal, parsed)
    return redirect(f"/privacy/downloads/{token}", frame.i18n.gettext("Downloading the export."))


@router.get("/privacy/downloads/{token}")
async def download(
    token: str, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    """The zip: once, before it expires, to the member who asked only (404 otherwise)."""
    try:
        req = await attempt(session, service.redeem(session, frame.principal, token[:200]))
    except AppError as exc:
        raise PageError(
            404,
            N_("Not found"),
            N_("This download link is not valid, was already used or has expired."),
            back_url="/leads",
        ) from exc
    storage = get_storage(settings)
    try:
        data = await asyncio.to_thread(storage.read, req.file_key or "")
    except (FileMissing, ValueError) as exc:
        raise PageError(404, N_("Not found"), N_("This export has no file.")) from exc
    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="lgpd-{req.kind}-{req.id}.zip"',
            "Cache-Control": "no-store",
        },
    )


# --- the lead page's panel ------------------------------------------------------------------------


@router.get("/leads/{lead_id}/privacy-panel", response_class=HTMLResponse)
async def privacy_panel(
    request: Request, lead_id: str, frame: Member, session: SessionDep
) -> Response:
    parsed = parse_uuid(lead_id)
    if parsed is None:
        return HTMLResponse("", status_code=404)
    try:
        lead = await leads.get_lead(session, frame.principal, parsed)
        history = await consent.history(session, frame.principal, parsed)
    except AppError:
        return HTMLResponse("", status_code=404)
    requests = await service.list_requests(session, frame.principal, lead_id=parsed)
    t = frame.i18n.gettext
    p = frame.principal
    return render(
        request,
        "privacy/_lead_panel.html",
        **frame.context("leads"),
        lead=lead,
        consents=history,
        requests=requests,
        can_edit=leads.may_edit(p, lead),
        can_export=p.can("leads:export"),
        can_erase=p.can("leads:delete") and leads.may_edit(p, lead),
        purposes=purpose_names(t),
        bases=basis_names(t),
        request_names=request_names(t),
        status_names=status_names(t),
    )


def _lead_or_404(lead_id: str) -> uuid.UUID:
    parsed = parse_uuid(lead_id)
    if parsed is None:
        raise PageError(404, N_("Not found"), N_("No lead with that id."), back_url="/leads")
    return parsed


@router.post("/leads/{lead_id}/consents", response_class=HTMLResponse)
async def consent_record(
    request: Request, lead_id: str, frame: Member, session: SessionDep
) -> Response:
    parsed = _lead_or_404(lead_id)
    form = await request.form()
    back = f"/leads/{parsed}#privacy-panel"
    t = frame.i18n.gettext
    note = str(form.get("evidence") or "").strip()[:2000]
    try:
        await attempt(
            session,
            consent.record_by(
                session,
                frame.principal,
                parsed,
                purpose=str(form.get("purpose") or ""),
                legal_basis=str(form.get("legal_basis") or ""),
                status=str(form.get("status") or ""),
                source="manual",
                evidence={"text": note} if note else None,
            ),
        )
    except AppError as exc:
        if exc.status == 404:
            raise
        return redirect(back, t(exc.detail), "error")
    return redirect(back, t("Consent recorded."))


@router.post("/leads/{lead_id}/privacy/{action}", response_class=HTMLResponse)
async def lead_request(
    request: Request, lead_id: str, action: str, frame: Member, session: SessionDep
) -> Response:
    parsed = _lead_or_404(lead_id)
    back = f"/leads/{parsed}#privacy-panel"
    t = frame.i18n.gettext
    if action == "export":
        call, done = service.request_lead_export, t("The export is being prepared.")
    elif action == "erase":
        form = await request.form()
        if str(form.get("confirm") or "") != "1":
            return redirect(back, t("Confirm the erasure first."), "error")
        call, done = service.request_lead_erasure, t("The erasure has started.")
    else:
        raise PageError(404, N_("Not found"), N_("Page not found."), back_url=back)
    try:
        await attempt(session, call(session, frame.principal, parsed))
    except AppError as exc:
        if exc.status == 404:
            raise
        return redirect(back, t(exc.detail), "error")
    return redirect(back, done)
