"""What members and admins do with the agent: see its state on a conversation, take a
conversation over (one click: it goes silent there), read this month's token use, and
export or delete the organization's AI data."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.assistant import ai_settings
from lovedcrm.assistant.agent import (
    HANDOFF_ACTIVITY,
    TAKE_OVER_ACTIVITY,
    conversation_for,
    tokens_this_month,
)
from lovedcrm.assistant.agent_settings import settings_of
from lovedcrm.assistant.models import AiConversation, AiSentimentModel, AiTrainingData
from lovedcrm.audit import service as audit
from lovedcrm.auth.models import User
from lovedcrm.config import Settings
from lovedcrm.core import clock
from lovedcrm.core.errors import NotFound
from lovedcrm.core.principal import Principal
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.activities import record_activity
from lovedcrm.messaging import whatsapp
from lovedcrm.organizations.models import Organization


@dataclass(frozen=True)
class AgentState:
    """What the inbox shows about the agent on one conversation."""

    active: bool  # the agent would answer this conversation
    status: str | None  # None: the agent never spoke here
    handed_off_to_name: str | None
    handed_off_at: datetime | None
    qualification_score: int | None
    context_summary: str | None
    total_tokens_used: int
    reason: str | None
    can_take_over: bool


async def state_for(session: AsyncSession, principal: Principal, lead_id: uuid.UUID) -> AgentState:
    lead = await leads_service.get_lead(session, principal, lead_id)
    org = await session.get(Organization, principal.org())
    agent = settings_of(org.settings if org else None)
    conv = await conversation_for(session, principal.org(), lead.id, create=False)
    reason = None
    name = None
    if conv is not None and conv.handed_off_to is not None:
        user = await session.get(User, conv.handed_off_to)
        name = user.full_name if user else None
    if conv is not None and conv.status == "handed_off":
        row = (
            await session.execute(
                text(
                    "SELECT metadata ->> 'reason' FROM lead_activities "
                    "WHERE organization_id = :org AND lead_id = :lead AND activity_type = :kind "
                    "ORDER BY created_at DESC LIMIT 1"
                ),
                {"org": principal.org(), "lead": lead.id, "kind": HANDOFF_ACTIVITY},
            )
        ).scalar_one_or_none()
        reason = row
    active = agent.enabled and (conv is None or conv.status == "active")
    return AgentState(
        active=active,
        status=conv.status if conv else None,
        handed_off_to_name=name,
        handed_off_at=conv.handed_off_at if conv else None,
        qualification_score=conv.qualification_score if conv else None,
        context_summary=conv.context_summary if conv else None,
        total_tokens_used=int(conv.total_tokens_used or 0) if conv else 0,
        reason=reason,
        can_take_over=active and whatsapp.may_mark_read(principal, lead),
    )


async def take_over(
    session: AsyncSession, principal: Principal, lead_id: uuid.UUID
) -> AiConversation:
    """A member takes the conversation from the agent: it goes silent here."""
    principal.require("messages:write")
    lead = await leads_service.get_lead(session, principal, lead_id)
    if not whatsapp.may_mark_read(principal, lead):
        raise NotFound("No lead with that id.", code="lead_not_found")
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"ai_agent:{lead.id}"}
    )
    conv = await conversation_for(session, principal.org(), lead.id)
    assert conv is not None
    if conv.status == "taken_over" and conv.handed_off_to == principal.user_id:
        return conv
    before = conv.status
    conv.status = "taken_over"
    conv.handed_off_to = principal.user_id
    conv.handed_off_at = clock.now()
    await session.flush()
    await record_activity(
        session,
        lead,
        user_id=principal.user_id,
        activity_type=TAKE_OVER_ACTIVITY,
        title=f"{principal.user.full_name} took over from the AI agent"[:255],
        metadata={"conversation_id": str(conv.id), "from_status": before},
    )
    await audit.record_by(
        session, principal, "take_over", "ai_conversation", conv.id,
        {"status": {"old": before, "new": "taken_over"}, "lead_id": str(lead.id)},
    )  # fmt: skip
    return conv


async def usage(session: AsyncSession, principal: Principal, settings: Settings) -> dict[str, Any]:
    principal.require("settings:manage")
    config = await ai_settings.load_config(session, settings, principal.org())
    used = await tokens_this_month(session, principal.org())
    budget = config.monthly_token_budget
    return {
        "tokens_this_month": used,
        "monthly_token_budget": budget,
        "budget_spent": budget is not None and used >= budget,
        "provider": config.provider,
    }


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


async def export_ai_data(session: AsyncSession, principal: Principal) -> dict[str, Any]:
    """Everything the assistant keeps for the organization, as JSON (admins)."""
    principal.require("settings:manage")
    org_id = principal.org()

    def rows(objs: Sequence[Any], skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        return [
            {c.key: _iso(getattr(o, c.key)) for c in o.__mapper__.column_attrs if c.key not in skip}
            for o in objs
        ]

    convs = (
        (
            await session.execute(
                select(AiConversation)
                .where(AiConversation.organization_id == org_id)
                .order_by(AiConversation.created_at)
            )
        )
        .scalars()
        .all()
    )
    data = (
        (
            await session.execute(
                select(AiTrainingData)
                .where(AiTrainingData.organization_id == org_id)
                .order_by(AiTrainingData.created_at)
            )
        )
        .scalars()
        .all()
    )
    models = (
        (
            await session.execute(
                select(AiSentimentModel).where(AiSentimentModel.organization_id == org_id)
            )
        )
        .scalars()
        .all()
    )
    org = await session.get(Organization, org_id)
    await audit.record_by(
        session,
        principal,
        "export",
        "ai_data",
        org_id,
        {"conversations": len(convs), "training_data": len(data)},
    )
    return {
        "organization_id": str(org_id),
        "exported_at": clock.now().isoformat(),
        "agent_settings": settings_of(org.settings if org else None).as_dict(),
        "ai_conversations": rows(convs),
        "ai_training_data": rows(data),
        "ai_sentiment_models": rows(models, skip=("artifact",)),
    }


async def delete_ai_data(session: AsyncSession, principal: Principal) -> dict[str, int]:
    """Delete the organization's AI conversations, training data (corrections, approved
    examples, agent turns) and sentiment model (admins). The agent's settings stay."""
    principal.require("settings:manage")
    org_id = principal.org()
    counts: dict[str, int] = {}
    for name, model in (
        ("ai_conversations", AiConversation),
        ("ai_training_data", AiTrainingData),
        ("ai_sentiment_models", AiSentimentModel),
    ):
        result = await session.execute(delete(model).where(model.organization_id == org_id))
        counts[name] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    await audit.record_by(session, principal, "delete", "ai_data", org_id, counts)
    return counts
