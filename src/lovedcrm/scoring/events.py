"""What scoring does when leads change: rescore the lead soon (debounced per lead,
``service.schedule_rescore``) after it, its activities or its messages change."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.events import DomainEvent, subscriber
from lovedcrm.scoring import service

RESCORE_ON = (
    "lead.created",
    "lead.updated",
    "lead.stage_changed",
    "lead.assigned",
    "activity.created",
    "message.received",
    "message.sent",
)


@subscriber(*RESCORE_ON)
async def rescore_soon(session: AsyncSession, event: DomainEvent) -> None:
    lead_id = event.data.get("lead_id")
    if not lead_id:
        return  # a message not linked to a lead
    try:
        parsed = uuid.UUID(str(lead_id))
    except ValueError:
        return
    await service.schedule_rescore(session, event.organization_id, parsed)
