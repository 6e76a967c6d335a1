"""``GET /api/v1/reports/forecast``: expected won revenue for the next three months with 80 %
and 95 % intervals, and the won revenue per month so far (thin: ``reports.forecast_service``)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from lovedcrm.core.deps import Require, SessionDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.reports import forecast_service
from lovedcrm.reports.forecast_service import ForecastView

router = APIRouter(prefix="/api/v1", tags=["reports"])
ReportReader = Annotated[Principal, Depends(Require("reports:read"))]


class ForecastMonthOut(BaseModel):
    month: str = Field(examples=["2026-03"])
    expected: float
    low80: float
    high80: float
    low95: float
    high95: float
    already_won: float = Field(description="Won in this month before today (known).")
    from_open_deals: float = Field(description="Expected from the deals open today.")
    from_new_deals: float = Field(description="Expected from deals not opened yet.")


class WonMonthOut(BaseModel):
    month: str = Field(examples=["2026-01"])
    revenue: float
    deals: int


class ForecastOut(BaseModel):
    as_of: date
    status: str = Field(
        description="ok; no_history (no deal won or lost yet); no_wins (none won yet)",
        examples=["ok"],
    )
    currency: str
    months: list[ForecastMonthOut]
    history: list[WonMonthOut]
    open_deals: int
    closed_deals: int
    won_deals: int
    win_rate: float | None
    month_variation: float | None = Field(
        description="sd of the month-to-month factor from the history; null: too few months"
    )
    calibrated_deals: int = Field(description="Open deals with a calibrated model probability.")
    stage_rate_deals: int = Field(description="Open deals given their stage's win rate.")
    draws: int


def forecast_out(view: ForecastView) -> ForecastOut:
    f = view.forecast
    return ForecastOut(
        as_of=f.as_of,
        status=f.status,
        currency=view.currency,
        months=[
            ForecastMonthOut(
                month=m.month.isoformat()[:7],
                expected=round(m.expected, 2),
                low80=round(m.low80, 2),
                high80=round(m.high80, 2),
                low95=round(m.low95, 2),
                high95=round(m.high95, 2),
                already_won=round(m.already_won, 2),
                from_open_deals=round(m.from_open, 2),
                from_new_deals=round(m.from_new, 2),
            )
            for m in f.months
        ],
        history=[
            WonMonthOut(month=h.month.isoformat()[:7], revenue=round(h.revenue, 2), deals=h.deals)
            for h in f.history
        ],
        open_deals=f.open_deals,
        closed_deals=f.closed_deals,
        won_deals=f.won_deals,
        win_rate=None if f.win_rate is None else round(f.win_rate, 4),
        month_variation=None if f.variation is None else round(f.variation, 4),
        calibrated_deals=view.calibrated_deals,
        stage_rate_deals=view.stage_rate_deals,
        draws=view.draws,
    )


@router.get("/reports/forecast", response_model=ForecastOut, responses=problem_responses(401, 403))
async def revenue_forecast(principal: ReportReader, session: SessionDep) -> ForecastOut:
    """Expected won revenue for this month and the next two, by simulation from the open
    deals (and new ones at the recent rate), with 80 % and 95 % intervals. Sales members see
    the forecast of their own deals."""
    return forecast_out(await forecast_service.revenue_forecast(session, principal))
