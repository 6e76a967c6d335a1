"""JSON routes for suggested replies (thin: rules in assistant.suggestions)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import ConfigDict, Field

from lovedcrm.assistant import suggestions as service
from lovedcrm.core.deps import Require, SessionDep, SettingsDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.core.schemas import Out, StrictIn

router = APIRouter(prefix="/api/v1", tags=["assistant"])
Sender = Annotated[Principal, Depends(Require("messages:write"))]


class SuggestionOut(Out):
    id: str
    source: Literal["template", "past_reply", "ai"]
    text: str
    score: float
    ai: bool
    template_id: uuid.UUID | None
    template_name: str | None
    message_id: uuid.UUID | None


class LastInboundOut(Out):
    id: uuid.UUID
    content: str | None
    created_at: datetime | None


class SuggestionsOut(Out):
    lead_id: uuid.UUID
    last_inbound: LastInboundOut | None
    suggestions: list[SuggestionOut]
    ai_configured: bool
    ai_error: str | None
    empty: bool


class FeedbackIn(StrictIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "suggestion_id": "template:6f1c0e9a-2b1d-4c55-9a57-0f3f6c1d2e11",
                    "action": "picked",
                },
                {"suggestion_id": "reply:1", "action": "edited", "text": "Oi Ana, segue o valor."},
            ]
        }
    )

    suggestion_id: str = Field(
        max_length=200,
        pattern=r"^(template|reply|ai):[^\x00]+$",
        description="The id the suggestions gave: template:…, reply:… or ai:…",
    )
    action: Literal["picked", "edited", "ignored"]
    text: str | None = Field(default=None, max_length=4096, description="The text as sent")


class FeedbackOut(Out):
    suggestion_id: str
    action: str
    source: str
    template_usage_count: int | None
    template_success_rate: float | None


@router.get(
    "/leads/{lead_id}/suggested-replies",
    response_model=SuggestionsOut,
    responses=problem_responses(401, 403, 404),
)
async def suggested_replies(
    lead_id: uuid.UUID,
    principal: Sender,
    session: SessionDep,
    settings: SettingsDep,
    ai: Annotated[bool, Query(description="Also ask the configured LLM for a draft")] = True,
) -> SuggestionsOut:
    """Three ranked replies to the lead's last message, from the organization's templates
    (filled with the lead's variables) and past replies that got an answer or preceded a
    conversion; with an LLM configured (not the sandbox) and ``ai``, one more draft marked
    ``ai``. ``empty`` when the organization has nothing to suggest from yet."""
    found = await service.suggest_replies(session, principal, settings, lead_id, with_ai=ai)
    return SuggestionsOut.model_validate(service.as_json(found))


@router.post(
    "/leads/{lead_id}/suggested-replies/feedback",
    response_model=FeedbackOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def suggestion_feedback(
    lead_id: uuid.UUID, body: FeedbackIn, principal: Sender, session: SessionDep
) -> FeedbackOut:
    """Record that a suggestion was ``picked`` (sent as it was), ``edited`` (sent changed:
    give ``text``) or ``ignored``. A template picked or edited counts as one more use of it
    (``usage_count``; ``success_rate`` once the lead answers)."""
    done = await service.record_feedback(
        session, principal, lead_id, body.suggestion_id, body.action, sent_text=body.text
    )
    tpl = done.template
    return FeedbackOut(
        suggestion_id=done.suggestion_id,
        action=done.action,
        source=done.source,
        template_usage_count=tpl.usage_count if tpl is not None else None,
        template_success_rate=tpl.success_rate if tpl is not None else None,
    )
