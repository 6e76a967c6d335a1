"""Domain events: one place turns a change into everything that follows from it.

``emit`` runs inside the transaction that made the change, so its consequences commit or
roll back with it: a delivery job per matching webhook subscription, an ``analytics_events``
row where one belongs, and a NOTIFY for live pages (delivered by PostgreSQL only on commit).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.analytics.models import AnalyticsEvent

EVENT_TYPES = (
    "lead.created",
    "lead.updated",
    "lead.stage_changed",
    "lead.assigned",
    "lead.converted",
    "lead.lost",
    "lead.deleted",
    "activity.created",
    "message.received",
    "message.sent",
    "message.status_changed",
    "call.completed",
)

# Events that also feed reports (spec §8.3), with the analytics event_type they become.
ANALYTICS = {
    "lead.created": "lead_created",
    "lead.stage_changed": "pipeline_conversion",
    "lead.converted": "lead_won",
    "lead.lost": "lead_lost",
    "message.received": "message_received",
    "message.sent": "message_sent",
    "call.completed": "call_completed",
}

LIVE_CHANNEL = "lovedcrm_live"


@dataclass(frozen=True)
class DomainEvent:
    type: str
    organization_id: uuid.UUID
    data: dict[str, Any]
    actor_id: uuid.UUID | None = None
    id: str = field(default_factory=lambda: f"evt_{uuid.uuid4().hex}")
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def envelope(self) -> dict[str, Any]:
        """The JSON body webhooks deliver (and live pages receive)."""
        return {
            "id": self.id,
            "type": self.type,
            "timestamp": self.occurred_at.isoformat(),
            "organization_id": str(self.organization_id),
            "data": self.data,
        }


async def emit(session: AsyncSession, event: DomainEvent) -> None:
    if event.type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event.type!r}")
    from lovedcrm.webhooks.service import enqueue_deliveries  # webhooks builds on events

    await enqueue_deliveries(session, event)
    if event.type in ANALYTICS:
        session.add(
            AnalyticsEvent(
                organization_id=event.organization_id,
                user_id=event.actor_id,
                event_type=ANALYTICS[event.type],
                event_data={"event": event.type, **event.data},
                occurred_at=event.occurred_at,
            )
        )
    await notify_live(
        session,
        event.organization_id,
        event.type,
        event_id=event.id,
        **{k: event.data[k] for k in _LIVE_KEYS if event.data.get(k) is not None},
    )


_LIVE_KEYS = ("lead_id", "stage_id", "message_id", "activity_id")


async def notify_live(
    session: AsyncSession,
    organization_id: uuid.UUID,
    kind: str,
    *,
    event_id: str | None = None,
    **ids: Any,
) -> None:
    """Tell live pages (only) that something changed; sent by PostgreSQL on commit.
    Small payload — ids only: pages re-read what they need (NOTIFY is capped at 8000 bytes)."""
    note = {"org": str(organization_id), "type": kind, "id": event_id or f"evt_{uuid.uuid4().hex}"}
    note.update({k: str(v) for k, v in ids.items()})
    await session.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": LIVE_CHANNEL, "payload": json.dumps(note)},
    )
