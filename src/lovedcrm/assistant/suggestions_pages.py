"""The inbox's suggested replies: an htmx fragment under the composer (the messaging domain
sits below the assistant and cannot import it, so the composer loads it with ``hx-get``),
and the AI draft loaded after it, so a slow provider never holds up the others. Picking a
suggestion puts its text into the composer (``static/suggestions.js``), which reports
picked / edited / ignored to the JSON API when the message is sent."""

from __future__ import annotations

import uuid

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from lovedcrm.assistant import suggestions as service
from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError
from lovedcrm.web.kit import Member, page_router, parse_uuid, render

router = page_router()


async def _fragment(
    request: Request,
    frame: Member,
    session: SessionDep,
    settings: SettingsDep,
    lead_id: str,
    *,
    ai_only: bool,
) -> Response:
    parsed: uuid.UUID | None = parse_uuid(lead_id)
    if parsed is None:
        return Response(status_code=204)
    try:
        found = await service.suggest_replies(
            session, frame.principal, settings, parsed, with_ai=ai_only
        )
    except AppError:
        # Not this member's conversation to answer: nothing to suggest (htmx swaps nothing).
        return Response(status_code=204)
    return render(
        request,
        "assistant/_suggestions.html",
        **frame.context("inbox"),
        found=found,
        lead=found.lead,
        ai_only=ai_only,
    )


@router.get("/inbox/{lead_id}/suggestions", response_class=HTMLResponse)
async def suggestions_fragment(
    request: Request, lead_id: str, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    return await _fragment(request, frame, session, settings, lead_id, ai_only=False)


@router.get("/inbox/{lead_id}/suggestions/ai", response_class=HTMLResponse)
async def ai_draft_fragment(
    request: Request, lead_id: str, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    return await _fragment(request, frame, session, settings, lead_id, ai_only=True)
