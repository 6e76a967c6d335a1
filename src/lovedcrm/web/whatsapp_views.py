"""HTML pages for Settings → WhatsApp: the organization's provider configurations (add, edit,
remove, test the connection, connect WhatsApp Web by QR code), switching the active provider
and undoing a switch. Admins only (``settings:manage``).

Thin: the rules live in ``messaging.whatsapp_configs`` (which fields a provider needs,
secrets, the provider calls) and ``messaging.switching``; the request models of the JSON API
(``whatsapp_schemas``) check the form's formats. Secrets are only ever shown masked, as
``config_out`` gives them; a secret typed into a form that failed is not echoed back.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from lovedcrm.config import Settings
from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError
from lovedcrm.messaging import switching
from lovedcrm.messaging import whatsapp_configs as configs
from lovedcrm.messaging.models import ProviderMigration
from lovedcrm.messaging.providers.base import ConnectionCheck, QrCode
from lovedcrm.messaging.whatsapp_schemas import ConfigIn, ConfigUpdateIn
from lovedcrm.web.i18n import N_
from lovedcrm.web.render import Shell, flash, page_frame, render, templates

router = APIRouter(include_in_schema=False)
Gettext = Callable[[str], str]

PAGE = "/settings/whatsapp"
PERMISSION = "settings:manage"
KINDS = ("business_api", "web_unofficial", "sandbox")
# While the bridge waits for a scan (or is starting), the QR panel asks again.
POLLING = ("qr", "starting")
QR_SECONDS = 3
_QR_MIME = re.compile(r"image/(png|jpeg|webp|gif)")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")

# The services' messages the page shows as they come (kept in the catalogs by extraction).
SERVICE_MESSAGES = (
    N_("WhatsApp configuration not found."),
    N_("This provider is already the active one."),
    N_("This is the active WhatsApp provider: switch to another one before removing it."),
    N_("Only a completed switch can be rolled back."),
    N_("There was no provider before this switch: nothing to roll back to."),
    N_("Provider migration not found."),
    N_("Only WhatsApp Web configurations have a session to start."),
)


@dataclass(frozen=True)
class FieldSpec:
    """One input of a provider's form."""

    name: str
    label: str
    hint: str = ""
    secret: bool = False
    kind: str = "text"
    placeholder: str = ""
    maxlength: int = 500


def _field_specs(t: Gettext) -> dict[str, list[FieldSpec]]:
    """The inputs of each provider's form (which of them are required is the service's)."""
    label = FieldSpec(
        "label",
        t("Name"),
        t("For you to tell configurations apart."),
        placeholder=t("e.g. Sales team"),
        maxlength=100,
    )
    per_second = FieldSpec(
        "messages_per_second",
        t("Messages per second"),
        t("Sending limits protect the number. Leave both empty to keep the current ones."),
        kind="number",
    )
    per_minute = FieldSpec("messages_per_minute", t("Messages per minute"), kind="number")
    return {
        "business_api": [
            label,
            FieldSpec(
                "business_phone_id",
                t("Phone number ID"),
                t("In Meta's WhatsApp Manager: API Setup → Phone number ID."),
                maxlength=100,
            ),
            FieldSpec(
                "business_account_id",
                t("WhatsApp Business account ID (optional)"),
                maxlength=100,
            ),
            FieldSpec(
                "access_token",
                t("Access token"),
                t("A permanent system user token with the whatsapp_business_messaging permission."),
                secret=True,
                maxlength=4096,
            ),
            FieldSpec(
                "app_secret",
                t("App secret"),
                t("In the Meta app: Settings → Basic. Used to check that webhooks come from Meta."),
                secret=True,
                maxlength=512,
            ),
            FieldSpec(
                "api_version", t("API version (optional)"), placeholder="v21.0", maxlength=10
            ),
            FieldSpec(
                "graph_base_url",
                t("Graph API address (optional)"),
                t("Only for a provider that mirrors Meta's API."),
                kind="url",
                placeholder="https://graph.facebook.com",
            ),
            per_second,
            per_minute,
        ],
        "web_unofficial": [
            label,
            FieldSpec(
                "session_id",
                t("Session name"),
                t("Letters, digits, - and _. The bridge keeps one WhatsApp login per session."),
                placeholder="default",
                maxlength=100,
            ),
            FieldSpec(
                "bridge_url",
                t("WAHA server address"),
                kind="url",
                placeholder="http://waha:3000",
            ),
            FieldSpec(
                "bridge_api_key",
                t("WAHA API key (optional)"),
                t("The X-Api-Key your WAHA server asks for, if any."),
                secret=True,
                maxlength=512,
            ),
            per_second,
            per_minute,
        ],
        "sandbox": [label],
    }


def _kind_names(t: Gettext) -> dict[str, str]:
    return {
        "business_api": t("WhatsApp Cloud API (official)"),
        "web_unofficial": t("WhatsApp Web via WAHA (unofficial)"),
        "sandbox": t("Sandbox (tests, nothing is sent)"),
    }


def _kind_help(t: Gettext) -> dict[str, str]:
    return {
        "business_api": t(
            "Meta's official API: needs a Meta business app and a verified number. "
            "Outside the 24-hour window only approved templates can be sent."
        ),
        "web_unofficial": t(
            "Connects a WhatsApp number by QR code through your own WAHA server. "
            "Unofficial: send calmly, bursts can get the number banned."
        ),
        "sandbox": t("Messages stay inside Loved CRM: good to try the inbox before connecting."),
    }


def _status_names(t: Gettext) -> dict[str, str]:
    return {
        "connected": t("Connected"),
        "disconnected": t("Disconnected"),
        "qr": t("Waiting for the QR code scan"),
        "starting": t("Starting"),
        "failed": t("Connection failed"),
    }


def _migration_status_names(t: Gettext) -> dict[str, str]:
    return {
        "pending": t("Pending"),
        "in_progress": t("In progress"),
        "completed": t("Completed"),
        "failed": t("Switch failed"),
    }


def _note(t: Gettext, note: str) -> str:
    """A switch step's note (the service writes them in English) in the page's language."""
    fixed = {
        "switch requested": t("Switch requested"),
        "checking the new provider": t("Checking the new provider"),
        "active provider switched; queued messages leave through it": t(
            "Active provider switched; queued messages leave through it"
        ),
    }
    if note in fixed:
        return fixed[note]
    failed = re.fullmatch(r"the new provider did not answer: (.*); nothing was changed", note)
    if failed:
        return t("The new provider did not answer (%(detail)s). Nothing was changed.") % {
            "detail": failed.group(1)
        }
    return note


# --- view models ----------------------------------------------------------------------------


@dataclass
class Step:
    status: str
    at: datetime | None
    note: str


@dataclass
class MigrationView:
    migration: ProviderMigration
    from_name: str
    to_name: str
    steps: list[Step]
    is_rollback: bool
    can_undo: bool

    @property
    def reason(self) -> str:
        """Why a failed switch failed: its last step's note."""
        return self.steps[-1].note if self.steps else ""


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _migration_view(t: Gettext, migration: ProviderMigration) -> MigrationView:
    data = dict(migration.migration_data or {})

    def name(kind: str) -> str:
        return t("None") if kind == "none" else configs.provider_name(kind)

    steps = [
        Step(str(s.get("status") or ""), _when(s.get("at")), _note(t, str(s.get("note") or "")))
        for s in data.get("steps") or []
        if isinstance(s, dict)
    ]
    return MigrationView(
        migration=migration,
        from_name=name(migration.from_provider),
        to_name=name(migration.to_provider),
        steps=steps,
        is_rollback=bool(data.get("rollback_of")),
        can_undo=migration.status == "completed" and migration.from_provider != "none",
    )


@dataclass
class QrPanel:
    config_id: uuid.UUID
    check: ConnectionCheck
    mimetype: str | None = None
    data: str | None = None

    @property
    def polling(self) -> bool:
        return self.check.status in POLLING


def _qr_panel(config_id: uuid.UUID, check: ConnectionCheck, qr: QrCode | None) -> QrPanel:
    panel = QrPanel(config_id=config_id, check=check)
    # Only an image, only base64: what the bridge sends goes into a data: URL.
    if qr is not None and _BASE64.fullmatch(qr.data_base64):
        panel.mimetype = qr.mimetype if _QR_MIME.fullmatch(qr.mimetype) else "image/png"
        panel.data = re.sub(r"\s", "", qr.data_base64)
    return panel


@dataclass
class PageState:
    """What a page shows besides the stored data: forms as typed, errors, action results."""

    forms: dict[str, dict[str, str]]
    errors: dict[str, dict[str, str]]
    retype: dict[str, list[str]]
    checks: dict[uuid.UUID, ConnectionCheck]
    qr: dict[uuid.UUID, QrPanel]
    switch: MigrationView | None = None
    page_error: str | None = None

    @classmethod
    def empty(cls) -> PageState:
        return cls(forms={}, errors={}, retype={}, checks={}, qr={})


# --- rendering ------------------------------------------------------------------------------


async def _page(
    request: Request,
    session: SessionDep,
    settings: Settings,
    frame: Shell,
    state: PageState | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    t = frame.i18n.gettext
    state = state or PageState.empty()
    if not frame.principal.can(PERMISSION):
        return render(
            request,
            "settings_whatsapp.html",
            403,
            **frame.context("settings"),
            tab="whatsapp",
            denied=True,
            permission=PERMISSION,
        )
    rows = await configs.list_configs(session, frame.principal)
    migrations = await switching.list_migrations(session, frame.principal)
    specs = _field_specs(t)
    return render(
        request,
        "settings_whatsapp.html",
        status_code,
        **frame.context("settings"),
        tab="whatsapp",
        denied=False,
        configs=[configs.config_out(settings, row) for row in rows],
        migrations=[_migration_view(t, m) for m in migrations],
        specs=specs,
        kinds=KINDS,
        kind_names=_kind_names(t),
        kind_help=_kind_help(t),
        status_names=_status_names(t),
        migration_status_names=_migration_status_names(t),
        provider_name=configs.provider_name,
        state=state,
        polling=POLLING,
        qr_seconds=QR_SECONDS,
    )


def _qr_fragment(request: Request, frame: Shell, panel: QrPanel) -> HTMLResponse:
    """The QR panel alone, for HTMX polling (no flash message consumed)."""
    t = frame.i18n.gettext
    response: HTMLResponse = templates.TemplateResponse(
        request,
        "settings_whatsapp_qr.html",
        {
            "i18n": frame.i18n,
            "lang": frame.i18n.tag,
            "panel": panel,
            "status_names": _status_names(t),
            "qr_seconds": QR_SECONDS,
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def _admin_frame(
    request: Request, session: SessionDep, settings: Settings
) -> Shell | Response:
    """The frame of an admin on this page; otherwise the answer to give (the log-in page, or
    the page with its refusal for someone without settings:manage)."""
    frame = await page_frame(request, session, settings, need_org=True)
    if frame is None:
        return _login()
    if not frame.principal.can(PERMISSION):
        return await _page(request, session, settings, frame)
    return frame


async def _refused(
    request: Request, session: SessionDep, settings: Settings, frame: Shell, exc: AppError
) -> Response:
    """The page with the service's refusal, in the reader's language."""
    state = PageState.empty()
    state.page_error = frame.i18n.gettext(exc.detail)
    return await _page(request, session, settings, frame, state, exc.status)


def _login() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


def _back(text: str) -> Response:
    response = RedirectResponse(PAGE, status_code=303)
    flash(response, text)
    return response


# --- forms ----------------------------------------------------------------------------------

TEXT_FIELDS = (
    "label",
    "business_phone_id",
    "business_account_id",
    "access_token",
    "app_secret",
    "api_version",
    "graph_base_url",
    "session_id",
    "bridge_url",
    "bridge_api_key",
)
RATE_FIELDS = ("messages_per_second", "messages_per_minute")
SECRETS = ("access_token", "app_secret", "bridge_api_key")


async def _typed(request: Request) -> dict[str, str]:
    form = await request.form()
    return {
        name: str(form.get(name) or "").strip()
        for name in ("provider_type", *TEXT_FIELDS, *RATE_FIELDS)
    }


def _values(typed: dict[str, str], kind: str, specs: list[FieldSpec]) -> dict[str, Any]:
    """The service's values from the form of one provider: only that provider's inputs, an
    empty input as "not given" (an empty secret keeps the stored one)."""
    names = {s.name for s in specs}
    values: dict[str, Any] = {n: typed.get(n) or None for n in TEXT_FIELDS if n in names}
    rates = {n: typed[n] for n in RATE_FIELDS if n in names and typed.get(n)}
    if rates:
        values["rate_limits"] = rates
    return values


def _redisplay(typed: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The form as typed, without its secrets, and the secrets to type again."""
    shown = {k: v for k, v in typed.items() if k not in SECRETS}
    return shown, [k for k in SECRETS if typed.get(k)]


def _schema_errors(exc: ValidationError, t: Gettext) -> dict[str, str]:
    """The request model's complaints by form input, in words for people."""
    patterns = {
        "session_id": t("Use only letters without accents, digits, - and _."),
        "api_version": t("Use a version like v21.0."),
    }
    errors: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        name = loc[-1] if loc else "form"
        kind = err.get("type", "")
        ctx = err.get("ctx") or {}
        if name == "provider_type":
            message = t("Choose one of the providers in the list.")
        elif kind == "string_too_long":
            message = t("Too long: use at most %(max)s characters.") % {
                "max": ctx.get("max_length")
            }
        elif kind == "string_pattern_mismatch":
            message = patterns.get(name, t("Check this value."))
        elif name in RATE_FIELDS:
            limit = 1000 if name == "messages_per_second" else 60000
            message = t("Use a whole number from 1 to %(max)s.") % {"max": limit}
        else:
            message = t("Check this value.")
        errors.setdefault(name, message)
    return errors


def _service_errors(exc: AppError, t: Gettext, specs: list[FieldSpec]) -> dict[str, str]:
    """The service's errors by form input (it names every missing field), plus a summary."""
    labels = {s.name: s.label for s in specs}
    errors: dict[str, str] = {}
    for err in exc.extra.get("errors", []) or []:
        name = str(err.get("field", ""))
        message = str(err.get("message", ""))
        if message.startswith("required"):
            text = t("Required for this provider.")
        elif "http" in message:
            text = t("Use an address starting with http:// or https://.")
        else:
            text = message
        if name in labels:
            errors.setdefault(name, text)
        else:
            errors.setdefault("form", f"{name}: {text}")
    missing = [labels[n] for n in errors if n in labels]
    if missing:
        errors.setdefault("form", t("Fill in or fix: %(fields)s.") % {"fields": ", ".join(missing)})
    if not errors:
        errors["form"] = t(exc.detail)
    return errors


# --- the page -------------------------------------------------------------------------------


@router.get(PAGE, response_class=HTMLResponse)
async def whatsapp_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    frame = await page_frame(request, session, settings, need_org=True)
    if frame is None:
        return _login()
    return await _page(request, session, settings, frame)


@router.post(PAGE, response_class=HTMLResponse)
async def config_create(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    frame = await _admin_frame(request, session, settings)
    if not isinstance(frame, Shell):
        return frame
    t = frame.i18n.gettext
    typed = await _typed(request)
    kind = typed["provider_type"] if typed["provider_type"] in KINDS else "sandbox"
    specs = _field_specs(t)[kind]
    key = f"new:{kind}"
    state = PageState.empty()
    state.forms[key], state.retype[key] = _redisplay(typed)
    try:
        body = ConfigIn.model_validate(
            {"provider_type": typed["provider_type"], **_values(typed, kind, specs)}
        )
    except ValidationError as exc:
        state.errors[key] = _schema_errors(exc, t)
        return await _page(request, session, settings, frame, state, 422)
    try:
        async with session.begin_nested():
            row = await configs.create_config(session, frame.principal, settings, body.model_dump())
    except AppError as exc:
        state.errors[key] = _service_errors(exc, t, specs)
        return await _page(request, session, settings, frame, state, exc.status)
    name = configs.provider_name(row.provider_type)
    return _back(
        t("%(provider)s added. Test the connection, then activate it.") % {"provider": name}
    )


@router.post(PAGE + "/{config_id}", response_class=HTMLResponse)
async def config_update(
    config_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    frame = await _admin_frame(request, session, settings)
    if not isinstance(frame, Shell):
        return frame
    t = frame.i18n.gettext
    key = str(config_id)
    typed = await _typed(request)
    state = PageState.empty()
    try:
        row = await configs.get_config(session, frame.principal, config_id)
    except AppError as exc:
        return await _refused(request, session, settings, frame, exc)
    specs = _field_specs(t)[row.provider_type]
    state.forms[key], state.retype[key] = _redisplay(typed)
    try:
        body = ConfigUpdateIn.model_validate(_values(typed, row.provider_type, specs))
    except ValidationError as exc:
        state.errors[key] = _schema_errors(exc, t)
        return await _page(request, session, settings, frame, state, 422)
    try:
        async with session.begin_nested():
            await configs.update_config(
                session, frame.principal, settings, config_id, body.model_dump(exclude_unset=True)
            )
    except AppError as exc:
        state.errors[key] = _service_errors(exc, t, specs)
        return await _page(request, session, settings, frame, state, exc.status)
    return _back(t("Configuration saved."))


@router.post(PAGE + "/{config_id}/delete", response_class=HTMLResponse)
async def config_delete(
    config_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    frame = await _admin_frame(request, session, settings)
    if not isinstance(frame, Shell):
        return frame
    t = frame.i18n.gettext
    try:
        async with session.begin_nested():
            await configs.delete_config(session, frame.principal, config_id)
    except AppError as exc:
        return await _refused(request, session, settings, frame, exc)
    return _back(t("Configuration removed."))


@router.post(PAGE + "/{config_id}/check", response_class=HTMLResponse)
async def config_check(
    config_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """Ask the provider whether the credentials work; the answer shows on the configuration."""
    frame = await _admin_frame(request, session, settings)
    if not isinstance(frame, Shell):
        return frame
    state = PageState.empty()
    try:
        async with session.begin_nested():
            check = await configs.check_connection(session, frame.principal, settings, config_id)
    except AppError as exc:
        return await _refused(request, session, settings, frame, exc)
    state.checks[config_id] = check
    return await _page(request, session, settings, frame, state)


@router.post(PAGE + "/{config_id}/connect", response_class=HTMLResponse)
async def config_connect(
    config_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """WhatsApp Web: start the bridge's session, then show its QR code to scan."""
    frame = await _admin_frame(request, session, settings)
    if not isinstance(frame, Shell):
        return frame
    state = PageState.empty()
    try:
        async with session.begin_nested():
            check = await configs.start_session(session, frame.principal, settings, config_id)
            qr: QrCode | None = None
            if check.status == "qr":
                check, qr = await configs.qr_code(session, frame.principal, settings, config_id)
    except AppError as exc:
        return await _refused(request, session, settings, frame, exc)
    state.checks[config_id] = check
    state.qr[config_id] = _qr_panel(config_id, check, qr)
    return await _page(request, session, settings, frame, state)


@router.get(PAGE + "/{config_id}/qr", response_class=HTMLResponse)
async def config_qr(
    config_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """WhatsApp Web: the session's status and QR code; HTMX polls this panel while it waits
    for a scan. Without JavaScript, the whole page with the panel."""
    frame = await _admin_frame(request, session, settings)
    if not isinstance(frame, Shell):
        return frame
    state = PageState.empty()
    try:
        check, qr = await configs.qr_code(session, frame.principal, settings, config_id)
    except AppError as exc:
        return await _refused(request, session, settings, frame, exc)
    panel = _qr_panel(config_id, check, qr)
    if request.headers.get("hx-request") == "true":
        return _qr_fragment(request, frame, panel)
    state.qr[config_id] = panel
    return await _page(request, session, settings, frame, state)


# --- switching --------------------------------------------------------------------------------


async def _switched(
    request: Request,
    session: SessionDep,
    settings: Settings,
    frame: Shell,
    migration: ProviderMigration,
) -> Response:
    t = frame.i18n.gettext
    view = _migration_view(t, migration)
    if migration.status == "completed":
        return _back(t("%(provider)s is now the active provider.") % {"provider": view.to_name})
    state = PageState.empty()
    state.switch = view
    return await _page(request, session, settings, frame, state)


@router.post(PAGE + "/{config_id}/activate", response_class=HTMLResponse)
async def config_activate(
    config_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """Make this configuration the active provider: completed, or failed with nothing
    changed (the page says why)."""
    frame = await _admin_frame(request, session, settings)
    if not isinstance(frame, Shell):
        return frame
    try:
        async with session.begin_nested():
            migration = await switching.activate(session, frame.principal, settings, config_id)
    except AppError as exc:
        return await _refused(request, session, settings, frame, exc)
    return await _switched(request, session, settings, frame, migration)


@router.post(PAGE + "/migrations/{migration_id}/rollback", response_class=HTMLResponse)
async def migration_rollback(
    migration_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """Undo a completed switch: the previous provider becomes active again."""
    frame = await _admin_frame(request, session, settings)
    if not isinstance(frame, Shell):
        return frame
    try:
        async with session.begin_nested():
            migration = await switching.rollback(session, frame.principal, settings, migration_id)
    except AppError as exc:
        return await _refused(request, session, settings, frame, exc)
    return await _switched(request, session, settings, frame, migration)
