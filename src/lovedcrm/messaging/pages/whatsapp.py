"""HTML pages for Settings → WhatsApp: the organization's provider configurations (add, edit,
remove, test the connection, connect WhatsApp Web by QR code), switching the active provider
and undoing a switch. Admins only (``settings:manage``): the page shows others why; its
actions are refused with the 403 page.

Thin: the rules live in ``messaging.whatsapp_configs`` (which fields a provider needs,
secrets, the provider calls) and ``messaging.switching``; the request models of the JSON API
(``whatsapp_schemas``) check the form's formats, ``pages.whatsapp_forms`` reads the forms.
Secrets are only ever shown masked, as ``config_out`` gives them; a secret typed into a form
that failed is not echoed back. Every action is one service call through
:meth:`WhatsappPage.act`: a refusal shows the page with the service's words and its status.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.config import Settings
from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError, NotFound
from lovedcrm.core.principal import Principal
from lovedcrm.messaging import switching
from lovedcrm.messaging import whatsapp_configs as configs
from lovedcrm.messaging.models import ProviderMigration, WhatsappConfig
from lovedcrm.messaging.pages.forms import Gettext
from lovedcrm.messaging.pages.fragments import fragment
from lovedcrm.messaging.pages.whatsapp_forms import (
    KINDS,
    field_specs,
    kind_help,
    kind_names,
    redisplay,
    schema_errors,
    service_errors,
    service_values,
    typed_form,
)
from lovedcrm.messaging.providers.base import ConnectionCheck, QrCode
from lovedcrm.messaging.whatsapp_schemas import ConfigIn, ConfigUpdateIn
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import (
    Member,
    PageError,
    Shell,
    attempt,
    is_htmx,
    page_router,
    parse_uuid,
    redirect,
    render,
    require,
)

router = page_router()
T = TypeVar("T")

PAGE = "/settings/whatsapp"
PERMISSION = "settings:manage"
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


def migration_view(t: Gettext, migration: ProviderMigration) -> MigrationView:
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


def qr_panel(config_id: uuid.UUID, check: ConnectionCheck, qr: QrCode | None) -> QrPanel:
    panel = QrPanel(config_id=config_id, check=check)
    # Only an image, only base64: what the bridge sends goes into a data: URL.
    if qr is not None and _BASE64.fullmatch(qr.data_base64):
        panel.mimetype = qr.mimetype if _QR_MIME.fullmatch(qr.mimetype) else "image/png"
        panel.data = re.sub(r"\s", "", qr.data_base64)
    return panel


@dataclass
class PageState:
    """What a page shows besides the stored data: forms as typed, errors, action results."""

    forms: dict[str, dict[str, str]] = field(default_factory=dict)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    retype: dict[str, list[str]] = field(default_factory=dict)
    checks: dict[uuid.UUID, ConnectionCheck] = field(default_factory=dict)
    qr: dict[uuid.UUID, QrPanel] = field(default_factory=dict)
    switch: MigrationView | None = None
    page_error: str | None = None


# --- the page and its answers -------------------------------------------------------------------


@dataclass
class WhatsappPage:
    """One request to the page: what showing it and answering an action need."""

    request: Request
    session: AsyncSession
    settings: Settings
    frame: Shell

    @property
    def principal(self) -> Principal:
        return self.frame.principal

    def t(self, message: str) -> str:
        return self.frame.i18n.gettext(message)

    async def show(self, state: PageState | None = None, status_code: int = 200) -> HTMLResponse:
        """The page (for someone without settings:manage, why they cannot use it)."""
        if not self.principal.can(PERMISSION):
            return render(
                self.request,
                "messaging/settings_whatsapp.html",
                403,
                **self.frame.context("settings"),
                tab="whatsapp",
                denied=True,
                permission=PERMISSION,
            )
        rows = await configs.list_configs(self.session, self.principal)
        migrations = await switching.list_migrations(self.session, self.principal)
        t = self.t
        return render(
            self.request,
            "messaging/settings_whatsapp.html",
            status_code,
            **self.frame.context("settings"),
            tab="whatsapp",
            denied=False,
            configs=[configs.config_out(self.settings, row) for row in rows],
            migrations=[migration_view(t, m) for m in migrations],
            specs=field_specs(t),
            kinds=KINDS,
            kind_names=kind_names(t),
            kind_help=kind_help(t),
            status_names=_status_names(t),
            migration_status_names=_migration_status_names(t),
            provider_name=configs.provider_name,
            state=state or PageState(),
            polling=POLLING,
            qr_seconds=QR_SECONDS,
        )

    def back(self, text: str) -> Response:
        """Done: back to the page, with ``text`` as a toast."""
        return redirect(PAGE, text)

    async def act(
        self, call: Awaitable[T], then: Callable[[T], Response | Awaitable[Response]]
    ) -> Response:
        """Run one service call; its answer goes to ``then``. A refusal shows the page with
        the service's words (in the reader's language) and the refusal's status."""
        try:
            result = await attempt(self.session, call)
        except AppError as exc:
            return await self.show(PageState(page_error=self.t(exc.detail)), exc.status)
        answer = then(result)
        return answer if isinstance(answer, Response) else await answer

    async def submit(
        self,
        typed: dict[str, str],
        key: str,
        kind: str,
        parse: Callable[[dict[str, Any]], dict[str, Any]],
        save: Callable[[dict[str, Any]], Awaitable[T]],
        done: Callable[[T], str],
    ) -> Response:
        """A provider's form (``key`` names it on the page): ``parse`` checks the values with
        the request model, ``save`` hands them to the service. Errors show next to the inputs,
        with what was typed except the secrets."""
        specs = field_specs(self.t)[kind]
        state = PageState()
        state.forms[key], state.retype[key] = redisplay(typed)
        try:
            values = parse(service_values(typed, kind, specs))
        except ValidationError as exc:
            state.errors[key] = schema_errors(exc, self.t)
            return await self.show(state, 422)
        try:
            result = await attempt(self.session, save(values))
        except AppError as exc:
            state.errors[key] = service_errors(exc, self.t, specs)
            return await self.show(state, exc.status)
        return self.back(done(result))

    def switched(self, migration: ProviderMigration) -> Response | Awaitable[Response]:
        """After a switch: done, or the page saying why it failed (nothing was changed)."""
        view = migration_view(self.t, migration)
        if migration.status == "completed":
            text = self.t("%(provider)s is now the active provider.")
            return self.back(text % {"provider": view.to_name})
        return self.show(PageState(switch=view))


Admin = Annotated[Shell, Depends(require(PERMISSION))]


async def admin_page(
    request: Request, session: SessionDep, settings: SettingsDep, frame: Admin
) -> WhatsappPage:
    """The page of an admin (anyone else gets the 403 page)."""
    return WhatsappPage(request, session, settings, frame)


async def config_in_page(config_id: str, frame: Admin, session: SessionDep) -> WhatsappConfig:
    """The configuration in the URL, or the 404 page."""
    parsed = parse_uuid(config_id)
    if parsed is not None:
        with suppress(NotFound):
            return await configs.get_config(session, frame.principal, parsed)
    # The page's own heading, as when the page said it in an alert.
    raise PageError(
        404, "Settings", "WhatsApp configuration not found.", back_url=PAGE, back_label="WhatsApp"
    )


AdminPage = Annotated[WhatsappPage, Depends(admin_page)]
ConfigInPage = Annotated[WhatsappConfig, Depends(config_in_page)]


# --- the page and its configurations -----------------------------------------------------------


@router.get(PAGE, response_class=HTMLResponse)
async def whatsapp_page(
    request: Request, session: SessionDep, settings: SettingsDep, frame: Member
) -> Response:
    return await WhatsappPage(request, session, settings, frame).show()


@router.post(PAGE, response_class=HTMLResponse)
async def config_create(page: AdminPage) -> Response:
    typed = await typed_form(page.request)
    chosen = typed["provider_type"]
    kind = chosen if chosen in KINDS else "sandbox"

    def added(row: WhatsappConfig) -> str:
        name = configs.provider_name(row.provider_type)
        return page.t("%(provider)s added. Test the connection, then activate it.") % {
            "provider": name
        }

    return await page.submit(
        typed,
        f"new:{kind}",
        kind,
        parse=lambda values: ConfigIn.model_validate(
            {"provider_type": chosen, **values}
        ).model_dump(),
        save=lambda data: configs.create_config(page.session, page.principal, page.settings, data),
        done=added,
    )


@router.post(PAGE + "/{config_id}", response_class=HTMLResponse)
async def config_update(page: AdminPage, config: ConfigInPage) -> Response:
    return await page.submit(
        await typed_form(page.request),
        str(config.id),
        config.provider_type,
        parse=lambda values: ConfigUpdateIn.model_validate(values).model_dump(exclude_unset=True),
        save=lambda data: configs.update_config(
            page.session, page.principal, page.settings, config.id, data
        ),
        done=lambda _: page.t("Configuration saved."),
    )


@router.post(PAGE + "/{config_id}/delete", response_class=HTMLResponse)
async def config_delete(page: AdminPage, config: ConfigInPage) -> Response:
    call = configs.delete_config(page.session, page.principal, config.id)
    return await page.act(call, lambda _: page.back(page.t("Configuration removed.")))


@router.post(PAGE + "/{config_id}/check", response_class=HTMLResponse)
async def config_check(page: AdminPage, config: ConfigInPage) -> Response:
    """Ask the provider whether the credentials work; the answer shows on the configuration."""
    call = configs.check_connection(page.session, page.principal, page.settings, config.id)
    return await page.act(call, lambda check: page.show(PageState(checks={config.id: check})))


async def _start(page: WhatsappPage, config_id: uuid.UUID) -> tuple[ConnectionCheck, QrCode | None]:
    """Start the bridge's session; its QR code when it waits for a scan."""
    check = await configs.start_session(page.session, page.principal, page.settings, config_id)
    if check.status == "qr":
        return await configs.qr_code(page.session, page.principal, page.settings, config_id)
    return check, None


@router.post(PAGE + "/{config_id}/connect", response_class=HTMLResponse)
async def config_connect(page: AdminPage, config: ConfigInPage) -> Response:
    """WhatsApp Web: start the bridge's session, then show its QR code to scan."""

    def started(found: tuple[ConnectionCheck, QrCode | None]) -> Awaitable[Response]:
        panel = qr_panel(config.id, *found)
        return page.show(PageState(checks={config.id: panel.check}, qr={config.id: panel}))

    return await page.act(_start(page, config.id), started)


@router.get(PAGE + "/{config_id}/qr", response_class=HTMLResponse)
async def config_qr(page: AdminPage, config: ConfigInPage) -> Response:
    """WhatsApp Web: the session's status and QR code; HTMX polls this panel while it waits
    for a scan. Without JavaScript, the whole page with the panel."""

    def shown(found: tuple[ConnectionCheck, QrCode | None]) -> Response | Awaitable[Response]:
        panel = qr_panel(config.id, *found)
        if is_htmx(page.request):
            return fragment(
                page.request,
                page.frame,
                "messaging/settings_whatsapp_qr.html",
                panel=panel,
                status_names=_status_names(page.t),
                qr_seconds=QR_SECONDS,
            )
        return page.show(PageState(qr={config.id: panel}))

    call = configs.qr_code(page.session, page.principal, page.settings, config.id)
    return await page.act(call, shown)


# --- switching --------------------------------------------------------------------------------


@router.post(PAGE + "/{config_id}/activate", response_class=HTMLResponse)
async def config_activate(page: AdminPage, config: ConfigInPage) -> Response:
    """Make this configuration the active provider: completed, or failed with nothing
    changed (the page says why)."""
    call = switching.activate(page.session, page.principal, page.settings, config.id)
    return await page.act(call, page.switched)


@router.post(PAGE + "/migrations/{migration_id}/rollback", response_class=HTMLResponse)
async def migration_rollback(migration_id: uuid.UUID, page: AdminPage) -> Response:
    """Undo a completed switch: the previous provider becomes active again."""
    call = switching.rollback(page.session, page.principal, page.settings, migration_id)
    return await page.act(call, page.switched)
