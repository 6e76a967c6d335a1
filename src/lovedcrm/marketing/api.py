"""Marketing JSON API: ``/api/v1/marketing/...`` — lead-ads integrations and their form
mappings, the ad leads received, ad spend and ROI, e-mail campaigns and their results."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, File, Path, Query, Response, UploadFile, status

from lovedcrm.core import clock
from lovedcrm.core.deps import Require, SessionDep, SettingsDep
from lovedcrm.core.errors import ValidationFailed
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.core.schemas import NO_NUL, NOT_BLANK, IsoDate
from lovedcrm.jobs.queue import BULK_PRIORITY, enqueue
from lovedcrm.marketing import campaigns, roi, service
from lovedcrm.marketing.schemas import (
    AudienceCountOut,
    AudienceIn,
    CampaignIn,
    CampaignOut,
    CampaignUpdateIn,
    EmailEventIn,
    EmailEventOut,
    FormOut,
    IntegrationIn,
    IntegrationOut,
    IntegrationUpdateIn,
    JobQueuedOut,
    MappingIn,
    PreviewOut,
    ReceiptOut,
    ResultsOut,
    RoiRowOut,
    ScheduleIn,
    SpendUploadOut,
    SuppressionOut,
    TestSendIn,
)

router = APIRouter(prefix="/api/v1/marketing", tags=["marketing"])
Admin = Annotated[Principal, Depends(Require("settings:manage"))]
Reader = Annotated[Principal, Depends(Require("reports:read"))]


# --- integrations ---------------------------------------------------------------------------


@router.get(
    "/integrations", response_model=list[IntegrationOut], responses=problem_responses(401, 403)
)
async def list_integrations(
    principal: Admin, session: SessionDep, settings: SettingsDep
) -> list[IntegrationOut]:
    rows = await service.list_integrations(session, principal)
    return [IntegrationOut.model_validate(service.integration_out(settings, r)) for r in rows]


@router.post(
    "/integrations",
    response_model=IntegrationOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 422),
)
async def connect(
    body: IntegrationIn, principal: Admin, session: SessionDep, settings: SettingsDep
) -> IntegrationOut:
    """Connect a Facebook Page (page id, Page access token, app secret, verify token) or a
    Google Ads lead form (its key). Secrets are stored encrypted and shown masked; put
    `webhook_url` in the provider's console."""
    row = await service.connect(session, settings, principal, body.model_dump(exclude_unset=True))
    return IntegrationOut.model_validate(service.integration_out(settings, row))


@router.patch(
    "/integrations/{integration_id}",
    response_model=IntegrationOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def update_integration(
    integration_id: uuid.UUID,
    body: IntegrationUpdateIn,
    principal: Admin,
    session: SessionDep,
    settings: SettingsDep,
) -> IntegrationOut:
    row = await service.update(
        session, settings, principal, integration_id, body.model_dump(exclude_unset=True)
    )
    return IntegrationOut.model_validate(service.integration_out(settings, row))


@router.delete(
    "/integrations/{integration_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 403, 404),
)
async def disconnect(integration_id: uuid.UUID, principal: Admin, session: SessionDep) -> Response:
    await service.disconnect(session, principal, integration_id)
    return Response(status_code=204)


@router.get(
    "/integrations/{integration_id}/forms",
    response_model=list[FormOut],
    responses=problem_responses(401, 403, 404),
)
async def forms(integration_id: uuid.UUID, principal: Admin, session: SessionDep) -> list[FormOut]:
    """The forms seen, with a sample of their fields, their mapping and a preview of the lead
    the sample becomes."""
    return [
        FormOut.model_validate(f) for f in await service.forms(session, principal, integration_id)
    ]


@router.put(
    "/integrations/{integration_id}/forms/{form_id}/mapping",
    response_model=FormOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def save_mapping(
    integration_id: uuid.UUID,
    form_id: Annotated[str, Path(min_length=1, max_length=255, pattern=NOT_BLANK)],
    body: MappingIn,
    principal: Admin,
    session: SessionDep,
) -> FormOut:
    """Map a form's fields: a lead field (`full_name`, `first_name`, `last_name`, `email`,
    `phone`, `company`, `job_title`), `custom:<key>`, `consent` (a yes records an e-mail
    marketing consent) or `ignore`."""
    await service.save_mapping(session, principal, integration_id, form_id, body.mapping)
    found = [
        f
        for f in await service.forms(session, principal, integration_id)
        if f["form_id"] == form_id
    ]
    return FormOut.model_validate(found[0])


@router.post(
    "/integrations/{integration_id}/backfill",
    response_model=JobQueuedOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(401, 403, 404, 422),
)
async def backfill(
    integration_id: uuid.UUID, principal: Admin, session: SessionDep
) -> JobQueuedOut:
    """Fetch the Page's leads of the last 90 days (those whose webhook was missed), paged."""
    row = await service.get_integration(session, principal, integration_id)
    if row.provider != "facebook":
        raise ValidationFailed(
            "Only a Facebook integration can be backfilled.",
            code="marketing_backfill_facebook_only",
        )
    job = await enqueue(
        session,
        "marketing.backfill",
        {"integration_id": row.id},
        organization_id=row.organization_id,
        priority=BULK_PRIORITY,
        dedupe_key=f"marketing.backfill:{row.id}:{clock.now():%Y%m%d%H%M}",
    )
    return JobQueuedOut(queued=job is not None)


@router.post(
    "/integrations/{integration_id}/spend-sync",
    response_model=JobQueuedOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(401, 403, 404, 422),
)
async def spend_sync(
    integration_id: uuid.UUID,
    principal: Admin,
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=90)] = 30,
) -> JobQueuedOut:
    """Fetch the ad account's spend per campaign per day from the Graph API insights."""
    row = await service.get_integration(session, principal, integration_id)
    if row.provider != "facebook" or not (row.config_data or {}).get("ad_account_id"):
        raise ValidationFailed(
            "Set the ad account id of a Facebook integration first.",
            code="marketing_ad_account_missing",
        )
    today = clock.now().date()
    job = await enqueue(
        session,
        "marketing.fetch_spend",
        {"integration_id": row.id, "since": today - timedelta(days=days), "until": today},
        organization_id=row.organization_id,
        priority=BULK_PRIORITY,
    )
    return JobQueuedOut(queued=job is not None)


@router.get("/ad-leads", response_model=list[ReceiptOut], responses=problem_responses(401, 403))
async def ad_leads(
    principal: Reader,
    session: SessionDep,
    campaign_id: Annotated[str | None, Query(max_length=255, pattern=NO_NUL)] = None,
    integration_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ReceiptOut]:
    """The ad leads received, newest first; filter by campaign."""
    rows = await service.receipts(
        session, principal, campaign_id=campaign_id, integration_id=integration_id, limit=limit
    )
    return [ReceiptOut.model_validate(r) for r in rows]


@router.get(
    "/leads/{lead_id}/attribution",
    response_model=list[ReceiptOut],
    responses=problem_responses(401, 403, 404),
)
async def lead_attribution(
    lead_id: uuid.UUID,
    principal: Annotated[Principal, Depends(Require("leads:read"))],
    session: SessionDep,
) -> list[ReceiptOut]:
    """Which ad forms (campaign, ad set, ad) brought this lead."""
    return [
        ReceiptOut.model_validate(r) for r in await service.attribution(session, principal, lead_id)
    ]


# --- ROI ------------------------------------------------------------------------------------


@router.post(
    "/spend",
    response_model=SpendUploadOut,
    responses=problem_responses(401, 403, 422),
)
async def upload_spend(
    principal: Admin,
    session: SessionDep,
    file: Annotated[
        UploadFile,
        File(description="CSV: date,campaign_id,amount[,campaign_name,provider,currency]"),
    ],
) -> SpendUploadOut:
    data = await file.read(roi.MAX_CSV_BYTES + 1)
    return SpendUploadOut.model_validate(await roi.upload_spend(session, principal, data))


@router.get("/roi", response_model=list[RoiRowOut], responses=problem_responses(401, 403))
async def roi_report(
    principal: Reader,
    session: SessionDep,
    since: Annotated[IsoDate | None, Query(description="First day (inclusive).")] = None,
    until: Annotated[IsoDate | None, Query(description="Last day (inclusive).")] = None,
) -> list[RoiRowOut]:
    """Per campaign: spend, leads, won deals, revenue, cost per lead, cost per won deal and
    return (revenue / spend)."""
    rows = await roi.report(session, principal, since=since, until=until)
    return [RoiRowOut.model_validate(r) for r in rows]


# --- e-mail campaigns -----------------------------------------------------------------------


@router.get("/campaigns", response_model=list[CampaignOut], responses=problem_responses(401, 403))
async def list_campaigns(principal: Reader, session: SessionDep) -> list[CampaignOut]:
    return [
        CampaignOut.model_validate(c) for c in await campaigns.list_campaigns(session, principal)
    ]


@router.post(
    "/campaigns",
    response_model=CampaignOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 422),
)
async def create_campaign(body: CampaignIn, principal: Admin, session: SessionDep) -> CampaignOut:
    """A draft: subject, HTML and text bodies with variables (`{{nome}}`, `{{primeiro_nome}}`,
    `{{empresa}}`, `{{email}}`, `{{unsubscribe_url}}`) and an audience (the leads list's
    filters)."""
    values = body.model_dump(mode="json", exclude_none=True)
    return CampaignOut.model_validate(await campaigns.create_campaign(session, principal, values))


@router.get(
    "/campaigns/{campaign_id}",
    response_model=CampaignOut,
    responses=problem_responses(401, 403, 404),
)
async def get_campaign(
    campaign_id: uuid.UUID, principal: Reader, session: SessionDep
) -> CampaignOut:
    return CampaignOut.model_validate(await campaigns.get_campaign(session, principal, campaign_id))


@router.patch(
    "/campaigns/{campaign_id}",
    response_model=CampaignOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def update_campaign(
    campaign_id: uuid.UUID, body: CampaignUpdateIn, principal: Admin, session: SessionDep
) -> CampaignOut:
    values = body.model_dump(mode="json", exclude_none=True)
    return CampaignOut.model_validate(
        await campaigns.update_campaign(session, principal, campaign_id, values)
    )


@router.get(
    "/campaigns/{campaign_id}/preview",
    response_model=PreviewOut,
    responses=problem_responses(401, 403, 404),
)
async def preview(
    campaign_id: uuid.UUID, principal: Reader, session: SessionDep, lead_id: uuid.UUID | None = None
) -> PreviewOut:
    r = await campaigns.preview(session, principal, campaign_id, lead_id)
    return PreviewOut(subject=r.subject, html=r.html, text=r.text)


@router.post(
    "/audience/count", response_model=AudienceCountOut, responses=problem_responses(401, 403, 422)
)
async def audience_count(
    body: AudienceIn, principal: Admin, session: SessionDep
) -> AudienceCountOut:
    """How many leads a filter selects, with an e-mail, and that may be e-mailed (consent,
    not suppressed)."""
    counts = await campaigns.audience_count(
        session, principal, campaigns.clean_audience(body.model_dump(mode="json"))
    )
    return AudienceCountOut.model_validate(counts)


@router.post(
    "/campaigns/{campaign_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobQueuedOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def test_send(
    campaign_id: uuid.UUID,
    body: TestSendIn,
    principal: Admin,
    session: SessionDep,
    settings: SettingsDep,
) -> JobQueuedOut:
    await campaigns.test_send(session, settings, principal, campaign_id, body.to)
    return JobQueuedOut(queued=True)


@router.post(
    "/campaigns/{campaign_id}/schedule",
    response_model=CampaignOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def schedule(
    campaign_id: uuid.UUID, body: ScheduleIn, principal: Admin, session: SessionDep
) -> CampaignOut:
    """Send now (no `send_at`) or at `send_at`."""
    return CampaignOut.model_validate(
        await campaigns.schedule(session, principal, campaign_id, body.send_at)
    )


@router.post(
    "/campaigns/{campaign_id}/cancel",
    response_model=CampaignOut,
    responses=problem_responses(401, 403, 404, 409),
)
async def cancel(campaign_id: uuid.UUID, principal: Admin, session: SessionDep) -> CampaignOut:
    return CampaignOut.model_validate(await campaigns.cancel(session, principal, campaign_id))


@router.get(
    "/campaigns/{campaign_id}/results",
    response_model=ResultsOut,
    responses=problem_responses(401, 403, 404),
)
async def results(campaign_id: uuid.UUID, principal: Reader, session: SessionDep) -> ResultsOut:
    """Sent, delivered, opened, clicked, replied, unsubscribed, bounced, converted, and the
    leads skipped for want of consent or because their address is suppressed."""
    return ResultsOut.model_validate(await campaigns.results(session, principal, campaign_id))


@router.post(
    "/email-events", response_model=EmailEventOut, responses=problem_responses(401, 403, 422)
)
async def email_event(body: EmailEventIn, principal: Admin, session: SessionDep) -> EmailEventOut:
    """A bounce, a complaint or a reply for an address (a mail provider's notification):
    bounces and complaints put it on the suppression list."""
    marked = await campaigns.report_event(session, principal, body.email, body.kind)
    return EmailEventOut(marked=marked)


@router.get(
    "/suppressions", response_model=list[SuppressionOut], responses=problem_responses(401, 403)
)
async def suppressions(principal: Admin, session: SessionDep) -> list[SuppressionOut]:
    return [
        SuppressionOut.model_validate(s)
        for s in await campaigns.list_suppressions(session, principal)
    ]
