"""Relatórios → Previsão: the revenue forecast (chart, table, CSV) from the same numbers as
``GET /api/v1/reports/forecast``."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Annotated

from babel.dates import format_date
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response

from lovedcrm.core.deps import SessionDep
from lovedcrm.reports import forecast_service
from lovedcrm.reports.forecast_api import ForecastOut, forecast_out
from lovedcrm.web.kit import Shell, page_router, render, require

router = page_router()
ReportReader = Annotated[Shell, Depends(require("reports:read"))]


HISTORY_SHOWN = 12  # months of won revenue beside the forecast


def month_label(month: str, locale: str) -> str:
    """``2026-03`` → ``mar. de 2026`` / ``Mar 2026``."""
    return format_date(date.fromisoformat(f"{month}-01"), "MMM y", locale=locale)


def chart_data(out: ForecastOut, locale: str, labels: dict[str, str]) -> str:
    """The chart's series as JSON (read by /static/forecast.js from a data- attribute)."""
    return json.dumps(
        {
            "locale": locale.replace("_", "-"),
            "currency": out.currency,
            "labels": labels,
            "history": [
                {"month": h.month, "revenue": h.revenue} for h in out.history[-HISTORY_SHOWN:]
            ],
            "forecast": [m.model_dump() for m in out.months],
        },
        separators=(",", ":"),
    )


@router.get("/reports/forecast", response_class=HTMLResponse)
async def forecast_page(request: Request, frame: ReportReader, session: SessionDep) -> Response:
    out = forecast_out(await forecast_service.revenue_forecast(session, frame.principal))
    locale = frame.i18n.locale
    months = [h.month for h in out.history[-HISTORY_SHOWN:]] + [m.month for m in out.months]
    labels = {m: month_label(m, locale) for m in months}
    return render(
        request,
        "reports/forecast.html",
        **frame.context("reports"),
        tab="forecast",
        result=out,
        history=out.history[-HISTORY_SHOWN:],
        labels=labels,
        chart=chart_data(out, locale, labels),
    )


@router.get("/reports/forecast.csv")
async def forecast_csv(request: Request, frame: ReportReader, session: SessionDep) -> Response:
    out = forecast_out(await forecast_service.revenue_forecast(session, frame.principal))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["kind", "month", "expected", "low80", "high80", "low95", "high95", "won", "deals"]
    )
    for h in out.history:
        writer.writerow(["won", h.month, "", "", "", "", "", f"{h.revenue:.2f}", h.deals])
    for m in out.months:
        writer.writerow(
            ["forecast", m.month]
            + [f"{v:.2f}" for v in (m.expected, m.low80, m.high80, m.low95, m.high95)]
            + [f"{m.already_won:.2f}", ""]
        )
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="forecast.csv"'},
    )
