"""Configurações → Telefonia → switching the active voice provider: the configurations with
the one new calls use, "Usar este" on the others, the history of switches with "Desfazer".

The section is the fragment ``calls/_voice_switching.html``; :func:`switching_context` gives
what it needs, so the Telefonia settings page can include it; ``/settings/telephony/switching``
shows it on its own page too. Rules in ``calls.switching``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.calls import switching
from lovedcrm.calls.models import VoipConfig
from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError
from lovedcrm.core.principal import Principal
from lovedcrm.messaging.models import ProviderMigration
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import Shell, attempt, page_router, redirect, render, require

router = page_router()
PERMISSION = "settings:manage"
Admin = Annotated[Shell, Depends(require(PERMISSION))]
PAGE = "/settings/telephony/switching"
BACK_TO = ("/settings/telephony", PAGE)

PROVIDER_NAMES = {"twilio": "Twilio", "telnyx": "Telnyx", "sandbox": N_("Sandbox (test)")}
STATUS_NAMES = {
    "pending": N_("Requested"),
    "in_progress": N_("In progress"),
    "completed": N_("Completed"),
    "failed": N_("Failed"),
}
STEP_NAMES = {
    "requested": N_("Switch requested"),
    "checking": N_("Checking the new provider"),
    "switched": N_("Active provider switched; calls in progress finish on the old one"),
    "check_failed": N_("The new provider did not answer. Nothing was changed."),
}


@dataclass
class ConfigView:
    id: uuid.UUID
    name: str
    is_active: bool
    cost_per_minute: Decimal | None
    unfinished_calls: int


@dataclass
class StepView:
    status: str
    at: datetime | None
    text: str


@dataclass
class MigrationView:
    id: uuid.UUID
    created_at: datetime | None
    status: str
    from_name: str
    to_name: str
    is_rollback: bool
    can_undo: bool
    steps: list[StepView]


def _name(t: Any, provider: str) -> str:
    if provider == "none":
        return str(t("None"))
    name = PROVIDER_NAMES.get(provider, provider)
    return str(t(name)) if provider == "sandbox" else name


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def migration_view(t: Any, m: ProviderMigration) -> MigrationView:
    data = dict(m.migration_data or {})
    steps = []
    for s in data.get("steps") or []:
        if not isinstance(s, dict):
            continue
        code = str(s.get("code") or "")
        steps.append(
            StepView(
                status=str(t(STATUS_NAMES.get(str(s.get("status")), str(s.get("status"))))),
                at=_when(s.get("at")),
                text=str(t(STEP_NAMES[code])) if code in STEP_NAMES else str(s.get("note") or ""),
            )
        )
    failure = next(
        (str(s.get("note")) for s in data.get("steps") or [] if s.get("code") == "check_failed"),
        None,
    )
    if failure:
        steps[-1].text = f"{steps[-1].text} ({failure})"
    return MigrationView(
        id=m.id,
        created_at=m.created_at,
        status=m.status or "pending",
        from_name=_name(t, m.from_provider),
        to_name=_name(t, m.to_provider),
        is_rollback=bool(data.get("rollback_of")),
        can_undo=m.status == "completed" and m.from_provider != "none",
        steps=steps,
    )


async def switching_context(session: AsyncSession, principal: Principal, t: Any) -> dict[str, Any]:
    """What ``calls/_voice_switching.html`` needs (``settings:manage``)."""
    principal.require(PERMISSION)
    rows = await session.execute(
        select(VoipConfig)
        .where(VoipConfig.organization_id == principal.org())
        .order_by(VoipConfig.created_at)
    )
    configs = [
        ConfigView(
            id=c.id,
            name=_name(t, c.provider_type),
            is_active=bool(c.is_active),
            cost_per_minute=c.cost_per_minute,
            unfinished_calls=await switching.unfinished_calls(session, c),
        )
        for c in rows.scalars()
    ]
    migrations = await switching.list_migrations(session, principal)
    return {
        "voice_configs": configs,
        "voice_migrations": [migration_view(t, m) for m in migrations],
        "voice_status_names": {k: t(v) for k, v in STATUS_NAMES.items()},
    }


def _back(request_form: Any) -> str:
    back = str(request_form.get("back") or "")
    return back if back in BACK_TO else PAGE


@router.get(PAGE, response_class=HTMLResponse)
async def switching_page(request: Request, frame: Admin, session: SessionDep) -> Response:
    t = frame.i18n.gettext
    return render(
        request,
        "calls/voice_switching.html",
        **frame.context("settings"),
        tab="telephony",
        back=PAGE,
        **await switching_context(session, frame.principal, t),
    )


@router.post(PAGE + "/{config_id}/activate", response_class=HTMLResponse)
async def activate(
    config_id: uuid.UUID,
    request: Request,
    frame: Admin,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Make this configuration the one new calls use: done, or why not (nothing changed)."""
    t = frame.i18n.gettext
    back = _back(await request.form())
    try:
        migration = await attempt(
            session, switching.activate(session, frame.principal, settings, config_id)
        )
    except AppError as exc:
        return redirect(back, t(exc.detail), "error")
    view = migration_view(t, migration)
    if migration.status == "completed":
        return redirect(back, t("%(provider)s now places new calls.") % {"provider": view.to_name})
    return redirect(back, view.steps[-1].text if view.steps else t("Failed"), "error")


@router.post(PAGE + "/migrations/{migration_id}/rollback", response_class=HTMLResponse)
async def rollback(
    migration_id: uuid.UUID,
    request: Request,
    frame: Admin,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Undo a completed switch: the previous provider places new calls again."""
    t = frame.i18n.gettext
    back = _back(await request.form())
    try:
        migration = await attempt(
            session, switching.rollback(session, frame.principal, settings, migration_id)
        )
    except AppError as exc:
        return redirect(back, t(exc.detail), "error")
    view = migration_view(t, migration)
    if migration.status == "completed":
        return redirect(back, t("%(provider)s now places new calls.") % {"provider": view.to_name})
    return redirect(back, view.steps[-1].text if view.steps else t("Failed"), "error")
