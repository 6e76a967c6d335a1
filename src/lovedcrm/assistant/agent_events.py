"""The agent hears a customer: each inbound WhatsApp message on a number the agent answers
queues one agent turn (``assistant.agent_turn``) in the inbound transaction: the model is
never called inside the webhook's processing."""

from __future__ import annotations

import uuid

from sqlalchemy import event as event_api
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from lovedcrm.assistant import agent, agent_settings
from lovedcrm.assistant.agent_jobs import TurnPayload
from lovedcrm.core.events import DomainEvent, subscriber
from lovedcrm.jobs.queue import enqueue
from lovedcrm.organizations.models import Organization

_SETTINGS_KEY = "assistant.agent_settings"


def _forget_settings(sync: Session) -> None:
    sync.info.pop(_SETTINGS_KEY, None)


@subscriber("message.received")
async def queue_agent_turn(session: AsyncSession, event: DomainEvent) -> None:
    try:
        message_id = uuid.UUID(str(event.data.get("message_id")))
    except ValueError:
        return
    if not event.data.get("lead_id"):
        return
    # Read once per unit of work: a batch of inbound messages asks once, not per message.
    known: dict[uuid.UUID, agent_settings.AgentSettings] = session.info.setdefault(
        _SETTINGS_KEY, {}
    )
    if not known:  # forgotten when the unit of work ends
        for name in ("after_commit", "after_rollback"):
            event_api.listen(session.sync_session, name, _forget_settings, once=True)
    if event.organization_id not in known:
        org = await session.get(Organization, event.organization_id)
        known[event.organization_id] = agent_settings.settings_of(org.settings if org else None)
    settings = known[event.organization_id]
    if not settings.enabled or not settings.config_ids:
        return
    await enqueue(
        session,
        agent.JOB,
        TurnPayload(message_id=message_id),
        organization_id=event.organization_id,
        dedupe_key=f"{agent.JOB}:{message_id}",
    )
