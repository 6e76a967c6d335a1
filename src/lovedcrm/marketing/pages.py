"""Marketing pages: ``/marketing`` (e-mail campaigns), the campaign editor with its preview,
test send, scheduling and results; ``/marketing/integrations`` (Facebook Lead Ads, Google Ads
lead forms, the form mapping with a preview, the ad leads received); ``/marketing/roi``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError, NotFound, ValidationFailed
from lovedcrm.jobs.queue import BULK_PRIORITY, enqueue
from lovedcrm.leads import stages as leads_stages
from lovedcrm.marketing import campaigns, roi, service
from lovedcrm.marketing.models import EmailCampaign, MarketingIntegration
from lovedcrm.web.kit import (
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
Admin = Annotated[Shell, Depends(require("settings:manage"))]
Reader = Annotated[Shell, Depends(require("reports:read"))]
TARGET_CHOICES = (*service.LEAD_TARGETS, "consent", "ignore")
AUDIENCE_FIELDS = ("stage_id", "status", "source", "q", "score_min", "score_max")


def _ctx(frame: Shell, tab: str) -> dict[str, Any]:
    return {**frame.context("marketing"), "tab": tab}


async def _campaign(request: Request, session: SessionDep, campaign_id: str) -> EmailCampaign:
    frame = getattr(request.state, "frame", None)
    found = parse_uuid(campaign_id)
    if found is None or frame is None:
        raise _missing(request)
    try:
        return await campaigns.get_campaign(session, frame.principal, found)
    except NotFound as exc:
        raise _missing(request) from exc


def _missing(request: Request) -> PageError:
    return PageError(404, "Not found", "This campaign does not exist.", back_url="/marketing")


# --- campaigns ----------------------------------------------------------------------------------


@router.get("/marketing", response_class=HTMLResponse)
async def campaigns_page(request: Request, frame: Reader, session: SessionDep) -> Response:
    rows = await campaigns.list_campaigns(session, frame.principal)
    return render(
        request,
        "marketing/campaigns.html",
        **_ctx(frame, "campaigns"),
        campaigns=rows,
        can_edit=frame.principal.can("settings:manage"),
    )


async def _editor(
    request: Request,
    frame: Shell,
    session: SessionDep,
    row: EmailCampaign | None,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    stages = await leads_stages.list_stages(session, frame.principal)
    preview = results = counts = sample_id = None
    if row is not None:
        # One lead of the audience for both the subject shown here and the framed body.
        sample = await campaigns.audience_leads(session, frame.principal, row.audience, limit=1)
        sample_id = sample[0].id if sample else None
        preview = await campaigns.preview(session, frame.principal, row.id, sample_id)
        if row.status in ("sending", "sent", "cancelled"):
            results = await campaigns.results(session, frame.principal, row.id)
        else:
            counts = await campaigns.audience_count(session, frame.principal, row.audience)
    values = form or (
        {
            "name": row.name,
            "subject": row.subject,
            "html_body": row.html_body,
            "text_body": row.text_body,
            **{k: row.audience.get(k, "") for k in AUDIENCE_FIELDS},
        }
        if row is not None
        else {
            "name": "",
            "subject": "",
            "html_body": "<p>Olá {{primeiro_nome}},</p>\n<p></p>",
            "text_body": "Olá {{primeiro_nome}},\n\n",
        }
    )
    return render(
        request,
        "marketing/campaign.html",
        status_code,
        **_ctx(frame, "campaigns"),
        campaign=row,
        form=values,
        errors=errors or {},
        stages=stages,
        preview=preview,
        sample_id=sample_id,
        results=results,
        counts=counts,
        editable=row is None or row.status in ("draft", "scheduled"),
    )


@router.get("/marketing/campaigns/new", response_class=HTMLResponse)
async def new_campaign(request: Request, frame: Admin, session: SessionDep) -> Response:
    return await _editor(request, frame, session, None)


def _form_values(data: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        k: str(data.get(k) or "")
        for k in ("name", "subject", "html_body", "text_body", *AUDIENCE_FIELDS)
    }
    values["audience"] = {k: values[k].strip() for k in AUDIENCE_FIELDS if values[k].strip()}
    return values


def _field_errors(exc: ValidationFailed) -> dict[str, str]:
    return {e.get("field", "form"): e.get("message", "") for e in exc.extra.get("errors", [])}


@router.post("/marketing/campaigns", response_class=HTMLResponse)
async def create_campaign(request: Request, frame: Admin, session: SessionDep) -> Response:
    t = frame.i18n.gettext
    values = _form_values(await request.form())
    try:
        row = await attempt(
            session, campaigns.create_campaign(session, frame.principal, dict(values))
        )
    except ValidationFailed as exc:
        return await _editor(
            request, frame, session, None, form=values, errors=_field_errors(exc), status_code=422
        )
    return redirect(f"/marketing/campaigns/{row.id}", t("Campaign saved."))


@router.get("/marketing/campaigns/{campaign_id}", response_class=HTMLResponse)
async def campaign_page(
    request: Request, frame: Reader, session: SessionDep, campaign_id: str
) -> Response:
    row = await _campaign(request, session, campaign_id)
    return await _editor(request, frame, session, row)


# The campaign's own HTML, shown in a sandboxed frame of the editor: nothing in it runs, and
# it may only be framed by this site's pages.
PREVIEW_POLICY = (
    "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'; sandbox"
)


@router.get("/marketing/campaigns/{campaign_id}/preview", response_class=HTMLResponse)
async def campaign_preview(
    request: Request,
    frame: Reader,
    session: SessionDep,
    campaign_id: str,
    lead_id: str | None = None,
) -> Response:
    row = await _campaign(request, session, campaign_id)
    lead = parse_uuid(lead_id)
    try:
        rendered = await campaigns.preview(session, frame.principal, row.id, lead)
    except NotFound:
        rendered = await campaigns.preview(session, frame.principal, row.id)
    return HTMLResponse(
        rendered.html,
        headers={
            "Content-Security-Policy": PREVIEW_POLICY,
            "X-Frame-Options": "SAMEORIGIN",
            "Cache-Control": "no-store",
        },
    )


@router.post("/marketing/campaigns/{campaign_id}", response_class=HTMLResponse)
async def update_campaign(
    request: Request, frame: Admin, session: SessionDep, campaign_id: str
) -> Response:
    t = frame.i18n.gettext
    row = await _campaign(request, session, campaign_id)
    values = _form_values(await request.form())
    try:
        await attempt(
            session, campaigns.update_campaign(session, frame.principal, row.id, dict(values))
        )
    except ValidationFailed as exc:
        return await _editor(
            request, frame, session, row, form=values, errors=_field_errors(exc), status_code=422
        )
    except AppError as exc:
        return redirect(f"/marketing/campaigns/{row.id}", t(exc.detail), "error")
    return redirect(f"/marketing/campaigns/{row.id}", t("Campaign saved."))


@router.post("/marketing/campaigns/{campaign_id}/test", response_class=HTMLResponse)
async def test_campaign(
    request: Request, frame: Admin, session: SessionDep, settings: SettingsDep, campaign_id: str
) -> Response:
    t = frame.i18n.gettext
    row = await _campaign(request, session, campaign_id)
    to = str((await request.form()).get("to") or "")
    try:
        await attempt(session, campaigns.test_send(session, settings, frame.principal, row.id, to))
    except ValidationFailed:
        return redirect(
            f"/marketing/campaigns/{row.id}", t("Give a valid e-mail address."), "error"
        )
    return redirect(f"/marketing/campaigns/{row.id}", t("Test e-mail sent."))


@router.post("/marketing/campaigns/{campaign_id}/send", response_class=HTMLResponse)
async def send_campaign(
    request: Request, frame: Admin, session: SessionDep, campaign_id: str
) -> Response:
    t = frame.i18n.gettext
    row = await _campaign(request, session, campaign_id)
    raw = str((await request.form()).get("send_at") or "").strip()
    when = None
    if raw:
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            return redirect(
                f"/marketing/campaigns/{row.id}", t("Choose a valid date and time."), "error"
            )
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    try:
        await attempt(session, campaigns.schedule(session, frame.principal, row.id, when))
    except AppError as exc:
        return redirect(f"/marketing/campaigns/{row.id}", t(exc.detail), "error")
    text = t("Campaign scheduled.") if when else t("Campaign is being sent.")
    return redirect(f"/marketing/campaigns/{row.id}", text)


# --- integrations -------------------------------------------------------------------------------


async def _integration(
    request: Request, session: SessionDep, integration_id: str
) -> MarketingIntegration:
    frame = getattr(request.state, "frame", None)
    found = parse_uuid(integration_id)
    missing = PageError(
        404, "Not found", "This integration does not exist.", back_url="/marketing/integrations"
    )
    if found is None or frame is None:
        raise missing
    try:
        return await service.get_integration(session, frame.principal, found)
    except NotFound as exc:
        raise missing from exc


async def _integrations(
    request: Request,
    frame: Shell,
    session: SessionDep,
    settings: SettingsDep,
    *,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    rows = await service.list_integrations(session, frame.principal)
    return render(
        request,
        "marketing/integrations.html",
        status_code,
        **_ctx(frame, "integrations"),
        integrations=[service.integration_out(settings, r) for r in rows],
        errors=errors or {},
    )


@router.get("/marketing/integrations", response_class=HTMLResponse)
async def integrations_page(
    request: Request, frame: Admin, session: SessionDep, settings: SettingsDep
) -> Response:
    return await _integrations(request, frame, session, settings)


@router.post("/marketing/integrations", response_class=HTMLResponse)
async def connect(
    request: Request, frame: Admin, session: SessionDep, settings: SettingsDep
) -> Response:
    t = frame.i18n.gettext
    data = await request.form()
    names = (
        "provider",
        "page_id",
        "account_name",
        "access_token",
        "app_secret",
        "verify_token",
        "google_key",
        "graph_base_url",
        "ad_account_id",
        "welcome_template_id",
    )
    values = {k: str(data.get(k) or "").strip() for k in names}
    values = {k: v for k, v in values.items() if v}
    try:
        await attempt(session, service.connect(session, settings, frame.principal, values))
    except ValidationFailed as exc:
        return await _integrations(
            request, frame, session, settings, errors=_field_errors(exc), status_code=422
        )
    return redirect("/marketing/integrations", t("Integration connected."))


@router.post("/marketing/integrations/{integration_id}/delete", response_class=HTMLResponse)
async def disconnect(
    request: Request, frame: Admin, session: SessionDep, integration_id: str
) -> Response:
    t = frame.i18n.gettext
    row = await _integration(request, session, integration_id)
    await service.disconnect(session, frame.principal, row.id)
    return redirect("/marketing/integrations", t("Integration removed."))


@router.post("/marketing/integrations/{integration_id}/backfill", response_class=HTMLResponse)
async def backfill(
    request: Request, frame: Admin, session: SessionDep, integration_id: str
) -> Response:
    t = frame.i18n.gettext
    row = await _integration(request, session, integration_id)
    if row.provider == "facebook":
        await enqueue(
            session,
            "marketing.backfill",
            {"integration_id": row.id},
            organization_id=row.organization_id,
            priority=BULK_PRIORITY,
        )
    return redirect("/marketing/integrations", t("Fetching the leads of the last 90 days."))


@router.get("/marketing/integrations/{integration_id}/forms", response_class=HTMLResponse)
async def forms_page(
    request: Request, frame: Admin, session: SessionDep, integration_id: str
) -> Response:
    row = await _integration(request, session, integration_id)
    return render(
        request,
        "marketing/forms.html",
        **_ctx(frame, "integrations"),
        integration=row,
        forms=await service.forms(session, frame.principal, row.id),
        targets=TARGET_CHOICES,
    )


@router.post(
    "/marketing/integrations/{integration_id}/forms/{form_id}", response_class=HTMLResponse
)
async def save_mapping(
    request: Request, frame: Admin, session: SessionDep, integration_id: str, form_id: str
) -> Response:
    t = frame.i18n.gettext
    row = await _integration(request, session, integration_id)
    data = await request.form()
    mapping: dict[str, str] = {}
    for key, value in data.items():
        if key.startswith("map:") and isinstance(value, str) and value:
            target = value if value != "custom" else ""
            custom = str(data.get(f"custom:{key[4:]}") or "").strip()
            if value == "custom" and custom:
                target = f"custom:{custom}"
            if target:
                mapping[key[4:][:100]] = target
    try:
        await attempt(
            session, service.save_mapping(session, frame.principal, row.id, form_id[:255], mapping)
        )
    except ValidationFailed:
        return redirect(
            f"/marketing/integrations/{row.id}/forms", t("Unknown mapping target."), "error"
        )
    return redirect(f"/marketing/integrations/{row.id}/forms", t("Mapping saved."))


@router.get("/marketing/ad-leads", response_class=HTMLResponse)
async def ad_leads_page(
    request: Request, frame: Reader, session: SessionDep, campaign: str | None = None
) -> Response:
    rows = await service.receipts(session, frame.principal, campaign_id=campaign or None, limit=200)
    return render(
        request,
        "marketing/ad_leads.html",
        **_ctx(frame, "ad_leads"),
        receipts=rows,
        campaign=campaign or "",
    )


# --- ROI ----------------------------------------------------------------------------------------


@router.get("/marketing/roi", response_class=HTMLResponse)
async def roi_page(request: Request, frame: Reader, session: SessionDep) -> Response:
    return render(
        request,
        "marketing/roi.html",
        **_ctx(frame, "roi"),
        rows=await roi.report(session, frame.principal),
        can_upload=frame.principal.can("settings:manage"),
    )


@router.post("/marketing/roi/spend", response_class=HTMLResponse)
async def upload_spend(request: Request, frame: Admin, session: SessionDep) -> Response:
    t = frame.i18n.gettext
    upload = (await request.form()).get("file")
    if not isinstance(upload, UploadFile):
        return redirect("/marketing/roi", t("Choose a CSV file."), "error")
    data = await upload.read(roi.MAX_CSV_BYTES + 1)
    try:
        result = await attempt(session, roi.upload_spend(session, frame.principal, data))
    except ValidationFailed:
        return redirect("/marketing/roi", t("The spend file has errors."), "error")
    return redirect("/marketing/roi", t("%(n)s spend rows saved.") % {"n": result["rows"]})


@router.get("/marketing/leads/{lead_id}/attribution", response_class=HTMLResponse)
async def attribution_fragment(
    request: Request,
    frame: Annotated[Shell, Depends(require("leads:read"))],
    session: SessionDep,
    lead_id: str,
) -> Response:
    found = parse_uuid(lead_id)
    rows = await service.attribution(session, frame.principal, found) if found else []
    return render(request, "marketing/_attribution.html", receipts=rows)
