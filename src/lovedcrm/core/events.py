"""Domain events: a change announced once, and every reaction to it in the same transaction.

``emit`` runs inside the transaction that made the change and calls, in order, each
subscriber registered for the event's type — so every consequence commits or rolls back with
the change — then NOTIFYs live pages (delivered by PostgreSQL only on commit).

Subscribers belong to the domain that reacts, in its ``events.py``, with :func:`subscriber`;
``lovedcrm.wiring`` imports those modules (one visible place), which registers them. This
module imports no domain: it only knows event names and whom to call.

- **Public events** (``EVENT_TYPES``) are the product's contract: outgoing webhooks offer them
  and live pages receive them.
- **Internal events** (``INTERNAL_EVENT_TYPES``) let a domain react to another's change without
  importing it (a new organization gets its default stages and templates); they are never
  delivered outside.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

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

INTERNAL_EVENT_TYPES = (
    "organization.created",
    # Calls ↔ assistant (independent domains): a recording was stored (the assistant may queue
    # its transcription); a transcription is done or refused (calls stores it on the call).
    "call.recording_stored",
    "call.transcribed",
    # For the notification centre: a lead import ended, a webhook subscription was disabled
    # after repeated failures, a subscription's payment failed, a plan's limit is nearly
    # reached (the soft limit, once a month per limit).
    "import.finished",
    "webhook.disabled",
    "billing.payment_failed",
    "plan.soft_limit",
)

ALL_PUBLIC = "*"  # subscribe to every public event

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


Subscriber = Callable[[AsyncSession, DomainEvent], Awaitable[None]]

_subscribers: dict[str, list[Subscriber]] = {}


def subscriber(*event_types: str) -> Callable[[Subscriber], Subscriber]:
    """Register the decorated coroutine for these event types (``ALL_PUBLIC``: every public
    event). Registering the same function twice for a type is a no-op."""
    for event_type in event_types:
        if event_type != ALL_PUBLIC and event_type not in EVENT_TYPES + INTERNAL_EVENT_TYPES:
            raise ValueError(f"unknown event type {event_type!r}")

    def register(fn: Subscriber) -> Subscriber:
        for event_type in event_types:
            handlers = _subscribers.setdefault(event_type, [])
            if fn not in handlers:
                handlers.append(fn)
        return fn

    return register


def subscribers_of(event_type: str) -> list[Subscriber]:
    """Who reacts to ``event_type``, in registration order (``ALL_PUBLIC`` ones first)."""
    wildcard = _subscribers.get(ALL_PUBLIC, []) if event_type in EVENT_TYPES else []
    return [*wildcard, *_subscribers.get(event_type, [])]


async def emit(session: AsyncSession, event: DomainEvent) -> None:
    if event.type not in EVENT_TYPES and event.type not in INTERNAL_EVENT_TYPES:
        raise ValueError(f"unknown event type {event.type!r}")
    for handler in subscribers_of(event.type):
        await handler(session, event)
    if event.type in EVENT_TYPES:
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
    held: list[str] | None = session.info.get(_HELD)
    if held is not None:
        held.append(json.dumps(note))
        return
    await session.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": LIVE_CHANNEL, "payload": json.dumps(note)},
    )


_HELD = "live_notes_held"


def hold_live(session: AsyncSession) -> None:
    """Until :func:`release_live`, ``notify_live`` on this session collects its notes instead
    of sending each (a batch of work sends them all in one statement)."""
    session.info.setdefault(_HELD, [])


async def release_live(session: AsyncSession) -> None:
    """Send the notes held since :func:`hold_live`, in order, in one statement (PostgreSQL
    still delivers them only on commit)."""
    notes: list[str] = session.info.pop(_HELD, None) or []
    if notes:
        await session.execute(
            text("SELECT pg_notify(:channel, n) FROM unnest(CAST(:notes AS text[])) AS n"),
            {"channel": LIVE_CHANNEL, "notes": notes},
        )
