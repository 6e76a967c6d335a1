"""The billing page (``/settings/billing``): plan, status, trial days left, usage against
the plan's limits, invoices, Upgrade (checkout) and Manage (portal), the plans compared; and
the demo's sandbox checkout (``/billing/sandbox/checkout``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from babel.numbers import format_currency
from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lovedcrm.billing import service
from lovedcrm.billing.providers.base import Invoice
from lovedcrm.billing.schemas import Cycle, PlanKey
from lovedcrm.config import Settings
from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError
from lovedcrm.organizations import plans
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import PageError, Shell, attempt, page_router, redirect, render, require

router = page_router()
Manager = Annotated[Shell, Depends(require("billing:manage"))]

LIMIT_LABELS = plans.LIMIT_LABELS
FEATURE_LABELS = plans.FEATURE_LABELS
STATUS_LABELS = {
    "trialing": N_("Trial"),
    "active": N_("Active"),
    "past_due": N_("Payment overdue"),
    "unpaid": N_("Unpaid"),
    "canceled": N_("Canceled"),
    "incomplete": N_("Incomplete"),
    "incomplete_expired": N_("Expired"),
    "paused": N_("Paused"),
}


def _price(frame: Shell, cents: int, currency: str) -> str:
    return format_currency(Decimal(cents) / 100, currency, locale=frame.i18n.locale)


async def _page(
    request: Request,
    frame: Shell,
    session: SessionDep,
    settings: Settings,
    *,
    error: str | None = None,
    blockers: list[dict[str, Any]] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    view = await service.overview(session, frame.principal, settings)
    found: list[Invoice] = []
    invoice_error = None
    try:
        found = await attempt(session, service.invoices(session, frame.principal, settings))
    except AppError:
        invoice_error = True
    currency = settings.billing_currency
    compared = [
        {
            "plan": plans.PLANS[key],
            "monthly": _price(frame, plans.PLANS[key].price(currency, "monthly"), currency),
            "yearly": _price(frame, plans.PLANS[key].price(currency, "yearly"), currency),
            "current": key == view.plan.key,
        }
        for key in plans.PLAN_ORDER
    ]
    sub = view.subscription
    return render(
        request,
        "billing/billing.html",
        status_code,
        **frame.context("settings"),
        tab="billing",
        view=view,
        sub=sub,
        status_label=STATUS_LABELS.get(sub.status, sub.status) if sub else None,
        compared=compared,
        invoices=found,
        invoice_error=invoice_error,
        limit_labels=LIMIT_LABELS,
        feature_labels=FEATURE_LABELS,
        features=plans.FEATURES,
        warnings=[line for line in view.usage if line.warning],
        error=error,
        blockers=blockers or [],
        price=lambda cents, cur: _price(frame, cents, cur),
        sandbox=settings.billing_provider == "sandbox",
    )


@router.get("/settings/billing", response_class=HTMLResponse)
async def billing_page(
    request: Request, frame: Manager, session: SessionDep, settings: SettingsDep
) -> Response:
    return await _page(request, frame, session, settings)


@router.post("/settings/billing/checkout", response_class=HTMLResponse)
async def checkout(
    request: Request,
    frame: Manager,
    session: SessionDep,
    settings: SettingsDep,
    plan: Annotated[str, Form(max_length=20)] = "",
    cycle: Annotated[str, Form(max_length=20)] = "monthly",
) -> Response:
    t = frame.i18n.gettext
    try:
        result = await attempt(
            session, service.start_checkout(session, frame.principal, settings, plan, cycle)
        )
    except AppError as exc:
        blockers = exc.extra.get("blockers") if exc.code == "downgrade_below_usage" else None
        message = (
            t("You use more than this plan allows. Remove the excess first:")
            if blockers
            else t(exc.detail)
            if exc.code == "subscription_exists"
            else t("This plan could not be chosen. Try again in a moment.")
        )
        return await _page(
            request, frame, session, settings, error=message, blockers=blockers,
            status_code=exc.status if exc.status < 500 else 502,
        )  # fmt: skip
    return RedirectResponse(result.url, status_code=303)


@router.post("/settings/billing/portal", response_class=HTMLResponse)
async def portal(
    request: Request, frame: Manager, session: SessionDep, settings: SettingsDep
) -> Response:
    t = frame.i18n.gettext
    try:
        url = await attempt(session, service.portal_url(session, frame.principal, settings))
    except AppError as exc:
        return await _page(
            request, frame, session, settings,
            error=t("The billing portal could not be opened. Choose a plan first, or try again."),
            status_code=exc.status if exc.status < 500 else 502,
        )  # fmt: skip
    if settings.billing_provider == "sandbox":
        return redirect(url, t("In the demo, the plan is managed right here."), "info")
    return RedirectResponse(url, status_code=303)


def _sandbox_only(settings: Settings) -> None:
    if not service.sandbox_checkout_open(settings):
        raise PageError(
            404,
            N_("Not found"),
            N_("This page does not exist, was deleted, or is not visible to you."),
            back_url="/settings/billing",
        )


@router.get("/billing/sandbox/checkout", response_class=HTMLResponse)
async def sandbox_checkout(
    request: Request,
    frame: Manager,
    settings: SettingsDep,
    plan: PlanKey = "pro",
    cycle: Cycle = "monthly",
) -> Response:
    _sandbox_only(settings)
    chosen = plans.PLANS[plan]
    currency = settings.billing_currency
    return render(
        request,
        "billing/sandbox_checkout.html",
        **frame.context("settings"),
        plan=chosen,
        cycle=cycle,
        amount=_price(frame, chosen.price(currency, cycle), currency),
        feature_labels=FEATURE_LABELS,
    )


@router.post("/billing/sandbox/checkout", response_class=HTMLResponse)
async def sandbox_pay(
    request: Request,
    frame: Manager,
    session: SessionDep,
    settings: SettingsDep,
    plan: Annotated[str, Form(max_length=20)] = "",
    cycle: Annotated[str, Form(max_length=20)] = "monthly",
) -> Response:
    _sandbox_only(settings)
    t = frame.i18n.gettext
    try:
        await attempt(session, service.sandbox_pay(session, frame.principal, settings, plan, cycle))
    except AppError as exc:
        blockers = exc.extra.get("blockers") if exc.code == "downgrade_below_usage" else None
        return await _page(
            request, frame, session, settings,
            error=t("You use more than this plan allows. Remove the excess first:")
            if blockers else t("This plan could not be chosen. Try again in a moment."),
            blockers=blockers, status_code=exc.status,
        )  # fmt: skip
    name = plans.PLANS[plan].name if plan in plans.PLANS else plan
    return redirect(
        "/settings/billing", t("Payment received: the %(plan)s plan is active.") % {"plan": name}
    )
