"""The inbox's sentiment correction (a member relabels a customer's message; HTMX swaps the
message's badges, a plain form post returns to the conversation)."""

from __future__ import annotations

import uuid

from fastapi import Request
from fastapi.responses import Response

from lovedcrm.assistant import service
from lovedcrm.core.deps import SessionDep
from lovedcrm.web.kit import Member, page_router, redirect, render

router = page_router()


@router.post("/inbox/messages/{message_id}/sentiment")
async def correct_sentiment(
    request: Request, message_id: uuid.UUID, session: SessionDep, frame: Member
) -> Response:
    form = await request.form()
    msg = await service.correct(session, frame.principal, message_id, str(form.get("label", "")))
    if request.headers.get("hx-request"):
        stored = service.sentiment_of(msg)
        return render(
            request,
            "assistant/_sentiment.html",
            200,
            **frame.context("inbox"),
            message_id=str(msg.id),
            s=stored,
        )
    return redirect(f"/inbox/{msg.lead_id}#msg-{msg.id}", "Sentiment corrected.")
