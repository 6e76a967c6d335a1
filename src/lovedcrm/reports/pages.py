"""The home page: the signed-in person's day (tasks due, idle leads, the pipeline, this
month's won value) from ``reports.home`` and, for managers and admins, the pipeline's actions
(``reports.optimization``); outside any organization, the way to create or join one. And the
reports (Relatórios): four sections of the same reports the JSON API answers, each with its
filters, charts, tables and CSV links."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import ValidationFailed
from lovedcrm.reports import api, optimization, service, tables
from lovedcrm.reports import home as dashboard
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import Shell, SignedIn, page_router, render, require

router = page_router()


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, frame: SignedIn, session: SessionDep) -> HTMLResponse:
    summary = None
    if frame.org is not None:
        summary = await dashboard.home_summary(
            session, frame.principal, datetime.now(UTC), frame.org
        )
    return render(
        request,
        "reports/home.html",
        **frame.context("home"),
        summary=summary,
        advises=_advises(frame),
    )


def _advises(frame: Shell) -> bool:
    """Managers and admins see the pipeline's actions on the home page."""
    return frame.principal.role in ("admin", "manager") and frame.principal.can("reports:read")


@router.get("/reports/actions", response_class=HTMLResponse)
async def pipeline_actions(request: Request, frame: ReportReader, session: SessionDep) -> Response:
    """The home page's card of pipeline actions (reports.optimization over the last 30 days),
    loaded after the page by htmx so the home page does not wait for it."""
    if not _advises(frame):
        return HTMLResponse("")
    today = await service.organization_today(session, frame.principal)
    advice = await optimization.optimization(
        session, frame.principal, optimization.default_filters(today)
    )
    return render(request, "reports/_home_actions.html", **frame.context("home"), r=advice)


# --- the reports (Relatórios) -----------------------------------------------------------------

# The report pages: their tab, title and the reports each shows, in order.
SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "overview": (N_("Overview"), ("overview", "funnel", "optimization")),
    "pipeline": (N_("Pipeline"), ("stages", "optimization")),
    "team": (N_("Team"), ("owners", "whatsapp", "activity")),
    "channels": (N_("Sources and messages"), ("sources", "templates")),
}
SECTION_URLS = {
    "overview": "/reports",
    "pipeline": "/reports/pipeline",
    "team": "/reports/team",
    "channels": "/reports/channels",
}
ReportReader = Annotated[Shell, Depends(require("reports:read"))]


def _chart_data(name: str, report: BaseModel, gettext: Any) -> dict[str, Any]:
    """What a chart draws (labels and values), from the same numbers as the table, with the
    labels the table shows in the reader's words."""
    header, rows = tables.TABLES[name](report)
    rows = jsonable_encoder(rows)
    if name == "funnel" and rows:
        rows[-1][0] = gettext("Won")
    blank = {"owners": "Unassigned", "sources": "No source"}.get(name)
    for row in rows if blank else ():
        row[0] = row[0] or gettext(blank)
    return {"name": name, "header": header, "rows": rows}


async def _members(session: AsyncSession, frame: Shell) -> list[tuple[str, str]]:
    if not frame.principal.can("leads:read_all"):
        return []
    return await service.member_choices(session, frame.principal)


async def _section(
    request: Request, frame: Shell, session: AsyncSession, section: str
) -> HTMLResponse:
    title, names = SECTIONS[section]
    raw = dict(request.query_params)
    stage_list = await service.stage_choices(session, frame.principal)
    form = {k: raw.get(k, "") for k in ("start", "end", "owner", "source", "stage")}
    ctx: dict[str, Any] = {
        **frame.context("reports"),
        "section": section,
        "section_title": title,
        "sections": [(k, v[0], SECTION_URLS[k]) for k, v in SECTIONS.items()],
        "form": form,
        "members": await _members(session, frame),
        "stage_choices": stage_list,
        "query": urlencode({k: v for k, v in form.items() if v}),
        "errors": {},
    }
    try:
        today = await service.organization_today(session, frame.principal)
        filters = service.parse_filters(raw, today)
    except ValidationFailed as e:
        ctx["errors"] = {err["field"]: err["message"] for err in (e.extra or {}).get("errors", [])}
        return render(request, "reports/reports.html", 422, reports={}, charts={}, **ctx)
    reports: dict[str, BaseModel] = {}
    for name in names:
        reports[name] = await api.REPORTS[name][0](session, frame.principal, filters)
    charts = {n: _chart_data(n, r, frame.i18n.gettext) for n, r in reports.items()}
    ctx["form"] = form | {"start": filters.start.isoformat(), "end": filters.end.isoformat()}
    return render(request, "reports/reports.html", reports=reports, charts=charts, **ctx)


@router.get("/reports", response_class=HTMLResponse)
async def reports_overview(request: Request, frame: ReportReader, session: SessionDep) -> Response:
    return await _section(request, frame, session, "overview")


@router.get("/reports/pipeline", response_class=HTMLResponse)
async def reports_pipeline(request: Request, frame: ReportReader, session: SessionDep) -> Response:
    return await _section(request, frame, session, "pipeline")


@router.get("/reports/team", response_class=HTMLResponse)
async def reports_team(request: Request, frame: ReportReader, session: SessionDep) -> Response:
    return await _section(request, frame, session, "team")


@router.get("/reports/channels", response_class=HTMLResponse)
async def reports_channels(request: Request, frame: ReportReader, session: SessionDep) -> Response:
    return await _section(request, frame, session, "channels")


def _csv_route(name: str) -> None:
    async def download(request: Request, frame: ReportReader, session: SessionDep) -> Response:
        today = await service.organization_today(session, frame.principal)
        try:
            filters = service.parse_filters(dict(request.query_params), today)
        except ValidationFailed as e:
            return Response(
                str(e.detail) + "\n", status_code=422, media_type="text/plain; charset=utf-8"
            )
        report = await api.REPORTS[name][0](session, frame.principal, filters)
        return Response(
            tables.to_csv(name, report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="report-{name}.csv"'},
        )

    download.__name__ = f"report_{name}_csv"
    router.add_api_route(f"/reports/{name}.csv", download, methods=["GET"])


for _name in api.REPORTS:
    _csv_route(_name)
