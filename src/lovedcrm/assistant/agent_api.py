"""JSON routes of the WhatsApp agent: its settings and usage (admins), its state on a
conversation and "take over" (members who may answer the lead), and the organization's AI
data export and deletion (admins). Thin: the rules are in ``assistant.agent``."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import Field

from lovedcrm.assistant import agent_members, agent_settings
from lovedcrm.core.deps import Require, SessionDep, SettingsDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.core.schemas import Out, StrictIn

router = APIRouter(prefix="/api/v1", tags=["assistant"])
Manager = Annotated[Principal, Depends(Require("settings:manage"))]
Reader = Annotated[Principal, Depends(Require("messages:read"))]
Writer = Annotated[Principal, Depends(Require("messages:write"))]


class AgentSettingsOut(Out):
    enabled: bool
    config_ids: list[str]
    mode: str
    timezone: str
    days: list[int]
    start: str
    end: str
    questions: list[str]
    handoff_score: int
    max_turns: int
    human_quiet_hours: int
    window_template_id: str | None
    acting_user_id: str | None


class AgentSettingsIn(StrictIn):
    """The fields to change (a null is the same as leaving a field out, except for
    ``window_template_id``, where it clears the template)."""

    enabled: bool | None = None
    config_ids: list[uuid.UUID] | None = Field(default=None, max_length=20)
    mode: Literal["out_of_hours", "unowned"] | None = None
    timezone: str | None = Field(
        default=None, max_length=64, description="An IANA time zone, e.g. America/Sao_Paulo"
    )
    days: list[Annotated[int, Field(ge=0, le=6)]] | None = Field(
        default=None, max_length=7, description="Weekdays, 0 (Monday) to 6"
    )
    start: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    questions: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None, max_length=5
    )
    handoff_score: int | None = Field(default=None, ge=1, le=100)
    max_turns: int | None = Field(default=None, ge=1, le=50)
    human_quiet_hours: int | None = Field(default=None, ge=0, le=168)
    window_template_id: uuid.UUID | None = None


class UsageOut(Out):
    tokens_this_month: int
    monthly_token_budget: int | None
    budget_spent: bool
    provider: str


class AgentStateOut(Out):
    active: bool
    status: str | None
    handed_off_to_name: str | None
    handed_off_at: datetime | None
    qualification_score: int | None
    context_summary: str | None
    total_tokens_used: int
    reason: str | None
    can_take_over: bool


class DeletedOut(Out):
    ai_conversations: int
    ai_training_data: int
    ai_sentiment_models: int


def _settings_out(value: agent_settings.AgentSettings) -> AgentSettingsOut:
    return AgentSettingsOut.model_validate(value.as_dict())


@router.get(
    "/ai/agent/settings", response_model=AgentSettingsOut, responses=problem_responses(401, 403)
)
async def get_agent_settings(principal: Manager, session: SessionDep) -> AgentSettingsOut:
    """The agent's configuration: off by default; on per WhatsApp number (``config_ids``)."""
    return _settings_out(await agent_settings.get_agent_settings(session, principal))


@router.patch(
    "/ai/agent/settings",
    response_model=AgentSettingsOut,
    responses=problem_responses(401, 403, 422),
)
async def update_agent_settings(
    body: AgentSettingsIn, principal: Manager, session: SessionDep
) -> AgentSettingsOut:
    """Change the fields given. Switching the agent on makes it act as you (with at most
    the permissions to read and fill leads and send messages, on one lead at a time)."""
    values = {
        name: value
        for name, value in body.model_dump(exclude_unset=True, mode="json").items()
        if value is not None or name == "window_template_id"
    }
    return _settings_out(await agent_settings.update_agent_settings(session, principal, values))


@router.get("/ai/agent/usage", response_model=UsageOut, responses=problem_responses(401, 403))
async def agent_usage(principal: Manager, session: SessionDep, settings: SettingsDep) -> UsageOut:
    """Tokens the agent used this month against the organization's monthly budget."""
    return UsageOut.model_validate(await agent_members.usage(session, principal, settings))


@router.get(
    "/leads/{lead_id}/agent",
    response_model=AgentStateOut,
    responses=problem_responses(401, 403, 404),
)
async def agent_state(lead_id: uuid.UUID, principal: Reader, session: SessionDep) -> AgentStateOut:
    """Whether the agent answers this conversation, or to whom it handed it off."""
    state = await agent_members.state_for(session, principal, lead_id)
    return AgentStateOut.model_validate(state.__dict__)


@router.post(
    "/leads/{lead_id}/agent/take-over",
    response_model=AgentStateOut,
    responses=problem_responses(401, 403, 404),
)
async def take_over(lead_id: uuid.UUID, principal: Writer, session: SessionDep) -> AgentStateOut:
    """Take the conversation from the agent: it stays silent here from now on."""
    await agent_members.take_over(session, principal, lead_id)
    state = await agent_members.state_for(session, principal, lead_id)
    return AgentStateOut.model_validate(state.__dict__)


@router.get("/ai/data/export", responses=problem_responses(401, 403))
async def export_ai_data(principal: Manager, session: SessionDep) -> Response:
    """Every AI record of the organization as one JSON file: conversations (scores,
    summaries, tokens), training data (corrections, approved examples, the agent's redacted
    prompts and answers) and the sentiment model's metadata."""
    data: dict[str, Any] = await agent_members.export_ai_data(session, principal)
    return Response(
        json.dumps(data, ensure_ascii=False, indent=1),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="ai-data.json"'},
    )


@router.delete("/ai/data", response_model=DeletedOut, responses=problem_responses(401, 403))
async def delete_ai_data(principal: Manager, session: SessionDep) -> DeletedOut:
    """Delete the organization's AI data (the settings stay). Cannot be undone."""
    return DeletedOut.model_validate(await agent_members.delete_ai_data(session, principal))
