"""Settings → AI: the organization's LLM provider (admins), its write-only key and a
"test connection" button."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response

from lovedcrm.assistant import ai_settings as service
from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import ValidationFailed
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import Shell, page_router, redirect, render, require

router = page_router()
Admin = Annotated[Shell, Depends(require("settings:manage"))]
FIELDS = (
    "provider",
    "base_url",
    "model",
    "api_version",
    "timeout_seconds",
    "monthly_token_budget",
    "transcription_model",
)

# The page's words for each field's problem (the service's messages are for the API).
_MESSAGES = {
    "provider": N_("Choose a provider."),
    "base_url": N_("Enter the server's address: an http:// or https:// URL."),
    "url_private": N_(
        "This address is private or local: the installation must allow it "
        "(LOVEDCRM_OUTBOUND_ALLOW) before the CRM calls it."
    ),
    "url_forbidden": N_("This address is never allowed (link-local or cloud metadata)."),
    "model": N_("Enter the model (or, on Azure, the deployment) name."),
    "api_version": N_("Use an Azure API version such as 2024-06-01, or leave it empty."),
    "api_key": N_("Paste the key exactly as the provider issued it (no spaces)."),
    "timeout_seconds": N_("From 1 to 120 seconds."),
    "max_retries": N_("From 0 to 5."),
    "monthly_token_budget": N_("A whole number of tokens, 0 or more, or empty for no limit."),
    "transcription_model": N_(
        "Enter the speech-to-text model (or, on Azure, the deployment) name."
    ),
}


def _form_of(view: service.AiSettingsView) -> dict[str, Any]:
    return {
        "provider": view.provider,
        "base_url": view.base_url or "",
        "model": view.model or "",
        "api_version": view.api_version or "",
        "timeout_seconds": f"{view.timeout_seconds:g}",
        "monthly_token_budget": (
            "" if view.monthly_token_budget is None else str(view.monthly_token_budget)
        ),
        "transcription_enabled": view.transcription_enabled,
        "transcription_model": view.transcription_model,
    }


async def _page(
    request: Request,
    frame: Shell,
    view: service.AiSettingsView,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "assistant/ai_settings.html",
        status_code,
        **frame.context("settings"),
        tab="ai",
        view=view,
        form=form or _form_of(view),
        errors=errors or {},
        can_manage=True,
    )


@router.get("/settings/ai", response_class=HTMLResponse)
async def ai_settings_page(
    request: Request, frame: Admin, session: SessionDep, settings: SettingsDep
) -> Response:
    view = await service.get_ai_settings(session, frame.principal, settings)
    return await _page(request, frame, view)


@router.post("/settings/ai", response_class=HTMLResponse)
async def ai_settings_save(
    request: Request, frame: Admin, session: SessionDep, settings: SettingsDep
) -> Response:
    t = frame.i18n.gettext
    raw = await request.form()
    form: dict[str, Any] = {name: str(raw.get(name) or "").strip() for name in FIELDS}
    values: dict[str, Any] = dict(form)
    form["transcription_enabled"] = raw.get("transcription_enabled") == "1"
    values["api_key"] = str(raw.get("api_key") or "").strip()
    values["clear_api_key"] = raw.get("clear_api_key") == "1"
    values["transcription_enabled"] = raw.get("transcription_enabled") == "1"
    if not values["monthly_token_budget"]:
        values["monthly_token_budget"] = None
    try:
        await service.update_ai_settings(session, frame.principal, settings, values)
    except ValidationFailed as exc:
        errors: dict[str, str] = {}
        for e in (exc.extra or {}).get("errors", []):
            code = e.get("code")
            key = code if code in ("url_private", "url_forbidden") else e["field"]
            errors[e["field"]] = t(_MESSAGES.get(str(key), _MESSAGES["provider"]))
        view = await service.get_ai_settings(session, frame.principal, settings)
        return await _page(request, frame, view, form=form, errors=errors, status_code=422)
    return redirect("/settings/ai", t("AI settings saved."))


@router.post("/settings/ai/test", response_class=HTMLResponse)
async def ai_settings_test(
    request: Request, frame: Admin, session: SessionDep, settings: SettingsDep
) -> Response:
    t = frame.i18n.gettext
    check = await service.check_connection(session, frame.principal, settings)
    if check.ok:
        return redirect(
            "/settings/ai", t("Connection works: %(model)s answered.") % {"model": check.model}
        )
    return redirect(
        "/settings/ai",
        t("The connection failed: %(detail)s") % {"detail": t(check.detail)},
        "error",
    )
