"""Branding: the organization's name, color, language, currency and idle days, and its logo."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from lovedcrm.config import Settings
from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError
from lovedcrm.organizations import branding
from lovedcrm.organizations import service as org_service
from lovedcrm.web.i18n import CURRENCIES, LANG_COOKIE, LANGUAGE_TAGS, localizer_for
from lovedcrm.web.kit import COLOR, DEFAULT_ACCENT, Member, Shell, page_router, redirect, render

router = page_router()


def _branding_form(frame: Shell) -> dict[str, Any]:
    org_settings = dict(frame.org.settings or {}) if frame.org else {}
    return {
        "name": frame.org.name if frame.org else "",
        "primary_color": org_settings.get("primary_color") or DEFAULT_ACCENT,
        "locale": org_settings.get("locale") or "pt-BR",
        "currency": org_settings.get("currency") or "BRL",
        "stale_days": org_service.stale_days_of(frame.org),
    }


def _branding_page(
    request: Request,
    frame: Shell,
    settings: Settings,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    form = form or _branding_form(frame)
    color = str(form.get("primary_color") or "")
    return render(
        request,
        "organizations/branding.html",
        status_code,
        **frame.context("settings"),
        tab="branding",
        form=form,
        errors=errors or {},
        picker_color=color if COLOR.fullmatch(color) else DEFAULT_ACCENT,
        currencies=CURRENCIES,
        can_manage=frame.principal.can("settings:manage"),
        logo_limit=branding.human_size(settings.logo_max_bytes),
    )


@router.get("/settings/branding", response_class=HTMLResponse)
async def branding_page(request: Request, frame: Member, settings: SettingsDep) -> Response:
    return _branding_page(request, frame, settings)


@router.post("/settings/branding", response_class=HTMLResponse)
async def branding_submit(
    request: Request,
    frame: Member,
    session: SessionDep,
    settings: SettingsDep,
    name: Annotated[str, Form(max_length=255)] = "",
    primary_color: Annotated[str, Form(max_length=50)] = "",
    locale: Annotated[str, Form(max_length=10)] = "pt-BR",
    currency: Annotated[str, Form(max_length=10)] = "BRL",
    stale_days: Annotated[str, Form(max_length=10)] = "7",
) -> Response:
    t = frame.i18n.gettext
    color = primary_color.strip()
    form = {
        "name": name.strip(),
        "primary_color": color,
        "locale": locale,
        "currency": currency,
        "stale_days": stale_days.strip(),
    }
    errors: dict[str, str] = {}
    if not form["name"]:
        errors["name"] = t("Give the organization a name.")
    if not COLOR.fullmatch(color):
        errors["primary_color"] = t("Use a color in the #RRGGBB format, for example #6366f1.")
    if locale not in LANGUAGE_TAGS:
        errors["locale"] = t("Choose one of the languages in the list.")
    if currency not in CURRENCIES:
        errors["currency"] = t("Choose one of the currencies in the list.")
    days = int(form["stale_days"]) if form["stale_days"].isdigit() else 0
    if not 1 <= days <= 365:
        errors["stale_days"] = t("Use a whole number of days from 1 to 365.")
    if errors:
        return _branding_page(request, frame, settings, form=form, errors=errors, status_code=422)
    try:
        org = await org_service.update_organization(
            session,
            frame.principal,
            name=form["name"],
            settings={
                "primary_color": color.lower(),
                "locale": locale,
                "currency": currency,
                "stale_days": days,
            },
        )
    except AppError as exc:
        errors["form"] = t(exc.detail)
        return _branding_page(
            request, frame, settings, form=form, errors=errors, status_code=exc.status
        )
    # The organization's language may have just changed: say it in that language.
    loc = localizer_for(frame.i18n.locale, dict(org.settings or {}))
    if not request.cookies.get(LANG_COOKIE):
        loc = localizer_for(LANGUAGE_TAGS[locale], dict(org.settings or {}))
    return redirect("/settings/branding", loc.gettext("Settings saved."))


@router.post("/settings/branding/logo", response_class=HTMLResponse)
async def logo_submit(
    request: Request,
    frame: Member,
    session: SessionDep,
    settings: SettingsDep,
    logo: Annotated[UploadFile, File()],
) -> Response:
    data = await logo.read(settings.logo_max_bytes + 1)
    try:
        await branding.save_logo(session, settings, frame.principal, data)
    except AppError as exc:
        message = frame.i18n.gettext(exc.detail)
        if exc.code == "logo_too_large":
            message = frame.i18n.gettext("The logo is too large: the limit is %(limit)s.") % {
                "limit": branding.human_size(settings.logo_max_bytes)
            }
        return _branding_page(
            request, frame, settings, errors={"logo": message}, status_code=exc.status
        )
    return redirect("/settings/branding", frame.i18n.gettext("Logo updated."))
