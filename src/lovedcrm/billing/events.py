"""Billing reacts to a new organization: its 14-day trial of the Pro plan starts."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.billing import service
from lovedcrm.config import get_settings
from lovedcrm.core.events import DomainEvent, subscriber


@subscriber("organization.created")
async def start_trial(session: AsyncSession, event: DomainEvent) -> None:
    await service.start_trial(session, get_settings(), event.organization_id)
