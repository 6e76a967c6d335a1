"""HTML pages for the pipeline: the board (columns, cards, load more, the no-JS "Move to…"
form, the fragments the board's scripts re-read) and the stages settings page.

Thin: the board's rules live in ``pipeline.board`` and the stages' in ``pipeline.service``.
Drag and drop and live updates talk to the JSON API (``/api/v1/leads/{id}/move``,
``/api/v1/pipeline/stages/reorder``, ``/api/v1/events/stream``) from ``static/board.js``,
``static/live.js`` and ``static/stages.js``; every action also works as a plain form.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lovedcrm.auth import team
from lovedcrm.core.deps import SESSION_COOKIE, SessionDep, SettingsDep, get_principal
from lovedcrm.core.errors import AppError, Forbidden
from lovedcrm.leads import stages as leads_stages
from lovedcrm.leads.models import PipelineStage
from lovedcrm.pipeline import board
from lovedcrm.pipeline import service as stages_service
from lovedcrm.web.render import COLOR, DEFAULT_ACCENT, Shell, flash, render, shell, templates

router = APIRouter(include_in_schema=False)

_SAFE_BOARD_NEXT = re.compile(r"/pipeline(\?[^\s]*)?")
SCORE_BANDS = ((70, "high"), (40, "mid"), (0, "low"))
IDLE_WARN_DAYS = 7
IDLE_DANGER_DAYS = 14

# The API's refusals of a move, by code, as the board's toast says them (msgids: the
# services' English details, so the no-JS form's flash uses the same translations).
MOVE_MESSAGES = {
    "stale_version": "Someone else changed this lead since you loaded it; here is the "
    "current card. Nothing was moved.",
    "invalid_stage": "That stage does not exist in this organization or is no longer active: "
    "reload the board.",
    "invalid_neighbour": "The card to place it next to is not in that column (any more): "
    "reload the board.",
    "lead_not_found": "No lead with that id.",
    "permission_denied": "You cannot move this lead.",
    "csrf_failed": "The form expired or came from another site. Reload the page.",
    "network": "Could not reach the server. Check your connection and try again.",
    "error": "Something went wrong. Reload the board and try again.",
}


# --- filters ------------------------------------------------------------------------------


@dataclass
class FilterForm:
    """The board's filter form as typed (kept for redisplay) and what the service gets."""

    assigned_to: str = ""
    source: str = ""
    score_min: str = ""
    score_max: str = ""
    q: str = ""

    @classmethod
    def from_request(cls, request: Request) -> FilterForm:
        p = request.query_params
        return cls(
            assigned_to=p.get("assigned_to", "")[:40].strip(),
            source=p.get("source", "")[:100].strip(),
            score_min=p.get("score_min", "")[:3].strip(),
            score_max=p.get("score_max", "")[:3].strip(),
            q=p.get("q", "")[:200].strip(),
        )

    @staticmethod
    def _score(raw: str) -> int | None:
        return int(raw) if raw.isdigit() and 0 <= int(raw) <= 100 else None

    def errors(self, t: Any) -> dict[str, str]:
        errors: dict[str, str] = {}
        for name in ("score_min", "score_max"):
            raw = getattr(self, name)
            if raw and self._score(raw) is None:
                errors[name] = t("Use a whole number from 0 to 100.")
        if self.assigned_to:
            try:
                uuid.UUID(self.assigned_to)
            except ValueError:
                errors["assigned_to"] = t("Choose someone from the list.")
        return errors

    def filters(self) -> board.BoardFilters:
        try:
            assignee = uuid.UUID(self.assigned_to) if self.assigned_to else None
        except ValueError:
            assignee = None
        return board.BoardFilters(
            assigned_to=assignee,
            source=self.source or None,
            score_min=self._score(self.score_min),
            score_max=self._score(self.score_max),
            q=self.q or None,
        )

    def query(self) -> str:
        """The active filters as a query string (for load more, totals, links back)."""
        pairs = [(k, v) for k, v in vars(self).items() if v]
        return urlencode(pairs)

    @property
    def active(self) -> bool:
        return any(vars(self).values())

    def matches(self, card: board.Card) -> bool:
        """Whether a card re-read after a live event still belongs on this filtered board.
        The text search is not re-checked here (the card stays until the next reload)."""
        wanted = self.filters()
        score = card.lead_score or 0
        if wanted.assigned_to and card.assigned_to != wanted.assigned_to:
            return False
        if wanted.source and (card.source or "").strip().lower() != wanted.source.lower():
            return False
        if wanted.score_min is not None and score < wanted.score_min:
            return False
        return not (wanted.score_max is not None and score > wanted.score_max)


# --- helpers ------------------------------------------------------------------------------


def score_band(score: int | None) -> str:
    value = score or 0
    return next(name for floor, name in SCORE_BANDS if value >= floor)


def idle_level(age_seconds: int | None) -> str:
    if age_seconds is None:
        return "none"
    days = age_seconds // 86400
    if days >= IDLE_DANGER_DAYS:
        return "danger"
    if days >= IDLE_WARN_DAYS:
        return "warn"
    return "ok"


templates.env.globals["score_band"] = score_band
templates.env.globals["idle_level"] = idle_level
templates.env.tests["match_color"] = lambda value: (
    isinstance(value, str) and bool(COLOR.fullmatch(value))
)


def _fragment(
    request: Request, frame: Shell, name: str, status_code: int = 200, **ctx: Any
) -> HTMLResponse:
    """A piece of a page for the board's scripts (no flash messages consumed)."""
    response: HTMLResponse = templates.TemplateResponse(
        request,
        name,
        {"i18n": frame.i18n, "lang": frame.i18n.tag, "csrf": frame.csrf, **ctx},
        status_code=status_code,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _no_access(request: Request, frame: Shell, exc: AppError) -> HTMLResponse:
    return render(
        request,
        "board_denied.html",
        exc.status,
        **frame.context("pipeline"),
        message=frame.i18n.gettext(exc.detail),
        permission=exc.extra.get("permission"),
    )


async def _members(session: SessionDep, frame: Shell) -> list[tuple[str, str]]:
    """(id, name) of the organization's people for the assignee filter ([] without access)."""
    if not frame.principal.can("leads:read_all") or not frame.principal.can("members:read"):
        return []
    rows = await team.list_members(session, frame.principal)
    return [(str(u.id), u.full_name) for m, u in rows if m.is_active]


def _board_context(frame: Shell, stages: list[PipelineStage], form: FilterForm) -> dict[str, Any]:
    t = frame.i18n.gettext
    return {
        "stages": stages,
        "stage_colors": {s.id: s.color for s in stages},
        "filters": form,
        "filter_query": form.query(),
        "can_move": frame.principal.can("leads:write"),
        "move_messages": {
            **{code: t(text) for code, text in MOVE_MESSAGES.items()},
            "moved": t("Moved to %(stage)s."),
        },
        "currency": frame.i18n.currency,
    }


# --- the board ----------------------------------------------------------------------------


@router.get("/pipeline", response_class=HTMLResponse)
async def board_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    frame = await shell(request, session, settings)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if frame.org is None:
        return RedirectResponse("/", status_code=303)
    form = FilterForm.from_request(request)
    errors = form.errors(frame.i18n.gettext)
    try:
        result = await board.board(session, frame.principal, form.filters())
        members = await _members(session, frame)
    except AppError as exc:
        return _no_access(request, frame, exc)
    stages = [column.stage for column in result.columns]
    total = sum(column.lead_count for column in result.columns)
    return render(
        request,
        "pipeline.html",
        **frame.context("pipeline"),
        **_board_context(frame, stages, form),
        columns=result.columns,
        total=total,
        members=members,
        errors=errors,
    )


@router.get("/pipeline/stages/{stage_id}/cards", response_class=HTMLResponse)
async def board_more_cards(
    stage_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    after: str | None = None,
) -> Response:
    """The next cards of a column and, when there are more, the next "load more" button."""
    frame = await shell(request, session, settings)
    if frame is None:
        return Response(status_code=401)
    form = FilterForm.from_request(request)
    try:
        page = await board.stage_cards(
            session, frame.principal, stage_id, form.filters(), after=(after or None)
        )
        stages = await board.active_stages(session, frame.principal)
    except AppError as exc:
        return _fragment(
            request,
            frame,
            "board_error.html",
            exc.status,
            message=frame.i18n.gettext(exc.detail),
        )
    return _fragment(
        request,
        frame,
        "board_cards.html",
        **_board_context(frame, stages, form),
        cards=page.items,
        stage_id=stage_id,
        next_cursor=page.next_cursor,
    )


@router.get("/pipeline/cards/{lead_id}", response_class=HTMLResponse)
async def board_card(
    lead_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """One card as the board shows it; 404 when it is not on the (filtered) board."""
    frame = await shell(request, session, settings)
    if frame is None:
        return Response(status_code=401)
    form = FilterForm.from_request(request)
    try:
        card = await board.get_card(session, frame.principal, lead_id)
        stages = await board.active_stages(session, frame.principal)
    except AppError as exc:
        return Response(status_code=exc.status)
    if (
        card.status != "active"
        or card.stage_id not in {s.id for s in stages}
        or not form.matches(card)
    ):
        return Response(status_code=404)
    return _fragment(
        request, frame, "board_card.html", **_board_context(frame, stages, form), card=card
    )


@router.get("/pipeline/totals", response_class=HTMLResponse)
async def board_totals(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Every column's count and total (the headers' numbers) for the current filters."""
    frame = await shell(request, session, settings)
    if frame is None:
        return Response(status_code=401)
    form = FilterForm.from_request(request)
    try:
        result = await board.board(session, frame.principal, form.filters(), limit=0)
    except AppError as exc:
        return Response(status_code=exc.status)
    return _fragment(request, frame, "board_totals.html", columns=result.columns)


@router.post("/pipeline/leads/{lead_id}/move")
async def board_move_form(
    lead_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    stage_id: Annotated[uuid.UUID, Form()],
    expected_version: Annotated[int, Form(ge=1)],
    next: Annotated[str, Form(max_length=1000)] = "/pipeline",
) -> Response:
    """The "Move to…" menu without JavaScript: to the top of the chosen column, then back."""
    if not request.cookies.get(SESSION_COOKIE):
        return RedirectResponse("/login", status_code=303)
    await get_principal(request, session, settings, None)  # 403 on a CSRF failure
    frame = await shell(request, session, settings)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    target = next if _SAFE_BOARD_NEXT.fullmatch(next) else "/pipeline"
    response = RedirectResponse(target, status_code=303)
    t = frame.i18n.gettext
    try:
        async with session.begin_nested():
            await board.move_lead(
                session,
                frame.principal,
                lead_id,
                stage_id=stage_id,
                expected_version=expected_version,
            )
            stage = await session.get(PipelineStage, stage_id)
    except AppError as exc:
        message = MOVE_MESSAGES.get(exc.code, exc.detail)
        if isinstance(exc, Forbidden) and exc.code == "permission_denied":
            message = MOVE_MESSAGES["permission_denied"]
        flash(response, t(message), "error")
        return response
    flash(response, t("Moved to %(stage)s.") % {"stage": stage.name if stage else ""})
    return response


# --- stages settings ----------------------------------------------------------------------


@dataclass
class StageForm:
    name: str
    color: str
    is_active: bool


def _stage_errors(form: StageForm, t: Any) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not form.name:
        errors["name"] = t("Give the stage a name.")
    elif len(form.name) > 100:
        errors["name"] = t("Use at most 100 characters.")
    if not COLOR.fullmatch(form.color):
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
        return _no_access(request, frame, exc)
    return render(
        request,
        "pipeline_settings.html",
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


async def _manager_frame(
    request: Request, session: SessionDep, settings: SettingsDep
) -> Shell | None:
    """The signed-in person of a settings form (403 on a CSRF failure), or None."""
    if not request.cookies.get(SESSION_COOKIE):
        return None
    await get_principal(request, session, settings, None)
    frame = await shell(request, session, settings)
    if frame is None or frame.org is None:
        return None
    return frame


async def _refuse(request: Request, session: SessionDep, frame: Shell) -> HTMLResponse | None:
    """The read-only page with a 403 for someone without pipeline:manage, else None."""
    if frame.principal.can("pipeline:manage"):
        return None
    return await _stages_page(request, session, frame, status_code=403)


def _back(request: Request, frame: Shell, text: str) -> Response:
    response = RedirectResponse("/settings/pipeline", status_code=303)
    flash(response, frame.i18n.gettext(text))
    return response


@router.get("/settings/pipeline", response_class=HTMLResponse)
async def stages_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    frame = await shell(request, session, settings)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if frame.org is None:
        return RedirectResponse("/", status_code=303)
    return await _stages_page(request, session, frame)


@router.post("/settings/pipeline/stages", response_class=HTMLResponse)
async def stage_create(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    name: Annotated[str, Form(max_length=500)] = "",
    color: Annotated[str, Form(max_length=50)] = DEFAULT_ACCENT,
) -> Response:
    frame = await _manager_frame(request, session, settings)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if (refused := await _refuse(request, session, frame)) is not None:
        return refused
    form = StageForm(name=name.strip(), color=color.strip(), is_active=True)
    errors = _stage_errors(form, frame.i18n.gettext)
    if errors:
        return await _stages_page(
            request, session, frame, errors={"new": errors}, forms={"new": form}, status_code=422
        )
    try:
        async with session.begin_nested():
            await leads_stages.create_stage(
                session,
                frame.principal,
                name=form.name,
                color=form.color.lower(),
                stage_type="custom",
            )
    except AppError as exc:
        return await _stages_page(
            request,
            session,
            frame,
            errors={"new": {"form": frame.i18n.gettext(exc.detail)}},
            forms={"new": form},
            status_code=exc.status,
        )
    return _back(request, frame, "Stage added.")


@router.post("/settings/pipeline/stages/{stage_id}", response_class=HTMLResponse)
async def stage_update(
    stage_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    name: Annotated[str, Form(max_length=500)] = "",
    color: Annotated[str, Form(max_length=50)] = "",
    is_active: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    frame = await _manager_frame(request, session, settings)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if (refused := await _refuse(request, session, frame)) is not None:
        return refused
    key = str(stage_id)
    form = StageForm(name=name.strip(), color=color.strip(), is_active=is_active is not None)
    errors = _stage_errors(form, frame.i18n.gettext)
    if errors:
        return await _stages_page(
            request, session, frame, errors={key: errors}, forms={key: form}, status_code=422
        )
    try:
        async with session.begin_nested():
            await leads_stages.update_stage(
                session,
                frame.principal,
                stage_id,
                {"name": form.name, "color": form.color.lower(), "is_active": form.is_active},
            )
    except AppError as exc:
        return await _stages_page(
            request,
            session,
            frame,
            errors={key: {"form": frame.i18n.gettext(exc.detail)}},
            forms={key: form},
            status_code=exc.status,
        )
    return _back(request, frame, "Stage saved.")


@router.post("/settings/pipeline/stages/{stage_id}/move", response_class=HTMLResponse)
async def stage_shift(
    stage_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    direction: Annotated[str, Form(max_length=10)],
) -> Response:
    """Up or down one place: the keyboard's (and the no-JS) way to reorder."""
    frame = await _manager_frame(request, session, settings)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if (refused := await _refuse(request, session, frame)) is not None:
        return refused
    try:
        async with session.begin_nested():
            ids = [t.stage.id for t in await stages_service.list_stages(session, frame.principal)]
            if stage_id in ids:
                i = ids.index(stage_id)
                j = i - 1 if direction == "up" else i + 1
                if 0 <= j < len(ids):
                    ids[i], ids[j] = ids[j], ids[i]
                    await leads_stages.reorder_stages(session, frame.principal, ids)
    except AppError as exc:
        return await _stages_page(
            request,
            session,
            frame,
            errors={str(stage_id): {"form": frame.i18n.gettext(exc.detail)}},
            status_code=exc.status,
        )
    return _back(request, frame, "Order saved.")


@router.post("/settings/pipeline/stages/{stage_id}/delete", response_class=HTMLResponse)
async def stage_delete(
    stage_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    move_to: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    frame = await _manager_frame(request, session, settings)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if (refused := await _refuse(request, session, frame)) is not None:
        return refused
    key = str(stage_id)
    target: uuid.UUID | None = None
    if move_to:
        try:
            target = uuid.UUID(move_to)
        except ValueError:
            target = None
    try:
        async with session.begin_nested():
            moved = await stages_service.delete_stage(session, frame.principal, stage_id, target)
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
    response = RedirectResponse("/settings/pipeline", status_code=303)
    t = frame.i18n
    text = t.gettext("Stage removed.")
    if moved:
        text = t.ngettext(
            "Stage removed; %(num)d lead moved.", "Stage removed; %(num)d leads moved.", moved
        ) % {"num": moved}
    flash(response, text)
    return response
