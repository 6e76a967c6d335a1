"""Outgoing webhooks react to every public event: one delivery job per subscription that
wants it, queued in the transaction of the change (``service.enqueue_deliveries``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.events import ALL_PUBLIC, DomainEvent, subscriber
from lovedcrm.webhooks import service


@subscriber(ALL_PUBLIC)
async def deliver(session: AsyncSession, event: DomainEvent) -> None:
    await service.enqueue_deliveries(session, event)
