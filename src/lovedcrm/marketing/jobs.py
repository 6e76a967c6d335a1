"""Marketing jobs: an ad lead's import (fetched from the Graph API when the webhook carried
only its id), the 90-day backfill (paged, one page per run within the Page's rate limit), the
Graph insights' spend, and the e-mail campaign's start and throttled batches."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from lovedcrm.auth.authentication import principal_for_member
from lovedcrm.core import clock
from lovedcrm.core.errors import AppError
from lovedcrm.jobs.queue import (
    BULK_PRIORITY,
    JobContext,
    PermanentFailure,
    RetryLater,
    backoff_seconds,
    enqueue,
    job_handler,
)
from lovedcrm.marketing import roi, sending, service
from lovedcrm.marketing.graph import GraphClient, GraphError
from lovedcrm.marketing.models import AdLeadReceipt, EmailCampaign, MarketingIntegration

BACKFILL_DAYS = 90
# One page of leads per run; pages spaced so a backfill stays far inside the Page's limit
# (200 × 24 × leads of the last 90 days per 24 h): about 20 calls a minute at most.
BACKFILL_PAGE = 100
BACKFILL_INTERVAL = timedelta(seconds=3)
MAX_ATTEMPTS = 5


class ReceiptPayload(BaseModel):
    receipt_id: uuid.UUID


def _graph(ctx: JobContext, row: MarketingIntegration) -> GraphClient:
    token = service.access_token(ctx.settings, row)
    if not token:
        raise PermanentFailure("the integration has no access token")
    return GraphClient(ctx.settings, (row.config_data or {}).get("graph_base_url"), token)


async def _graph_failed(ctx: JobContext, row: MarketingIntegration, exc: GraphError) -> None:
    """Retried while it may pass; the last attempt (or a permanent error) leaves the
    integration in error, with the reason, for the settings page."""
    if exc.transient and ctx.attempt < ctx.max_attempts:
        raise RetryLater(backoff_seconds(ctx.attempt, base=30.0), str(exc))
    await service.mark_error(row, str(exc))
    await ctx.session.flush()


@job_handler("marketing.import_lead", ReceiptPayload, max_attempts=MAX_ATTEMPTS, timeout_seconds=60)
async def import_lead(ctx: JobContext, payload: ReceiptPayload) -> dict[str, Any] | None:
    receipt = await ctx.session.get(AdLeadReceipt, payload.receipt_id)
    if receipt is None or receipt.status == "imported":
        return {"skipped": "gone or already imported"}
    row = await ctx.session.get(MarketingIntegration, receipt.integration_id)
    if row is None:
        return {"skipped": "integration removed"}
    if row.provider == "facebook" and not receipt.fields:
        try:
            fetched = await _graph(ctx, row).lead(receipt.provider_lead_id)
        except GraphError as exc:
            await _graph_failed(ctx, row, exc)
            receipt.status, receipt.error = "error", str(exc)[:1000]
            return {"error": str(exc)}
        receipt.fields = fetched.fields
        receipt.form_id = receipt.form_id or fetched.form_id
        receipt.campaign_id = fetched.campaign_id or receipt.campaign_id
        receipt.campaign_name = fetched.campaign_name or receipt.campaign_name
        receipt.adset_id = fetched.adset_id or receipt.adset_id
        receipt.ad_id = fetched.ad_id or receipt.ad_id
    try:
        result = await service.import_receipt(ctx.session, ctx.settings, receipt, row)
    except AppError as exc:
        receipt.status, receipt.error = "error", exc.detail[:1000]
        return {"error": exc.code}
    if row.sync_status == "error":
        row.sync_status, row.sync_error = "active", None
    row.last_sync_at = clock.now()
    return result


class BackfillPayload(BaseModel):
    integration_id: uuid.UUID
    forms: list[str] | None = None
    form_index: int = 0
    after: str | None = None
    since: int | None = None
    pages: int = 0


@job_handler("marketing.backfill", BackfillPayload, max_attempts=MAX_ATTEMPTS, timeout_seconds=120)
async def backfill(ctx: JobContext, payload: BackfillPayload) -> dict[str, Any] | None:
    """One page of one form's leads of the last 90 days; each lead not seen yet is stored
    and imported; the next page is queued after ``BACKFILL_INTERVAL``, or later when the
    Graph API's usage headers say the quota is filling (``GraphClient.pace``)."""
    row = await ctx.session.get(MarketingIntegration, payload.integration_id)
    if row is None or row.provider != "facebook" or not row.account_id:
        return {"skipped": "not a Facebook integration"}
    graph = _graph(ctx, row)
    since = payload.since or int((clock.now() - timedelta(days=BACKFILL_DAYS)).timestamp())
    try:
        forms = (
            payload.forms if payload.forms is not None else await graph.page_forms(row.account_id)
        )
        if payload.form_index >= len(forms):
            row.last_sync_at = clock.now()
            return {"done": True, "pages": payload.pages}
        form = forms[payload.form_index]
        leads, after = await graph.form_leads(
            form, since=since, after=payload.after, limit=BACKFILL_PAGE
        )
    except GraphError as exc:
        await _graph_failed(ctx, row, exc)
        return {"error": str(exc)}
    for lead in leads:
        lead.form_id = lead.form_id or form
    new = await service.store_receipts(ctx.session, row.organization_id, row.id, "facebook", leads)
    following = payload.model_copy(
        update={
            "forms": forms,
            "since": since,
            "after": after,
            "form_index": payload.form_index if after else payload.form_index + 1,
            "pages": payload.pages + 1,
        }
    )
    await enqueue(
        ctx.session,
        "marketing.backfill",
        following,
        organization_id=row.organization_id,
        delay=graph.pace(BACKFILL_INTERVAL),
        priority=BULK_PRIORITY,
    )
    return {"form": form, "leads": len(leads), "new": new, "usage": graph.usage}


class SpendPayload(BaseModel):
    integration_id: uuid.UUID
    since: date
    until: date


@job_handler("marketing.fetch_spend", SpendPayload, max_attempts=MAX_ATTEMPTS, timeout_seconds=120)
async def fetch_spend(ctx: JobContext, payload: SpendPayload) -> dict[str, Any] | None:
    """The ad account's spend per campaign per day from the Graph API insights."""
    row = await ctx.session.get(MarketingIntegration, payload.integration_id)
    account = (row.config_data or {}).get("ad_account_id") if row is not None else None
    if row is None or not account:
        return {"skipped": "no ad account"}
    try:
        items = await _graph(ctx, row).campaign_insights(
            str(account), payload.since.isoformat(), payload.until.isoformat()
        )
    except GraphError as exc:
        await _graph_failed(ctx, row, exc)
        return {"error": str(exc)}
    rows = []
    for item in items:
        try:
            rows.append(
                roi.SpendRow(
                    provider="facebook",
                    campaign_id=str(item["campaign_id"])[:255],
                    campaign_name=str(item.get("campaign_name") or "")[:255] or None,
                    day=date.fromisoformat(str(item["date_start"])),
                    amount=roi.parse_amount(str(item.get("spend") or "0")),
                    # The ad account's own currency (insights give it); BRL if not said.
                    currency=str(item.get("account_currency") or "BRL").upper()[:3],
                )
            )
        except (KeyError, ValueError, ArithmeticError):
            continue
    stored = await roi.store_spend(ctx.session, row.organization_id, rows)
    return {"rows": stored}


class CampaignPayload(BaseModel):
    campaign_id: uuid.UUID
    scheduled_for: datetime | None = None


@job_handler("marketing.campaign_start", CampaignPayload, max_attempts=3, timeout_seconds=600)
async def campaign_start(ctx: JobContext, payload: CampaignPayload) -> dict[str, Any] | None:
    row = await ctx.session.get(EmailCampaign, payload.campaign_id)
    if row is None or row.status != "scheduled":
        return {"skipped": "not scheduled"}
    if payload.scheduled_for is not None and row.scheduled_for != payload.scheduled_for:
        return {"skipped": "rescheduled"}
    principal = (
        await principal_for_member(ctx.session, row.organization_id, row.created_by)
        if row.created_by
        else None
    )
    if principal is None:
        row.status = "cancelled"
        return {"skipped": "the campaign's author is no longer a member"}
    return await sending.start(ctx.session, principal, row)


class BatchPayload(BaseModel):
    campaign_id: uuid.UUID


@job_handler("marketing.send_batch", BatchPayload, max_attempts=5, timeout_seconds=300)
async def send_batch(ctx: JobContext, payload: BatchPayload) -> dict[str, Any] | None:
    try:
        return await sending.send_batch(ctx.session, ctx.settings, payload.campaign_id)
    except OSError as exc:  # the SMTP server is down: the whole batch again, later
        raise RetryLater(backoff_seconds(ctx.attempt, base=30.0), f"SMTP: {exc}") from exc
