"""JSON routes for the reports (thin: one service function per report). Every report takes
the same filters (``start``, ``end``, ``owner``, ``source``, ``stage``) and answers JSON, or
CSV with ``format=csv``."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.deps import Require, SessionDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.core.schemas import IsoDate
from lovedcrm.reports import optimization, service, tables
from lovedcrm.reports import schemas as s

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])
Reader = Annotated[Principal, Depends(Require("reports:read"))]
Admin = Annotated[Principal, Depends(Require("settings:manage"))]

Report = Callable[[AsyncSession, Principal, service.Filters], Awaitable[BaseModel]]

REPORTS: dict[str, tuple[Report, type[BaseModel], str]] = {
    "overview": (
        service.overview,
        s.OverviewReport,
        "Leads created, won and lost, win rate, won value, average deal size and the sales "
        "cycle (median and average days from created to won), for the period and the one "
        "before it.",
    ),
    "funnel": (
        service.funnel,
        s.FunnelReport,
        "The leads created in the period: how many reached each stage (or beyond) and won, "
        "with the conversion from each step to the next.",
    ),
    "stages": (
        service.stages,
        s.StagesReport,
        "Time in each stage: median, p75 and average days of the stays that ended in the "
        "period, and the leads in each stage now.",
    ),
    "owners": (
        service.owners,
        s.OwnersReport,
        "The leaderboard: per owner, leads created, deals won and lost and their value in the "
        "period, the open pipeline now and the activities logged.",
    ),
    "sources": (
        service.sources,
        s.SourcesReport,
        "Per source: leads created in the period, how many of them are won and their value, "
        "and the leads created in the previous period.",
    ),
    "templates": (
        service.templates,
        s.TemplatesReport,
        "Message templates sent in the period: answer rate and conversion, and each A/B "
        "variant against its family's leader (two-proportion z-test, sample sizes named; "
        "no verdict under the minimum number of sends).",
    ),
    "whatsapp": (
        service.whatsapp,
        s.WhatsappReport,
        "WhatsApp: per owner, the leads whose first message came in the period, how many "
        "were answered and the first-response time (median and p75 minutes).",
    ),
    "activity": (
        service.activity,
        s.ActivityReport,
        "Activities members logged in the period, per kind, day and member (the owner "
        "filter is the member; source and stage do not apply).",
    ),
    "optimization": (
        optimization.optimization,
        s.OptimizationReport,
        "Pipeline optimization: bottleneck stages against the organization's own history, "
        "stalled deals (in a stage longer than its p75 with no activity) and actions.",
    ),
}


async def filters_of(
    session: SessionDep,
    principal: Reader,
    start: Annotated[IsoDate | None, Query(description="First day (default: 30 days ago).")] = None,
    end: Annotated[
        IsoDate | None,
        Query(description="Last day (default today); after the start, at most three years on."),
    ] = None,
    owner: Annotated[uuid.UUID | None, Query(description="An owner's user id.")] = None,
    source: Annotated[str | None, Query(max_length=100)] = None,
    stage: Annotated[uuid.UUID | None, Query(description="A stage id (leads now in it).")] = None,
) -> service.Filters:
    today = await service.organization_today(session, principal)
    raw = {
        name: None if value is None else str(value)
        for name, value in (
            ("start", start),
            ("end", end),
            ("owner", owner),
            ("source", source),
            ("stage", stage),
        )
    }
    return service.parse_filters(raw, today)


FiltersDep = Annotated[service.Filters, Depends(filters_of)]
Format = Annotated[Literal["json", "csv"], Query(description="csv: the report's table.")]


def _csv(name: str, report: BaseModel) -> Response:
    return Response(
        tables.to_csv(name, report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="report-{name}.csv"'},
    )


def _route(name: str, fn: Report, model: type[BaseModel], doc: str) -> None:
    async def endpoint(
        principal: Reader, session: SessionDep, filters: FiltersDep, format: Format = "json"
    ) -> Any:
        report = await fn(session, principal, filters)
        return _csv(name, report) if format == "csv" else report

    endpoint.__name__ = f"report_{name}"
    router.add_api_route(
        f"/{name}",
        endpoint,
        methods=["GET"],
        response_model=model,
        summary=f"Report: {name}",
        description=doc,
        responses={
            **problem_responses(401, 403, 422),
            200: {"content": {"text/csv": {}}},
        },
    )


for _name, (_fn, _model, _doc) in REPORTS.items():
    _route(_name, _fn, _model, _doc)


@router.post("/recompute", response_model=s.Recomputed, responses=problem_responses(401, 403))
async def recompute(principal: Admin, session: SessionDep) -> s.Recomputed:
    """Rebuild the organization's report aggregates from its history (after an upgrade, or
    after activities were deleted). Admins."""
    return await service.recompute(session, principal)
