"""Settings → the assignment of new leads: by hand, or in turn among the sales team. The
mode is an organization setting (``organizations.service``); who is in the rotation, and in
which order, is ``leads.assignment``'s."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import AppError
from lovedcrm.leads import assignment
from lovedcrm.organizations import service as org_service
from lovedcrm.web.kit import Member, Shell, page_router, redirect, render

router = page_router()


async def _assignment_page(
    request: Request,
    session: AsyncSession,
    frame: Shell,
    *,
    mode: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    org_settings = dict(frame.org.settings or {}) if frame.org else {}
    saved_mode = org_service.mode_of(org_settings)
    return render(
        request,
        "leads/settings_assignment.html",
        status_code,
        **frame.context("settings"),
        tab="assignment",
        mode=mode or saved_mode,
        saved_mode=saved_mode,
        rotation=await assignment.rotation_order(session, frame.principal.org()),
        error=error,
        can_manage=frame.principal.can("settings:manage"),
    )


@router.get("/settings/assignment", response_class=HTMLResponse)
async def assignment_page(request: Request, frame: Member, session: SessionDep) -> Response:
    return await _assignment_page(request, session, frame)


@router.post("/settings/assignment", response_class=HTMLResponse)
async def assignment_submit(
    request: Request,
    frame: Member,
    session: SessionDep,
    mode: Annotated[str, Form(alias="assignment", max_length=20)] = "",
) -> Response:
    t = frame.i18n.gettext
    try:
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
    return redirect("/settings/assignment", t("Settings saved."))
