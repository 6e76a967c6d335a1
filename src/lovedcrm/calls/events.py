"""What calls do when another domain reports on a call: the assistant's transcription of a
recording (``call.transcribed``) is stored on the call and its timeline entry."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.calls import service
from lovedcrm.core.events import DomainEvent, subscriber


@subscriber("call.transcribed")
async def store_transcription(session: AsyncSession, event: DomainEvent) -> None:
    try:
        call_id = uuid.UUID(str(event.data.get("call_id")))
    except ValueError:
        return
    text = event.data.get("text")
    failure = event.data.get("failure")
    await service.store_transcription(
        session,
        event.organization_id,
        call_id,
        text if isinstance(text, str) else None,
        failure if isinstance(failure, str) else None,
    )
