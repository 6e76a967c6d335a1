"""The background jobs settings page: the organization's counts, its failures with their
errors, and retry (``jobs.service``; the ``jobs:manage`` permission)."""

from __future__ import annotations

import uuid

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import Forbidden
from lovedcrm.jobs import service as jobs_service
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import PageError, SignedIn, page_router, redirect, render

router = page_router()

# The job statuses (jobs.models) as people read them.
STATUS_LABELS = {
    "pending": N_("Waiting"),
    "running": N_("Running"),
    "retrying": N_("Will retry"),
    "completed": N_("Completed"),
    "failed": N_("Failed for good"),
}


@router.get("/settings/jobs", response_class=HTMLResponse)
async def jobs_page(request: Request, frame: SignedIn, session: SessionDep) -> HTMLResponse:
    """Background jobs of the organization: counts, failures with their errors, retry."""
    try:
        stats = await jobs_service.stats(session, frame.principal)
    except Forbidden as exc:  # the page names the missing permission
        raise PageError(exc.status, N_("No access"), exc.detail) from exc
    failed, _ = await jobs_service.list_jobs(session, frame.principal, status="failed", limit=50)
    return render(
        request,
        "jobs/jobs.html",
        **frame.context("settings"),
        tab="jobs",
        stats=stats,
        failed=failed,
        status_labels=STATUS_LABELS,
    )


@router.post("/settings/jobs/{job_id}/retry")
async def jobs_retry(job_id: uuid.UUID, frame: SignedIn, session: SessionDep) -> Response:
    await jobs_service.retry(session, frame.principal, job_id)
    return redirect("/settings/jobs", frame.i18n.gettext("The job will run again."))
