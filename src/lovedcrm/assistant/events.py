"""What the assistant does when a customer writes: label the message's sentiment and urgency
in the same transaction (well under a millisecond of analysis; ``service.label_inbound``)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.assistant import service, transcription
from lovedcrm.core.events import DomainEvent, subscriber


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


@subscriber("message.received")
async def label_sentiment(session: AsyncSession, event: DomainEvent) -> None:
    message_id = _uuid(event.data.get("message_id"))
    if message_id is None:
        return
    content = event.data.get("content")
    await service.label_inbound(
        session,
        event.organization_id,
        message_id,
        _uuid(event.data.get("lead_id")),
        content if isinstance(content, str) else None,
    )


@subscriber("call.recording_stored")
async def queue_transcription(session: AsyncSession, event: DomainEvent) -> None:
    """A call's recording was stored: transcribe it if the organization asked for that."""
    await transcription.queue_for_recording(session, event.organization_id, dict(event.data))
