"""JSON routes for costs: ``GET /api/v1/costs`` (what calls and WhatsApp messages cost, per
month, user, provider or lead source; CSV with ``format=csv``) and the WhatsApp rate table
(thin: rules in ``calls.costs``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from lovedcrm.calls import costs
from lovedcrm.core.deps import Require, SessionDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.core.schemas import IsoDateTime, StrictIn

router = APIRouter(prefix="/api/v1/costs", tags=["costs"])
Reader = Annotated[Principal, Depends(Require("reports:read"))]
Admin = Annotated[Principal, Depends(Require("settings:manage"))]

# A message template's category as the templates store it (no surrounding spaces, no NUL).
TEMPLATE_CATEGORY = r"^[^\s\u0000]+( [^\s\u0000]+)*$"
CategoryName = Literal["marketing", "utility", "authentication", "service"]


class CostAmount(BaseModel):
    currency: str = Field(examples=["BRL"], min_length=3, max_length=3)
    amount: Decimal = Field(examples=["12.34000"])


class CostCategoryCounts(BaseModel):
    marketing: int = 0
    utility: int = 0
    authentication: int = 0
    service: int = 0


class CostRowOut(BaseModel):
    key: str | None = Field(
        description="The group: a user id, provider, lead source or YYYY-MM; null: none "
        "(no user, no source)."
    )
    label: str | None = Field(description="The user's name for group_by=user; else the key.")
    calls: int
    billed_minutes: int
    unpriced_calls: int = Field(description="Calls whose cost is not known (no price, no rate).")
    voice: list[CostAmount]
    messages: int = Field(description="Billed outbound WhatsApp messages.")
    messages_by_category: CostCategoryCounts
    whatsapp: list[CostAmount]
    total: list[CostAmount] = Field(description="Voice + WhatsApp, per currency.")


class CostAlternativeOut(BaseModel):
    provider: str = Field(examples=["telnyx"])
    configured: bool = Field(
        description="false: this provider has no configuration with a cost per minute, so "
        "there is no figure."
    )
    currency: str | None
    cost_per_minute: Decimal | None
    amount: Decimal | None = Field(description="The same billed minutes at this rate.")


class CostComparisonOut(BaseModel):
    provider: str = Field(examples=["twilio"])
    calls: int
    billed_minutes: int
    actual: list[CostAmount]
    at_own_rate: CostAlternativeOut
    alternatives: list[CostAlternativeOut]


class WhatsappRatesOut(BaseModel):
    currency: str = Field(examples=["BRL"])
    rates: dict[CategoryName, Decimal]
    template_categories: dict[str, CategoryName] = Field(
        description="A message template's category → the WhatsApp category it is billed as "
        "(unlisted template categories are billed as marketing)."
    )
    customized: bool = Field(description="false: the default table.")


class CostReportOut(BaseModel):
    period: str = Field(examples=["2026-03"])
    start: IsoDateTime
    end: IsoDateTime
    group_by: Literal["user", "provider", "source", "month"]
    scope: Literal["organization", "own"]
    rows: list[CostRowOut]
    totals: CostRowOut
    comparisons: list[CostComparisonOut]
    whatsapp_rates: WhatsappRatesOut


class WhatsappRatesIn(StrictIn):
    currency: str = Field(pattern=r"^[A-Z]{3}$", examples=["BRL"])
    rates: dict[
        CategoryName, Annotated[Decimal, Field(ge=0, le=1000, max_digits=9, decimal_places=5)]
    ] = Field(
        description="The price of one billed message per category; categories not given keep "
        "their current price.",
        examples=[{"marketing": "0.35", "utility": "0.045"}],
    )
    template_categories: dict[
        Annotated[str, Field(min_length=1, max_length=100, pattern=TEMPLATE_CATEGORY)],
        CategoryName,
    ] = Field(default_factory=dict, max_length=200, examples=[{"follow_up": "utility"}])


def _money(m: costs.Money) -> list[CostAmount]:
    return [CostAmount(currency=c, amount=a) for c, a in m.items()]


def _alternative(a: costs.Alternative) -> CostAlternativeOut:
    return CostAlternativeOut(
        provider=a.provider,
        configured=a.configured,
        currency=a.currency,
        cost_per_minute=a.cost_per_minute,
        amount=a.amount,
    )


def _row(r: costs.CostRow) -> CostRowOut:
    return CostRowOut(
        key=r.key,
        label=r.label,
        calls=r.calls,
        billed_minutes=r.minutes,
        unpriced_calls=r.unpriced_calls,
        voice=_money(r.voice),
        messages=r.messages,
        messages_by_category=CostCategoryCounts(**r.by_category),
        whatsapp=_money(r.whatsapp),
        total=_money(r.total),
    )


def rates_out(rates: costs.WhatsappRates) -> WhatsappRatesOut:
    return WhatsappRatesOut(
        currency=rates.currency,
        rates=rates.rates,
        template_categories=rates.template_categories,
        customized=rates.customized,
    )


def report_out(report: costs.CostReport) -> CostReportOut:
    return CostReportOut(
        period=report.period,
        start=report.start,
        end=report.end,
        group_by=report.group_by,
        scope=report.scope,
        rows=[_row(r) for r in report.rows],
        totals=_row(report.totals),
        comparisons=[
            CostComparisonOut(
                provider=c.provider,
                calls=c.calls,
                billed_minutes=c.minutes,
                actual=_money(c.actual),
                at_own_rate=_alternative(c.own_rate),
                alternatives=[_alternative(a) for a in c.alternatives],
            )
            for c in report.comparisons
        ],
        whatsapp_rates=rates_out(report.whatsapp_rates),
    )


@router.get(
    "",
    response_model=CostReportOut,
    responses={**problem_responses(401, 403, 422), 200: {"content": {"text/csv": {}}}},
)
async def cost_report(
    principal: Reader,
    session: SessionDep,
    period: Annotated[
        str | None,
        Query(
            pattern=r"^[12]\d{3}(-(0[1-9]|1[0-2]))?$",
            description="A month (YYYY-MM) or a year (YYYY); the current month when absent.",
        ),
    ] = None,
    group_by: Annotated[
        Literal["user", "provider", "source", "month"], Query(description="How rows group.")
    ] = "user",
    format: Annotated[Literal["json", "csv"], Query(description="csv: the table.")] = "json",
) -> CostReportOut | Response:
    """What calls and WhatsApp messages cost in the period, per currency (never added across
    currencies), grouped, with what the same calls would have cost on the other provider at
    the configured rates. Managers and admins see the organization; sales members their own."""
    report = await costs.cost_report(session, principal, period=period, group_by=group_by)
    if format == "csv":
        return Response(
            costs.report_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="costs-{report.period}.csv"'},
        )
    return report_out(report)


@router.get(
    "/whatsapp-rates", response_model=WhatsappRatesOut, responses=problem_responses(401, 403)
)
async def get_whatsapp_rates(principal: Reader, session: SessionDep) -> WhatsappRatesOut:
    """The price of one billed WhatsApp message per category (marketing, utility,
    authentication, service) used by the costs report."""
    return rates_out(await costs.get_whatsapp_rates(session, principal))


@router.put(
    "/whatsapp-rates",
    response_model=WhatsappRatesOut,
    responses=problem_responses(401, 403, 422),
)
async def put_whatsapp_rates(
    body: WhatsappRatesIn, principal: Admin, session: SessionDep
) -> WhatsappRatesOut:
    """Replace the WhatsApp rate table (categories not given keep their current price)."""
    rates = await costs.set_whatsapp_rates(
        session,
        principal,
        currency=body.currency,
        rates={str(k): v for k, v in body.rates.items()},
        template_categories=dict(body.template_categories),
    )
    return rates_out(rates)
