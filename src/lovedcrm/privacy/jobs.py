"""LGPD jobs: a lead's export and erasure, the organization's export and deletion, and the
daily retention (message bodies, call recordings, audit rows older than the organization's
setting), each audited with a receipt."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.core import clock
from lovedcrm.core.storage import get_storage
from lovedcrm.db.tenant import set_tenant
from lovedcrm.jobs.periodic import every, period_start
from lovedcrm.jobs.queue import JobContext, PermanentFailure, enqueue, job_handler
from lovedcrm.organizations.models import Organization
from lovedcrm.privacy import erasure, exporting, retention
from lovedcrm.privacy.models import PrivacyRequest
from lovedcrm.privacy.service import (
    LEAD_ERASURE_JOB,
    LEAD_EXPORT_JOB,
    ORG_DELETION_JOB,
    ORG_EXPORT_JOB,
    issue_link,
    retention_of,
)

RETENTION_ALL = "privacy.retention_all"
RETENTION = "privacy.retention"


class RequestPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: uuid.UUID


class DeletionPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: uuid.UUID
    organization_id: uuid.UUID


class SystemPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _org(ctx: JobContext) -> uuid.UUID:
    if ctx.organization_id is None:
        raise PermanentFailure("a privacy job belongs to an organization")
    return ctx.organization_id


async def _request(session: AsyncSession, org: uuid.UUID, request_id: uuid.UUID) -> PrivacyRequest:
    found = await session.get(PrivacyRequest, request_id)
    if found is None or found.organization_id != org:
        raise PermanentFailure("no such privacy request")
    return found


async def _finish(
    session: AsyncSession, request: PrivacyRequest, action: str, receipt: dict[str, Any]
) -> dict[str, Any]:
    request.status = "done"
    request.completed_at = clock.now()
    request.receipt = {
        "request_id": str(request.id),
        "kind": request.kind,
        "completed_at": request.completed_at.isoformat(),
        **receipt,
    }
    await session.flush()
    await audit.record(
        session,
        action=action,
        resource_type="lead" if request.lead_id else "organization",
        resource_id=request.lead_id or request.organization_id,
        organization_id=request.organization_id,
        user_id=request.requested_by,
        changes={"receipt": request.receipt},
    )
    return request.receipt


def _export_key(request: PrivacyRequest) -> str:
    return f"privacy/{request.organization_id}/{request.id}.zip"


@job_handler(LEAD_EXPORT_JOB, RequestPayload, max_attempts=3, timeout_seconds=1800)
async def lead_export(ctx: JobContext, payload: RequestPayload) -> dict[str, Any] | None:
    org = _org(ctx)
    request = await _request(ctx.session, org, payload.request_id)
    if request.status != "pending" or request.lead_id is None:
        return {"skipped": request.status}
    key = _export_key(request)
    counts = await exporting.export_lead(ctx.session, ctx.settings, org, request.lead_id, key)
    request.file_key = key
    issue_link(request)  # the requester asks for the link on the page (a new one each time)
    return await _finish(ctx.session, request, "privacy.export_completed", {"contents": counts})


@job_handler(LEAD_ERASURE_JOB, RequestPayload, max_attempts=3, timeout_seconds=1800)
async def lead_erasure(ctx: JobContext, payload: RequestPayload) -> dict[str, Any] | None:
    org = _org(ctx)
    request = await _request(ctx.session, org, payload.request_id)
    if request.status != "pending" or request.lead_id is None:
        return {"skipped": request.status}
    report = await erasure.erase_lead(ctx.session, ctx.settings, org, request.lead_id)
    return await _finish(ctx.session, request, "privacy.erasure_completed", report.receipt())


@job_handler(ORG_EXPORT_JOB, RequestPayload, max_attempts=3, timeout_seconds=3600)
async def org_export(ctx: JobContext, payload: RequestPayload) -> dict[str, Any] | None:
    org = _org(ctx)
    request = await _request(ctx.session, org, payload.request_id)
    if request.status != "pending":
        return {"skipped": request.status}
    key = _export_key(request)
    counts = await exporting.export_organization(ctx.session, ctx.settings, org, key)
    request.file_key = key
    issue_link(request)
    return await _finish(ctx.session, request, "privacy.org_export_completed", {"contents": counts})


@job_handler(ORG_DELETION_JOB, RequestPayload, max_attempts=3, timeout_seconds=3600)
async def org_deletion(ctx: JobContext, payload: RequestPayload) -> dict[str, Any] | None:
    """At the end of the grace period: hand over to a system job, which deletes the
    organization (this job's own row would go with it)."""
    org = _org(ctx)
    request = await _request(ctx.session, org, payload.request_id)
    if request.status != "pending":
        return {"skipped": request.status}
    request.status = "running"
    await ctx.session.flush()
    await enqueue(
        ctx.session,
        "privacy.org_delete_now",
        DeletionPayload(request_id=request.id, organization_id=org),
        organization_id=None,
    )
    return {"queued": "privacy.org_delete_now"}


@job_handler("privacy.org_delete_now", DeletionPayload, max_attempts=3, timeout_seconds=3600)
async def org_delete_now(ctx: JobContext, payload: DeletionPayload) -> dict[str, Any] | None:
    org = payload.organization_id
    session = ctx.session
    await set_tenant(session, org)
    request = await session.get(PrivacyRequest, payload.request_id)
    if request is None or request.status != "running":
        await set_tenant(session, None)
        return {"skipped": "cancelled" if request is not None else "gone"}
    keys = await exporting.organization_files(session, org)
    name = await session.scalar(
        text("SELECT name FROM organizations WHERE id = :org"), {"org": org}
    )
    counts = {
        "leads": int(
            await session.scalar(
                text("SELECT count(*) FROM leads WHERE organization_id = :org"), {"org": org}
            )
            or 0
        )
    }
    requested_by = request.requested_by
    await session.execute(text("DELETE FROM organizations WHERE id = :org"), {"org": org})
    storage = get_storage(ctx.settings)
    deleted = 0
    for key in keys:
        try:
            await asyncio.to_thread(storage.delete, key)
            deleted += 1
        except OSError:
            continue
    await set_tenant(session, None)
    receipt = {
        "organization_id": str(org),
        "organization_name_removed": bool(name),
        "rows": counts,
        "files_deleted": deleted,
        "completed_at": clock.now().isoformat(),
    }
    # The organization is gone: the receipt stays in the trail without it.
    await audit.record(
        session,
        action="privacy.org_deleted",
        resource_type="organization",
        resource_id=org,
        organization_id=None,
        user_id=requested_by,
        changes={"receipt": receipt},
    )
    return receipt


# --- retention -------------------------------------------------------------------------------


@job_handler(RETENTION, SystemPayload, max_attempts=3, timeout_seconds=1800)
async def apply_retention(ctx: JobContext, payload: SystemPayload) -> dict[str, Any] | None:
    org = _org(ctx)
    found = await ctx.session.get(Organization, org)
    policy = retention_of(found.settings if found is not None else None)
    result = await retention.apply(ctx.session, ctx.settings, org, policy, clock.now())
    if any(result.values()):
        await audit.record(
            ctx.session,
            action="privacy.retention_applied",
            resource_type="organization",
            resource_id=org,
            organization_id=org,
            changes={"after": result},
        )
    return result


@job_handler(RETENTION_ALL, SystemPayload, max_attempts=3, timeout_seconds=600)
async def retention_all(ctx: JobContext, payload: SystemPayload) -> dict[str, Any] | None:
    day = period_start(clock.now(), timedelta(days=1)).date().isoformat()
    rows = await ctx.session.execute(text("SELECT id FROM lovedcrm_privacy_retention_targets()"))
    queued = 0
    for (organization_id,) in rows.all():
        await set_tenant(ctx.session, organization_id)
        queued += (
            await enqueue(
                ctx.session,
                RETENTION,
                SystemPayload(),
                organization_id=organization_id,
                dedupe_key=f"privacy:retention:{organization_id}:{day}",
            )
            is not None
        )
    await set_tenant(ctx.session, None)
    return {"queued": queued}


every("privacy-retention", RETENTION_ALL, timedelta(days=1))
