"""HTML pages for settings (branding: name, color, language, currency, logo; the assignment
of new leads; custom fields), the logo file itself and the person's language choice. Thin:
the rules live in ``organizations.service``, ``organizations.branding``,
``leads.assignment`` and ``leads.service`` (custom field definitions).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from lovedcrm.auth import service as auth_service
from lovedcrm.core.deps import SESSION_COOKIE, SessionDep, SettingsDep, get_principal
from lovedcrm.core.errors import AppError, Forbidden, NotFound
from lovedcrm.leads import assignment
from lovedcrm.organizations import branding, custom_fields
from lovedcrm.organizations import service as org_service
from lovedcrm.reports import home as dashboard
from lovedcrm.web.i18n import CURRENCIES, LANG_COOKIE, LANGUAGE_TAGS, localizer_for
from lovedcrm.web.render import COLOR, DEFAULT_ACCENT, Shell, flash, page_frame, render, shell

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
    frame = await page_frame(request, session, settings, need_org=True)
    if frame is None:
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
    frame = await page_frame(request, session, settings, need_org=True)
    if frame is None:
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


# --- shared by the settings forms ---------------------------------------------------------


def _saved(path: str, text: str) -> Response:
    response = RedirectResponse(path, status_code=303)
    flash(response, text)
    return response


# --- assignment of new leads ---------------------------------------------------------------


async def _assignment_page(
    request: Request,
    session: SessionDep,
    frame: Shell,
    *,
    mode: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    org_settings = dict(frame.org.settings or {}) if frame.org else {}
    rotation = await assignment.rotation_order(session, frame.principal.org())
    return render(
        request,
        "settings_assignment.html",
        status_code,
        **frame.context("settings"),
        tab="assignment",
        mode=mode or assignment.mode_of(org_settings),
        saved_mode=assignment.mode_of(org_settings),
        rotation=rotation,
        error=error,
        can_manage=frame.principal.can("settings:manage"),
    )


@router.get("/settings/assignment", response_class=HTMLResponse)
async def assignment_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    frame = await shell(request, session, settings)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if frame.org is None:
        return RedirectResponse("/", status_code=303)
    return await _assignment_page(request, session, frame)


@router.post("/settings/assignment", response_class=HTMLResponse)
async def assignment_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    mode: Annotated[str, Form(alias="assignment", max_length=20)] = "",
) -> Response:
    frame = await page_frame(request, session, settings, need_org=True)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    t = frame.i18n.gettext
    try:
        async with session.begin_nested():
            await org_service.update_organization(
                session, frame.principal, name=None, settings={"assignment": mode}
            )
    except AppError as exc:
        error = t("You do not have permission to change this setting.")
        if exc.status != 403:
            error = t("Choose one of the options in the list.")
        return await _assignment_page(
            request, session, frame, mode=mode, error=error, status_code=exc.status
        )
    return _saved("/settings/assignment", t("Settings saved."))


# --- custom fields -------------------------------------------------------------------------


@dataclass
class FieldForm:
    """A custom field form as typed (kept for redisplay after an error)."""

    label: str = ""
    key: str = ""
    kind: str = "text"
    options: str = ""
    required: bool = False

    @property
    def option_list(self) -> list[str]:
        return [o.strip() for o in self.options.splitlines() if o.strip()]


def _type_names(t: Any) -> dict[str, str]:
    return {
        "text": t("Text"),
        "number": t("Number"),
        "date": t("Date"),
        "select": t("List of options"),
        "checkbox": t("Yes or no"),
    }


def _definition_messages(t: Any) -> dict[tuple[str, str], str]:
    """The settings validation's messages (leads.service) in words for people."""
    return {
        ("key", custom_fields.DEF_BAD_KEY): t(
            "Use up to 50 letters without accents, digits or _ in the key, starting with a letter."
        ),
        ("key", custom_fields.DEF_KEY_TAKEN): t(
            "Another field already uses this key. Choose a different one."
        ),
        ("label", custom_fields.DEF_BAD_LABEL): t("Give the field a name of up to 100 characters."),
        ("type", custom_fields.DEF_BAD_TYPE): t("Choose one of the types in the list."),
        ("options", custom_fields.DEF_NO_OPTIONS): t(
            "A list of options needs at least one option (one per line, up to 100)."
        ),
        ("options", custom_fields.DEF_BAD_OPTIONS): t(
            "Write each option only once, with up to 100 characters."
        ),
        ("custom_fields", custom_fields.DEF_TOO_MANY): t(
            "An organization can have up to 50 custom fields."
        ),
    }


def _definition_errors(exc: AppError, index: int, t: Any) -> dict[str, str]:
    """The service's errors for the field at ``index`` by form input; the rest as "form"."""
    words = _definition_messages(t)
    errors: dict[str, str] = {}
    for err in exc.extra.get("errors", []) or []:
        parts = str(err.get("field", "")).split(".")
        name = parts[-1]
        message = words.get((name, str(err.get("message", ""))))
        if parts[:2] == ["custom_fields", str(index)] and len(parts) == 3 and message:
            errors.setdefault(name, message)
        else:
            errors.setdefault("form", message or t(exc.detail))
    if not errors:
        errors["form"] = t(exc.detail)
    return errors


async def _custom_fields_page(
    request: Request,
    frame: Shell,
    *,
    forms: dict[str, FieldForm] | None = None,
    errors: dict[str, dict[str, str]] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    t = frame.i18n.gettext
    return render(
        request,
        "settings_custom_fields.html",
        status_code,
        **frame.context("settings"),
        tab="custom_fields",
        definitions=custom_fields.custom_field_definitions(frame.org),
        type_names=_type_names(t),
        types=custom_fields.CUSTOM_FIELD_TYPES,
        forms=forms or {},
        errors=errors or {},
        can_manage=frame.principal.can("settings:manage"),
    )


async def _refuse_fields(request: Request, frame: Shell) -> HTMLResponse | None:
    """The read-only page with a 403 for someone without settings:manage, else None."""
    if frame.principal.can("settings:manage"):
        return None
    t = frame.i18n.gettext
    return await _custom_fields_page(
        request,
        frame,
        errors={"page": {"form": t("You do not have permission to change the custom fields.")}},
        status_code=403,
    )


@router.get("/settings/custom-fields", response_class=HTMLResponse)
async def custom_fields_page(
    request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    frame = await shell(request, session, settings)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if frame.org is None:
        return RedirectResponse("/", status_code=303)
    return await _custom_fields_page(request, frame)


@router.post("/settings/custom-fields", response_class=HTMLResponse)
async def custom_field_add(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    label: Annotated[str, Form(max_length=500)] = "",
    key: Annotated[str, Form(max_length=200)] = "",
    kind: Annotated[str, Form(alias="type", max_length=20)] = "text",
    options: Annotated[str, Form(max_length=20000)] = "",
    required: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    frame = await page_frame(request, session, settings, need_org=True)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if (refused := await _refuse_fields(request, frame)) is not None:
        return refused
    t = frame.i18n.gettext
    form = FieldForm(
        label=label.strip(),
        key=key.strip(),
        kind=kind,
        options=options,
        required=required is not None,
    )
    if not form.label:
        return await _custom_fields_page(
            request,
            frame,
            forms={"new": form},
            errors={"new": {"label": t("Give the field a name of up to 100 characters.")}},
            status_code=422,
        )
    index = len(custom_fields.custom_field_definitions(frame.org))
    try:
        async with session.begin_nested():
            added = await org_service.add_custom_field(
                session,
                frame.principal,
                label=form.label,
                key=form.key or None,
                kind=form.kind,
                options=form.option_list,
                required=form.required,
            )
    except AppError as exc:
        return await _custom_fields_page(
            request,
            frame,
            forms={"new": form},
            errors={"new": _definition_errors(exc, index, t)},
            status_code=exc.status,
        )
    return _saved(
        "/settings/custom-fields",
        t("Field %(name)s added.") % {"name": added["label"]},
    )


@router.post("/settings/custom-fields/{key}", response_class=HTMLResponse)
async def custom_field_update(
    key: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    label: Annotated[str, Form(max_length=500)] = "",
    options: Annotated[str, Form(max_length=20000)] = "",
    required: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    frame = await page_frame(request, session, settings, need_org=True)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if (refused := await _refuse_fields(request, frame)) is not None:
        return refused
    t = frame.i18n.gettext
    form = FieldForm(label=label.strip(), key=key, options=options, required=required is not None)
    definitions = custom_fields.custom_field_definitions(frame.org)
    index = next((i for i, d in enumerate(definitions) if d["key"] == key), -1)
    if not form.label:
        return await _custom_fields_page(
            request,
            frame,
            forms={key: form},
            errors={key: {"label": t("Give the field a name of up to 100 characters.")}},
            status_code=422,
        )
    try:
        async with session.begin_nested():
            await org_service.update_custom_field(
                session,
                frame.principal,
                key,
                label=form.label,
                options=form.option_list,
                required=form.required,
            )
    except AppError as exc:
        errors = _definition_errors(exc, index, t)
        if exc.status == 404:
            errors = {"form": t("This field no longer exists. Reload the page.")}
        return await _custom_fields_page(
            request, frame, forms={key: form}, errors={key: errors}, status_code=exc.status
        )
    return _saved("/settings/custom-fields", t("Field saved."))


@router.post("/settings/custom-fields/{key}/move", response_class=HTMLResponse)
async def custom_field_move(
    key: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    direction: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Up or down one place (the order of the lead page and forms)."""
    frame = await page_frame(request, session, settings, need_org=True)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if (refused := await _refuse_fields(request, frame)) is not None:
        return refused
    t = frame.i18n.gettext
    try:
        async with session.begin_nested():
            await org_service.move_custom_field(
                session, frame.principal, key, "up" if direction == "up" else "down"
            )
    except AppError as exc:
        return await _custom_fields_page(
            request,
            frame,
            errors={key: _definition_errors(exc, -1, t)},
            status_code=exc.status,
        )
    return _saved("/settings/custom-fields", t("Order saved."))


@router.post("/settings/custom-fields/{key}/delete", response_class=HTMLResponse)
async def custom_field_delete(
    key: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    frame = await page_frame(request, session, settings, need_org=True)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if (refused := await _refuse_fields(request, frame)) is not None:
        return refused
    t = frame.i18n.gettext
    try:
        async with session.begin_nested():
            await org_service.remove_custom_field(session, frame.principal, key)
    except AppError as exc:
        return await _custom_fields_page(
            request,
            frame,
            errors={key: _definition_errors(exc, -1, t)},
            status_code=exc.status,
        )
    return _saved(
        "/settings/custom-fields",
        t("Field removed. The values already saved in leads are kept."),
    )


@router.get("/branding/logo/{organization_id}")
async def logo_file(
    organization_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """The logo of an organization you belong to (cookie or Bearer); 404 for anyone else."""
    from lovedcrm.core.deps import authenticate, bearer

    try:
        principal = await authenticate(request, session, settings, await bearer(request))
    except AppError as exc:
        raise NotFound("No logo for this organization.", code="logo_not_found") from exc
    if principal.organization_id != organization_id and (
        principal.via == "api_key"
        or organization_id
        not in {o.id for _, o in await auth_service.memberships_of(session, principal.user_id)}
    ):
        raise NotFound("No logo for this organization.", code="logo_not_found")
    logo = await branding.logo_for(session, settings, organization_id)
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
