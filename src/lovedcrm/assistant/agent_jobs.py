"""The agent's job: one turn for one inbound message (queued by ``agent_events``)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel

from lovedcrm.assistant import agent
from lovedcrm.assistant.llm.base import LLMError
from lovedcrm.jobs.queue import JobContext, PermanentFailure, RetryLater, job_handler


class TurnPayload(BaseModel):
    message_id: uuid.UUID


@job_handler(agent.JOB, TurnPayload, max_attempts=3, timeout_seconds=180)
async def agent_turn(ctx: JobContext, payload: TurnPayload) -> dict[str, Any] | None:
    if ctx.organization_id is None:
        raise PermanentFailure("an agent turn belongs to an organization")
    try:
        result = await agent.run_turn(
            ctx.session,
            ctx.settings,
            ctx.organization_id,
            payload.message_id,
            last_attempt=ctx.attempt >= ctx.max_attempts,
        )
    except LLMError as exc:  # transient: 429, 5xx, timeouts
        raise RetryLater(30 * ctx.attempt, f"AI provider: {exc.code}") from exc
    return {
        "outcome": result.outcome,
        "reason": result.reason,
        "tokens": result.tokens,
        "reply_id": str(result.reply_id) if result.reply_id else None,
        "fields": result.fields,
        "refused_tools": result.refused_tools,
    }
