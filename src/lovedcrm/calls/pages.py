"""HTML pages of calls: Settings → Telephony (admins: providers, credentials shown masked,
business numbers, cost per minute, test connection, the webhook URLs to paste), the lead
page's calls panel (loaded with hx-get: leads sit below calls) with the "Call" button, the
live state polled every 2 s while a call is not finished and the notes/outcome form, and the
recording player's audio.

Thin: the rules live in ``calls.configs`` and ``calls.service``.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any

from babel.numbers import format_currency
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response

from lovedcrm.calls import configs, recordings, service, switching_pages
from lovedcrm.calls.models import CallLog
from lovedcrm.calls.providers.base import TERMINAL
from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError
from lovedcrm.web.i18n import N_, Localizer
from lovedcrm.web.kit import (
    Member,
    PageError,
    Shell,
    attempt,
    page_router,
    parse_uuid,
    redirect,
    render,
    require,
)

router = page_router()
PAGE = "/settings/telephony"
Admin = Annotated[Shell, Depends(require("settings:manage"))]

# The services' messages the pages show as they come (kept in the catalogs by extraction).
SERVICE_MESSAGES = (
    N_("No telephony provider is set up. An admin can set one up in Settings → Telephony."),
    N_("Add your own phone number first (the call rings your phone, then the lead's)."),
    N_("The telephony configuration has no business number to call from."),
    N_("The lead has no phone number to call."),
    N_("The number to call is not a valid phone number."),
    N_("Telephony configuration not found."),
    N_("This call has no recording."),
    N_("No call with that id."),
    N_("Unknown call outcome."),
)


def status_names(t: Any) -> dict[str, str]:
    return {
        "queued": t("Calling your phone…"),
        "ringing": t("Ringing"),
        "in_progress": t("In progress"),
        "completed": t("Completed"),
        "no_answer": t("No answer"),
        "busy": t("Busy"),
        "failed": t("Failed"),
        "canceled": t("Canceled"),
    }


def outcome_names(t: Any) -> dict[str, str]:
    return {
        "interested": t("Interested"),
        "not_interested": t("Not interested"),
        "callback": t("Call back later"),
        "voicemail": t("Voicemail"),
        "wrong_number": t("Wrong number"),
        "other": t("Other"),
    }


def cost_text(loc: Localizer, amount: Any, currency: str | None) -> str | None:
    """A call's cost with the decimals it has (at least 2, at most 4)."""
    if amount is None:
        return None
    value = Decimal(str(amount))
    shown = value.quantize(Decimal("0.0001")).normalize()
    if -shown.as_tuple().exponent < 2:  # type: ignore[operator]
        shown = value.quantize(Decimal("0.01"))
    return format_currency(shown, currency or "USD", locale=loc.locale, decimal_quantization=False)


def duration_text(seconds: int | None) -> str:
    total = seconds or 0
    return f"{total // 60}:{total % 60:02d}"


def _call_view(loc: Localizer, call: CallLog) -> dict[str, Any]:
    meta = call.metadata_ or {}
    return {
        "call": call,
        "status": status_names(loc.gettext).get(call.status or "queued", call.status),
        "finished": call.status in TERMINAL,
        "duration": duration_text(call.duration_seconds),
        "cost": cost_text(loc, call.cost_amount, call.cost_currency),
        "reason": meta.get("reason"),
        "notes": meta.get("notes") or "",
        "outcome": meta.get("outcome") or "",
        "has_recording": bool(meta.get("recording_key")),
    }


# --- Settings → Telephony -----------------------------------------------------------------------


async def _settings_page(
    request: Request,
    frame: Shell,
    session: SessionDep,
    settings: SettingsDep,
    *,
    error: str | None = None,
    status_code: int = 200,
    check: dict[str, Any] | None = None,
) -> HTMLResponse:
    denied = not frame.principal.can("settings:manage")
    rows = [] if denied else await configs.list_configs(session, frame.principal)
    t = frame.i18n.gettext
    switching = (
        {} if denied else await switching_pages.switching_context(session, frame.principal, t)
    )
    return render(
        request,
        "calls/settings_telephony.html",
        status_code,
        **frame.context("settings"),
        tab="telephony",
        denied=denied,
        configs=[configs.config_out(settings, r) for r in rows],
        kinds=configs.KINDS,
        kind_names=configs.NAMES,
        kind_help={
            "twilio": t("Twilio Voice: your Account SID and Auth Token, and a Twilio number."),
            "telnyx": t(
                "Telnyx Call Control: an API key, the Call Control application (connection) id "
                "and the account's public key for webhook signatures."
            ),
            "sandbox": t("Simulated calls, nothing leaves the machine: for trying the product."),
        },
        error=error,
        check=check,
        back=PAGE,
        **switching,
    )


@router.get(PAGE, response_class=HTMLResponse)
async def telephony_page(
    request: Request, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    return await _settings_page(request, frame, session, settings)


def _form_values(form: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in (
        "label",
        "account_sid",
        "auth_token",
        "api_key",
        "connection_id",
        "public_key",
        "currency",
    ):
        raw = str(form.get(name) or "").strip()
        if raw or name in ("label",):
            values[name] = raw or None
    numbers = str(form.get("business_numbers") or "")
    values["business_numbers"] = [
        n.strip() for n in numbers.replace(";", ",").split(",") if n.strip()
    ]
    cpm = str(form.get("cost_per_minute") or "").strip().replace(",", ".")
    values["cost_per_minute"] = cpm or None
    values["record"] = form.get("record") == "1"
    return values


def _parse(values: dict[str, Any], t: Any) -> tuple[dict[str, Any], str | None]:
    raw = values.get("cost_per_minute")
    if raw is None:
        return values, None
    try:
        cpm = Decimal(raw)
        if not (Decimal(0) <= cpm <= Decimal("99.9999")) or -cpm.as_tuple().exponent > 4:  # type: ignore[operator]
            raise ValueError(raw)
    except (ValueError, ArithmeticError):
        return values, t("The cost per minute must be a number from 0 to 99.9999.")
    values["cost_per_minute"] = cpm
    return values, None


def _failure(frame: Shell, exc: AppError) -> str:
    t = frame.i18n.gettext
    fields = [e.get("field", "") for e in exc.extra.get("errors", [])]
    if fields:
        return t("Check these fields: %(fields)s") % {"fields": ", ".join(fields)}
    return t(exc.detail)


@router.post(PAGE, response_class=HTMLResponse)
async def telephony_create(
    request: Request, frame: Admin, session: SessionDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    kind = str(form.get("provider_type") or "")
    values, problem = _parse(_form_values(form), frame.i18n.gettext)
    if problem is None and kind in configs.KINDS:
        try:
            await attempt(
                session,
                configs.create_config(
                    session, frame.principal, settings, {"provider_type": kind, **values}
                ),
            )
        except AppError as exc:
            problem = _failure(frame, exc)
    elif problem is None:
        problem = frame.i18n.gettext("Unknown telephony provider.")
    if problem:
        return await _settings_page(
            request, frame, session, settings, error=problem, status_code=422
        )
    return redirect(PAGE, frame.i18n.gettext("Telephony provider added."))


async def _config_id(raw: str) -> uuid.UUID:
    parsed = parse_uuid(raw)
    if parsed is None:
        raise PageError(
            404, N_("Not found"), N_("Telephony configuration not found."), back_url=PAGE
        )
    return parsed


@router.post(PAGE + "/{config_id}/update", response_class=HTMLResponse)
async def telephony_update(
    request: Request, config_id: str, frame: Admin, session: SessionDep, settings: SettingsDep
) -> Response:
    parsed = await _config_id(config_id)
    values, problem = _parse(_form_values(await request.form()), frame.i18n.gettext)
    if problem is None:
        try:
            await attempt(
                session, configs.update_config(session, frame.principal, settings, parsed, values)
            )
        except AppError as exc:
            if exc.status == 404:
                raise
            problem = _failure(frame, exc)
    if problem:
        return await _settings_page(
            request, frame, session, settings, error=problem, status_code=422
        )
    return redirect(PAGE, frame.i18n.gettext("Telephony provider saved."))


@router.post(PAGE + "/{config_id}/test", response_class=HTMLResponse)
async def telephony_test(
    request: Request, config_id: str, frame: Admin, session: SessionDep, settings: SettingsDep
) -> Response:
    parsed = await _config_id(config_id)
    found = await configs.check_connection(session, frame.principal, settings, parsed)
    t = frame.i18n.gettext
    if found.ok:
        return redirect(PAGE, t("Connection works."))
    return redirect(
        PAGE,
        t("The provider did not accept the connection: %(detail)s") % {"detail": found.detail},
        "error",
    )


@router.post(PAGE + "/{config_id}/delete", response_class=HTMLResponse)
async def telephony_delete(
    request: Request, config_id: str, frame: Admin, session: SessionDep, settings: SettingsDep
) -> Response:
    parsed = await _config_id(config_id)
    try:
        await attempt(session, configs.delete_config(session, frame.principal, parsed))
    except AppError as exc:
        if exc.status == 404:
            raise
        return redirect(PAGE, frame.i18n.gettext(exc.detail), "error")
    return redirect(PAGE, frame.i18n.gettext("Telephony provider removed."))


# --- the lead page's calls panel ----------------------------------------------------------------


@router.get("/leads/{lead_id}/calls-panel", response_class=HTMLResponse)
async def calls_panel(
    request: Request, lead_id: str, frame: Member, session: SessionDep
) -> Response:
    parsed = parse_uuid(lead_id)
    if parsed is None:
        return HTMLResponse("", status_code=404)
    try:
        lead, calls = await service.lead_calls(session, frame.principal, parsed)
    except AppError:
        return HTMLResponse("", status_code=404)
    loc = frame.i18n
    views = [_call_view(loc, c) for c in calls]
    live = any(not v["finished"] for v in views)
    return render(
        request,
        "calls/_calls_panel.html",
        **frame.context("leads"),
        lead=lead,
        calls=views,
        live=live,
        can_call=frame.principal.can("leads:write") and bool(lead.phone),
        outcomes=outcome_names(loc.gettext),
    )


@router.post("/leads/{lead_id}/call", response_class=HTMLResponse)
async def call_lead(
    request: Request, lead_id: str, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    """The "Call" button: dial, back to the lead (its panel shows the call live)."""
    parsed = parse_uuid(lead_id)
    if parsed is None:
        raise PageError(404, N_("Not found"), N_("No lead with that id."), back_url="/leads")
    back = f"/leads/{parsed}#calls-panel"
    t = frame.i18n.gettext
    try:
        call = await attempt(session, service.dial(session, frame.principal, settings, parsed))
    except AppError as exc:
        if exc.status == 404:
            raise
        return redirect(back, t(exc.detail), "error")
    if call.status == "failed":
        reason = (call.metadata_ or {}).get("reason") or ""
        return redirect(back, t("The call failed: %(reason)s") % {"reason": reason}, "error")
    return redirect(back, t("Calling your phone: answer it and the lead's phone will ring."))


@router.post("/calls/{call_id}/notes", response_class=HTMLResponse)
async def call_notes(
    request: Request, call_id: str, frame: Member, session: SessionDep
) -> Response:
    parsed = parse_uuid(call_id)
    if parsed is None:
        raise PageError(404, N_("Not found"), N_("No call with that id."), back_url="/leads")
    form = await request.form()
    outcome = str(form.get("outcome") or "") or None
    notes = str(form.get("notes") or "")[:5000]
    call = await service.update_call(
        session, frame.principal, parsed, {"notes": notes, "outcome": outcome}
    )
    back = f"/leads/{call.lead_id}#calls-panel" if call.lead_id else "/leads"
    return redirect(back, frame.i18n.gettext("Call notes saved."))


@router.get("/calls/{call_id}/recording")
async def call_recording(
    call_id: str, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    """The recording for the timeline's player (members who can see the lead)."""
    parsed = parse_uuid(call_id)
    if parsed is None:
        raise PageError(404, N_("Not found"), N_("This call has no recording."))
    _call, key = await service.recording_call(session, frame.principal, parsed)
    return await recordings.response(settings, key)
