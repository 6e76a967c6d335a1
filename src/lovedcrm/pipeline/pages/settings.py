"""The stages settings page: add, rename, recolor, switch off, reorder (↑/↓, the keyboard's
and the no-JS way; ``static/stages.js`` drags through the API) and remove a stage, its leads
moved first.

Everyone who sees the board sees the stages; without ``pipeline:manage`` the page is
read-only, and a form posted anyway gets that page back with a 403.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import AppError, NotFound
from lovedcrm.leads import stages as leads_stages
from lovedcrm.leads.models import PipelineStage
from lovedcrm.pipeline import service as stages_service
from lovedcrm.pipeline.pages._common import no_access
from lovedcrm.web.kit import (
    COLOR,
    DEFAULT_ACCENT,
    Member,
    PageError,
    Shell,
    page_router,
    parse_uuid,
    redirect,
    render,
    templates,
)

router = page_router()

templates.env.tests["match_color"] = lambda value: (
    isinstance(value, str) and bool(COLOR.fullmatch(value))
)


async def stage_in_page(stage_id: uuid.UUID, frame: Member, session: SessionDep) -> PipelineStage:
    """The stage a settings form names, or the 404 page."""
    try:
        return await leads_stages.get_stage(session, frame.principal, stage_id)
    except NotFound as exc:
        raise PageError(
            404,
            "Not found",
            "No pipeline stage with that id.",
            back_url="/settings/pipeline",
            back_label="Pipeline stages",
        ) from exc


StageInPage = Annotated[PipelineStage, Depends(stage_in_page)]


@dataclass
class StageForm:
    name: str
    color: str
    is_active: bool

    def errors(self, t: Callable[[str], str]) -> dict[str, str]:
        errors: dict[str, str] = {}
        if not self.name:
            errors["name"] = t("Give the stage a name.")
        elif len(self.name) > 100:
            errors["name"] = t("Use at most 100 characters.")
        if not COLOR.fullmatch(self.color):
            errors["color"] = t("Use a color in the #RRGGBB format, for example #6366f1.")
        return errors


async def _stages_page(
    request: Request,
    session: SessionDep,
    frame: Shell,
    *,
    errors: dict[str, dict[str, str]] | None = None,
    forms: dict[str, StageForm] | None = None,
    ask_move: dict[str, int] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    try:
        stages = await stages_service.list_stages(session, frame.principal)
    except AppError as exc:
        return no_access(request, frame, exc)
    return render(
        request,
        "pipeline/settings.html",
        status_code,
        **frame.context("settings"),
        tab="pipeline",
        stages=stages,
        can_manage=frame.principal.can("pipeline:manage"),
        errors=errors or {},
        forms=forms or {},
        ask_move=ask_move or {},
        default_color=DEFAULT_ACCENT,
    )


async def _refuse(request: Request, session: SessionDep, frame: Shell) -> HTMLResponse | None:
    """The read-only page with a 403 for someone without pipeline:manage, else None. (Not
    the kit's ``require``: this page names the permission and still shows the stages.)"""
    if frame.principal.can("pipeline:manage"):
        return None
    return await _stages_page(request, session, frame, status_code=403)


def _back(frame: Shell, text: str) -> Response:
    return redirect("/settings/pipeline", frame.i18n.gettext(text))


async def _save(
    request: Request,
    session: SessionDep,
    frame: Shell,
    key: str,
    form: StageForm,
    save: Callable[[], Awaitable[object]],
    done: str,
) -> Response:
    """Check a stage's form, then ``save()``; the page again with the messages (under
    ``key``: ``new`` or the stage's id) when either fails, else back with ``done``."""
    errors, status = form.errors(frame.i18n.gettext), 422
    if not errors:
        try:
            await save()
        except AppError as exc:
            errors, status = {"form": frame.i18n.gettext(exc.detail)}, exc.status
        else:
            return _back(frame, done)
    return await _stages_page(
        request, session, frame, errors={key: errors}, forms={key: form}, status_code=status
    )


@router.get("/settings/pipeline", response_class=HTMLResponse)
async def stages_page(request: Request, session: SessionDep, frame: Member) -> Response:
    return await _stages_page(request, session, frame)


@router.post("/settings/pipeline/stages", response_class=HTMLResponse)
async def stage_create(
    request: Request,
    session: SessionDep,
    frame: Member,
    name: Annotated[str, Form(max_length=500)] = "",
    color: Annotated[str, Form(max_length=50)] = DEFAULT_ACCENT,
) -> Response:
    if (refused := await _refuse(request, session, frame)) is not None:
        return refused
    form = StageForm(name=name.strip(), color=color.strip(), is_active=True)
    return await _save(
        request,
        session,
        frame,
        "new",
        form,
        lambda: leads_stages.create_stage(
            session, frame.principal, name=form.name, color=form.color.lower(), stage_type="custom"
        ),
        "Stage added.",
    )


@router.post("/settings/pipeline/stages/{stage_id}", response_class=HTMLResponse)
async def stage_update(
    stage: StageInPage,
    request: Request,
    session: SessionDep,
    frame: Member,
    name: Annotated[str, Form(max_length=500)] = "",
    color: Annotated[str, Form(max_length=50)] = "",
    is_active: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    if (refused := await _refuse(request, session, frame)) is not None:
        return refused
    form = StageForm(name=name.strip(), color=color.strip(), is_active=is_active is not None)
    changes = {"name": form.name, "color": form.color.lower(), "is_active": form.is_active}
    return await _save(
        request,
        session,
        frame,
        str(stage.id),
        form,
        lambda: leads_stages.update_stage(session, frame.principal, stage.id, changes),
        "Stage saved.",
    )


@router.post("/settings/pipeline/stages/{stage_id}/move", response_class=HTMLResponse)
async def stage_shift(
    stage: StageInPage,
    request: Request,
    session: SessionDep,
    frame: Member,
    direction: Annotated[str, Form(max_length=10)],
) -> Response:
    """Up or down one place: the keyboard's (and the no-JS) way to reorder."""
    if (refused := await _refuse(request, session, frame)) is not None:
        return refused
    try:
        ids = [s.id for s in await leads_stages.list_stages(session, frame.principal)]
        i = ids.index(stage.id)
        j = i - 1 if direction == "up" else i + 1
        if 0 <= j < len(ids):
            ids[i], ids[j] = ids[j], ids[i]
            await leads_stages.reorder_stages(session, frame.principal, ids)
    except AppError as exc:
        return await _stages_page(
            request,
            session,
            frame,
            errors={str(stage.id): {"form": frame.i18n.gettext(exc.detail)}},
            status_code=exc.status,
        )
    return _back(frame, "Order saved.")


@router.post("/settings/pipeline/stages/{stage_id}/delete", response_class=HTMLResponse)
async def stage_delete(
    stage: StageInPage,
    request: Request,
    session: SessionDep,
    frame: Member,
    move_to: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    if (refused := await _refuse(request, session, frame)) is not None:
        return refused
    key = str(stage.id)
    try:
        moved = await stages_service.delete_stage(
            session, frame.principal, stage.id, parse_uuid(move_to)
        )
    except AppError as exc:
        if exc.code == "stage_not_empty":
            count = int(exc.extra.get("lead_count") or 0)
            return await _stages_page(
                request, session, frame, ask_move={key: count}, status_code=409
            )
        return await _stages_page(
            request,
            session,
            frame,
            errors={key: {"delete": frame.i18n.gettext(exc.detail)}},
            ask_move={key: 0},
            status_code=exc.status,
        )
    t = frame.i18n
    text = t.gettext("Stage removed.")
    if moved:
        text = t.ngettext(
            "Stage removed; %(num)d lead moved.", "Stage removed; %(num)d leads moved.", moved
        ) % {"num": moved}
    return redirect("/settings/pipeline", text)
