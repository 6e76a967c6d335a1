"""HTML pages for settings (branding: name, color, language, currency, logo), the logo
file itself and the person's language choice. Thin: the rules live in
``organizations.service`` and ``organizations.branding``.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from lovedcrm.auth.deps import SESSION_COOKIE, SessionDep, SettingsDep, get_principal
from lovedcrm.core.errors import AppError, Forbidden, NotFound
from lovedcrm.organizations import branding, dashboard
from lovedcrm.organizations import service as org_service
from lovedcrm.web.i18n import CURRENCIES, LANG_COOKIE, LANGUAGE_TAGS, localizer_for
from lovedcrm.web.render import COLOR, DEFAULT_ACCENT, Shell, flash, render, shell

router = APIRouter(include_in_schema=False)

_SAFE_NEXT = re.compile(r"/(?![/\\])[^\s]*")


def _branding_form(frame: Shell) -> dict[str, Any]:
    org_settings = dict(frame.org.settings or {}) if frame.org else {}
    return {
        "name": frame.org.name if frame.org else "",
        "primary_color": org_settings.get("primary_color") or DEFAULT_ACCENT,
        "locale": org_settings.get("locale") or "pt-BR",
        "currency": org_settings.get("currency") or "BRL",
        "stale_days": dashboard.stale_days_of(frame.org),
    }


def _branding_page(
    request: Request,
    frame: Shell,
    settings: Any,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    form = form or _branding_form(frame)
    color = str(form.get("primary_color") or "")
    return render(
        request,
        "branding.html",
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


@router.get("/settings", response_class=HTMLResponse)
async def settings_index() -> Response:
    return RedirectResponse("/settings/branding", status_code=303)


@router.get("/settings/branding", response_class=HTMLResponse)
async def branding_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    frame = await shell(request, session, settings)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if frame.org is None:
        return RedirectResponse("/", status_code=303)
    return _branding_page(request, frame, settings)


@router.post("/settings/branding", response_class=HTMLResponse)
async def branding_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    name: Annotated[str, Form(max_length=255)] = "",
    primary_color: Annotated[str, Form(max_length=50)] = "",
    locale: Annotated[str, Form(max_length=10)] = "pt-BR",
    currency: Annotated[str, Form(max_length=10)] = "BRL",
    stale_days: Annotated[str, Form(max_length=10)] = "7",
) -> Response:
    if not request.cookies.get(SESSION_COOKIE):
        return RedirectResponse("/login", status_code=303)
    await get_principal(request, session, settings, None)  # 403 on a CSRF failure
    frame = await shell(request, session, settings)
    if frame is None or frame.org is None:
        return RedirectResponse("/login", status_code=303)
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
        async with session.begin_nested():
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
        errors["form"] = frame.i18n.gettext(exc.detail)
        return _branding_page(
            request, frame, settings, form=form, errors=errors, status_code=exc.status
        )
    response = RedirectResponse("/settings/branding", status_code=303)
    # The organization's language may have just changed: say it in that language.
    loc = localizer_for(frame.i18n.locale, dict(org.settings or {}))
    if not request.cookies.get(LANG_COOKIE):
        loc = localizer_for(LANGUAGE_TAGS[locale], dict(org.settings or {}))
    flash(response, loc.gettext("Settings saved."))
    return response


@router.post("/settings/branding/logo", response_class=HTMLResponse)
async def logo_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    logo: Annotated[UploadFile, File()],
) -> Response:
    if not request.cookies.get(SESSION_COOKIE):
        return RedirectResponse("/login", status_code=303)
    await get_principal(request, session, settings, None)  # 403 on a CSRF failure
    frame = await shell(request, session, settings)
    if frame is None or frame.org is None:
        return RedirectResponse("/login", status_code=303)
    data = await logo.read(settings.logo_max_bytes + 1)
    try:
        async with session.begin_nested():
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
    response = RedirectResponse("/settings/branding", status_code=303)
    flash(response, frame.i18n.gettext("Logo updated."))
    return response


@router.get("/branding/logo/{organization_id}")
async def logo_file(
    organization_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """The logo of an organization you belong to (cookie or Bearer); 404 for anyone else."""
    from lovedcrm.auth.deps import authenticate, bearer

    try:
        principal = await authenticate(request, session, settings, await bearer(request))
    except AppError as exc:
        raise NotFound("No logo for this organization.", code="logo_not_found") from exc
    logo = await branding.logo_for(session, settings, principal, organization_id)
    return FileResponse(
        logo.path,
        media_type=logo.media_type,
        headers={
            "Cache-Control": "private, max-age=300",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'",
        },
    )


@router.post("/preferences/language")
async def set_language(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    language: Annotated[str, Form(max_length=10)],
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    """The person's language, kept in a cookie (so it works on the log-in page too)."""
    if request.cookies.get(SESSION_COOKIE):
        try:
            await get_principal(request, session, settings, None)
        except Forbidden:
            raise  # a wrong CSRF token on a signed-in page
        except AppError:
            pass  # an expired session: the choice is still the person's
    if language not in LANGUAGE_TAGS:
        language = "pt-BR"
    target = next if _SAFE_NEXT.fullmatch(next) else "/"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        LANG_COOKIE,
        language,
        max_age=365 * 86400,
        httponly=False,
        secure=settings.cookie_secure,
        samesite="lax",
        path="/",
    )
    loc = localizer_for(LANGUAGE_TAGS[language])
    flash(response, loc.gettext("Language changed."))
    return response
