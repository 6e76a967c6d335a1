"""What reports keep of other domains' events: one ``analytics_events`` row (spec §8.3) per
event that feeds a report, in the transaction of the change."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.events import DomainEvent, subscriber
from lovedcrm.reports.models import AnalyticsEvent

# Public events that feed reports, with the analytics event_type they become.
ANALYTICS = {
    "lead.created": "lead_created",
    "lead.stage_changed": "pipeline_conversion",
    "lead.converted": "lead_won",
    "lead.lost": "lead_lost",
    "message.received": "message_received",
    "message.sent": "message_sent",
    "call.completed": "call_completed",
}


@subscriber(*ANALYTICS)
async def record_analytics_event(session: AsyncSession, event: DomainEvent) -> None:
    session.add(
        AnalyticsEvent(
            # An id made here: many rows of one unit of work go in as one INSERT (the ORM
            # cannot match database-made UUIDs to its rows, so it would insert one by one).
            id=uuid.uuid4(),
            organization_id=event.organization_id,
            user_id=event.actor_id,
            event_type=ANALYTICS[event.type],
            event_data={"event": event.type, **event.data},
            occurred_at=event.occurred_at,
        )
    )
