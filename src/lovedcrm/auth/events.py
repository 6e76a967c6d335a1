"""What ``auth`` does when other domains change: the creator of a new organization becomes
its first admin (``organization.created``, in the same transaction)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth.models import OrganizationMember
from lovedcrm.auth.permissions import Role
from lovedcrm.core.events import DomainEvent, subscriber


@subscriber("organization.created")
async def add_owner(session: AsyncSession, event: DomainEvent) -> None:
    session.add(
        OrganizationMember(
            organization_id=event.organization_id,
            user_id=uuid.UUID(event.data["owner_id"]),
            role=Role.ADMIN.value,
        )
    )
