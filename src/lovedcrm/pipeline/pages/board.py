"""The board page: columns, cards, load more, the no-JS "Move to…" form and the fragments the
board's scripts re-read (``static/board.js``, ``static/live.js``).

The fragments answer the scripts in statuses, not pages: 401 without a session, the
service's status (404 for a card not on the filtered board) with an empty body or the
column's error line.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lovedcrm.auth import team
from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import AppError
from lovedcrm.leads import stages as leads_stages
from lovedcrm.leads.models import PipelineStage
from lovedcrm.pipeline import board
from lovedcrm.pipeline.pages._common import no_access
from lovedcrm.web.kit import (
    MaybeSignedIn,
    Member,
    Shell,
    attempt,
    flash,
    page_router,
    parse_uuid,
    render,
    templates,
)

router = page_router()

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

    def errors(self, t: Callable[[str], str]) -> dict[str, str]:
        errors: dict[str, str] = {}
        for name in ("score_min", "score_max"):
            raw = getattr(self, name)
            if raw and self._score(raw) is None:
                errors[name] = t("Use a whole number from 0 to 100.")
        if self.assigned_to and parse_uuid(self.assigned_to) is None:
            errors["assigned_to"] = t("Choose someone from the list.")
        return errors

    def filters(self) -> board.BoardFilters:
        return board.BoardFilters(
            assigned_to=parse_uuid(self.assigned_to),
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


# --- the cards' looks (Jinja globals of the board's macros) ------------------------------


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


# --- helpers ------------------------------------------------------------------------------


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
async def board_page(request: Request, session: SessionDep, frame: Member) -> Response:
    form = FilterForm.from_request(request)
    errors = form.errors(frame.i18n.gettext)
    try:
        result = await board.board(session, frame.principal, form.filters())
        members = await _members(session, frame)
    except AppError as exc:
        return no_access(request, frame, exc)
    stages = [column.stage for column in result.columns]
    total = sum(column.lead_count for column in result.columns)
    return render(
        request,
        "pipeline/board.html",
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
    frame: MaybeSignedIn,
    after: str | None = None,
) -> Response:
    """The next cards of a column and, when there are more, the next "load more" button."""
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
            "pipeline/error.html",
            exc.status,
            message=frame.i18n.gettext(exc.detail),
        )
    return _fragment(
        request,
        frame,
        "pipeline/cards.html",
        **_board_context(frame, stages, form),
        cards=page.items,
        stage_id=stage_id,
        next_cursor=page.next_cursor,
    )


@router.get("/pipeline/cards/{lead_id}", response_class=HTMLResponse)
async def board_card(
    lead_id: uuid.UUID, request: Request, session: SessionDep, frame: MaybeSignedIn
) -> Response:
    """One card as the board shows it; 404 when it is not on the (filtered) board."""
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
        request, frame, "pipeline/card.html", **_board_context(frame, stages, form), card=card
    )


@router.get("/pipeline/totals", response_class=HTMLResponse)
async def board_totals(request: Request, session: SessionDep, frame: MaybeSignedIn) -> Response:
    """Every column's count and total (the headers' numbers) for the current filters."""
    if frame is None:
        return Response(status_code=401)
    form = FilterForm.from_request(request)
    try:
        result = await board.board(session, frame.principal, form.filters(), limit=0)
    except AppError as exc:
        return Response(status_code=exc.status)
    return _fragment(request, frame, "pipeline/totals.html", columns=result.columns)


@router.post("/pipeline/leads/{lead_id}/move")
async def board_move_form(
    lead_id: uuid.UUID,
    session: SessionDep,
    frame: Member,
    stage_id: Annotated[uuid.UUID, Form()],
    expected_version: Annotated[int, Form(ge=1)],
    next: Annotated[str, Form(max_length=1000)] = "/pipeline",
) -> Response:
    """The "Move to…" menu without JavaScript: to the top of the chosen column, then back."""
    target = next if _SAFE_BOARD_NEXT.fullmatch(next) else "/pipeline"
    response = RedirectResponse(target, status_code=303)
    t = frame.i18n.gettext
    try:
        card = await attempt(
            session,
            board.move_lead(
                session,
                frame.principal,
                lead_id,
                stage_id=stage_id,
                expected_version=expected_version,
            ),
        )
    except AppError as exc:
        flash(response, t(MOVE_MESSAGES.get(exc.code, exc.detail)), "error")
        return response
    stage = await leads_stages.get_stage(session, frame.principal, card.stage_id)
    flash(response, t("Moved to %(stage)s.") % {"stage": stage.name})
    return response
