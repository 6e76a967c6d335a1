"""The home page: the signed-in person's day (tasks due, idle leads, the pipeline, this
month's won value) from ``reports.home``; outside any organization, the way to create or join
one."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Request
from fastapi.responses import HTMLResponse

from lovedcrm.core.deps import SessionDep
from lovedcrm.reports import home as dashboard
from lovedcrm.web.kit import SignedIn, page_router, render

router = page_router()


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, frame: SignedIn, session: SessionDep) -> HTMLResponse:
    summary = None
    if frame.org is not None:
        summary = await dashboard.home_summary(
            session, frame.principal, datetime.now(UTC), frame.org
        )
    return render(request, "reports/home.html", **frame.context("home"), summary=summary)
