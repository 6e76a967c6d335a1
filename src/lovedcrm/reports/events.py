"""What reports keep of other domains' events: one ``analytics_events`` row (spec §8.3) per
event that feeds a report, in the transaction of the change."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.events import DomainEvent, subscriber
from lovedcrm.reports import aggregates
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


def _history(event: DomainEvent) -> dict[str, Any]:
    """The event's ``analytics_events`` row (its columns)."""
    return {
        # An id made here: many rows of one unit of work go in as one INSERT (the ORM
        # cannot match database-made UUIDs to its rows, so it would insert one by one).
        "id": uuid.uuid4(),
        "organization_id": event.organization_id,
        "user_id": event.actor_id,
        "event_type": ANALYTICS[event.type],
        "event_data": {"event": event.type, **event.data},
        "occurred_at": event.occurred_at,
    }


def _new_lead(event: DomainEvent) -> dict[str, Any] | None:
    """The created lead an event carries whole (its API shape), if it does."""
    lead = event.data.get("lead")
    if event.type == "lead.created" and isinstance(lead, dict) and lead.get("id"):
        return lead if lead.get("stage_id") else None
    return None


@subscriber(*ANALYTICS)
async def record_analytics_event(session: AsyncSession, event: DomainEvent) -> None:
    if _new_lead(event) is not None:
        return  # written with the lead's aggregates, in their statement (below)
    session.add(AnalyticsEvent(**_history(event)))


# --- the reports' aggregates (``reports.aggregates``), after the analytics row above --------

# A change of these lead fields changes the lead's facts.
_FACT_FIELDS = frozenset({"stage_id", "assigned_to", "source", "status", "estimated_value"})


@subscriber("lead.created")
async def add_lead_aggregates(session: AsyncSession, event: DomainEvent) -> None:
    lead = _new_lead(event)
    if lead is not None:
        aggregates.add_new_lead(
            session, event.organization_id, lead, event.occurred_at, _history(event)
        )
    elif event.data.get("lead_id"):
        await aggregates.refresh_leads(
            session, event.organization_id, [uuid.UUID(str(event.data["lead_id"]))]
        )


@subscriber("lead.stage_changed")
async def move_lead_stage(session: AsyncSession, event: DomainEvent) -> None:
    to_stage = event.data.get("to_stage_id")
    if to_stage:
        await aggregates.move_stage(
            session,
            event.organization_id,
            uuid.UUID(str(event.data["lead_id"])),
            uuid.UUID(str(to_stage)),
            event.occurred_at,
        )


@subscriber("lead.updated")
async def refresh_lead_facts(session: AsyncSession, event: DomainEvent) -> None:
    changed = set(event.data.get("changed") or ())
    merged = bool(event.data.get("merged_from"))
    if merged or changed & _FACT_FIELDS:
        # A stage change's stays were moved by ``lead.stage_changed``; a merge brought
        # another lead's messages and activities: the whole lead again.
        await aggregates.refresh_leads(
            session, event.organization_id, [uuid.UUID(str(event.data["lead_id"]))], spans=merged
        )


@subscriber("activity.created")
async def count_activity(session: AsyncSession, event: DomainEvent) -> None:
    if event.actor_id is not None and event.data.get("activity_id"):
        await aggregates.count_activity(
            session, event.organization_id, uuid.UUID(str(event.data["activity_id"]))
        )
    if event.data.get("activity_type") == "message" and event.data.get("lead_id"):
        aggregates.refresh_messages(
            session, event.organization_id, uuid.UUID(str(event.data["lead_id"]))
        )
