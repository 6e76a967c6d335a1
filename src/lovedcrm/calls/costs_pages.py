"""Relatórios → Custos: what calls and WhatsApp messages cost (tables per group and currency,
the other-provider comparison, CSV) from the same numbers as ``GET /api/v1/costs``; and the
WhatsApp rate table form for admins."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlencode

from babel import Locale
from babel.numbers import format_currency
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lovedcrm.calls import costs
from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import ValidationFailed
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import Shell, flash, page_router, render, require

router = page_router()
ReportReader = Annotated[Shell, Depends(require("reports:read"))]
Admin = Annotated[Shell, Depends(require("settings:manage"))]

PAGE = "/reports/costs"
GROUP_NAMES = {
    "user": N_("Per user"),
    "provider": N_("Per provider"),
    "source": N_("Per lead source"),
    "month": N_("Per month"),
}
CATEGORY_NAMES = {
    "marketing": N_("Marketing"),
    "utility": N_("Utility"),
    "authentication": N_("Authentication"),
    "service": N_("Service"),
}
PROVIDER_NAMES = {
    "twilio": "Twilio",
    "telnyx": "Telnyx",
    "sandbox": "Sandbox",
    "whatsapp_business": "WhatsApp Business API",
    "whatsapp_sandbox": "WhatsApp (sandbox)",
    "whatsapp_web": "WhatsApp Web",
}


def _money(locale: str) -> Any:
    """Amounts in their own currency, in the reader's locale: cents, and up to four digits
    when a price is finer than a cent (``R$ 0,35``, ``US$ 0,014``)."""
    standard = Locale.parse(locale).currency_formats["standard"].pattern.split(";")[0]
    fine = standard.replace("0.00", "0.00##")

    def fmt(amount: Decimal | None, currency: str) -> str:
        value = Decimal(amount if amount is not None else 0).quantize(Decimal("0.0001"))
        return format_currency(value, currency, format=fine, locale=locale, currency_digits=False)

    return fmt


async def _page(
    request: Request,
    frame: Shell,
    session: SessionDep,
    *,
    period: str | None,
    group_by: str,
    status_code: int = 200,
    rate_errors: dict[str, str] | None = None,
    rate_form: dict[str, str] | None = None,
) -> Response:
    t = frame.i18n.gettext
    errors: dict[str, str] = {}
    if group_by not in costs.GROUPS:
        group_by = "user"
    try:
        report = await costs.cost_report(session, frame.principal, period=period, group_by=group_by)
    except ValidationFailed:
        errors["period"] = t("Choose a month (YYYY-MM) or a year (YYYY).")
        status_code = 422
        report = await costs.cost_report(session, frame.principal, period=None, group_by=group_by)
    rates = report.whatsapp_rates
    form = rate_form or {
        "currency": rates.currency,
        **{c: f"{rates.rates[c]:f}" for c in costs.WHATSAPP_CATEGORIES},
    }
    return render(
        request,
        "calls/costs.html",
        status_code,
        **frame.context("reports"),
        tab="costs",
        report=report,
        period_value=period if errors else report.period,
        errors=errors,
        group_names={k: t(v) for k, v in GROUP_NAMES.items()},
        category_names={k: t(v) for k, v in CATEGORY_NAMES.items()},
        provider_names=PROVIDER_NAMES,
        categories=costs.WHATSAPP_CATEGORIES,
        money_in=_money(frame.i18n.locale),
        csv_url=PAGE
        + "?"
        + urlencode({"period": report.period, "group_by": group_by, "format": "csv"}),
        can_edit_rates=frame.principal.can("settings:manage"),
        rate_form=form,
        rate_errors=rate_errors or {},
    )


@router.get(PAGE, response_class=HTMLResponse)
async def costs_page(
    request: Request,
    frame: ReportReader,
    session: SessionDep,
    period: str | None = None,
    group_by: str = "user",
    format: str = "html",
) -> Response:
    if format == "csv":
        report = await costs.cost_report(session, frame.principal, period=period, group_by=group_by)
        return Response(
            costs.report_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="costs-{report.period}.csv"'},
        )
    return await _page(request, frame, session, period=period or None, group_by=group_by)


@router.post(PAGE + "/whatsapp-rates", response_class=HTMLResponse)
async def rates_save(request: Request, frame: Admin, session: SessionDep) -> Response:
    t = frame.i18n.gettext
    data = await request.form()
    form = {k: str(data.get(k) or "").strip() for k in ("currency", *costs.WHATSAPP_CATEGORIES)}
    form["currency"] = form["currency"].upper()
    errors: dict[str, str] = {}
    if not costs.CURRENCY.match(form["currency"]):
        errors["currency"] = t("Use a three-letter currency code, such as BRL.")
    rates: dict[str, Decimal] = {}
    for category in costs.WHATSAPP_CATEGORIES:
        raw = form[category].replace(",", ".")
        try:
            value = Decimal(raw)
        except InvalidOperation:
            value = Decimal(-1)
        if not value.is_finite() or value < 0 or value > 1000:
            errors[category] = t("Enter a price of zero or more, such as 0.35.")
        else:
            rates[category] = value
    if errors:
        return await _page(
            request,
            frame,
            session,
            period=None,
            group_by="user",
            status_code=422,
            rate_errors=errors,
            rate_form=form,
        )
    current = await costs.get_whatsapp_rates(session, frame.principal)
    await costs.set_whatsapp_rates(
        session,
        frame.principal,
        currency=form["currency"],
        rates=rates,
        template_categories=current.template_categories,
    )
    response = RedirectResponse(PAGE + "#whatsapp-rates", status_code=303)
    flash(response, t("WhatsApp prices saved."))
    return response
