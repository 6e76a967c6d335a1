"""Commands an operator runs against one organization (``lovedcrm org …``,
``lovedcrm whatsapp inject``): find it by slug or id as the database owner (no tenant is known
yet), then act inside its tenant in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from lovedcrm.config import Settings
from lovedcrm.core.errors import NotFound
from lovedcrm.db.engine import create_database
from lovedcrm.db.tenant import tenant_transaction

T = TypeVar("T")


async def in_organization(
    settings: Settings,
    organization: str,
    action: Callable[[AsyncSession, uuid.UUID], Awaitable[T]],
) -> T:
    """Run ``action(session, organization_id)`` in the organization named by slug or id."""
    db = create_database(settings)
    try:
        owner = create_async_engine(db.owner_url)
        try:
            async with owner.connect() as conn:
                org_id = (
                    await conn.execute(
                        text("SELECT id FROM organizations WHERE slug = :s OR id::text = :s"),
                        {"s": organization},
                    )
                ).scalar_one_or_none()
        finally:
            await owner.dispose()
        if org_id is None:
            raise NotFound(f"No organization with slug or id {organization!r}.")
        async with tenant_transaction(db.sessionmaker, org_id) as session:
            return await action(session, org_id)
    finally:
        await db.dispose()
