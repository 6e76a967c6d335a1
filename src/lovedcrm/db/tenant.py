"""Tenant-scoped transactions.

Every request and job runs in one transaction opened with the organization (and user) of
its principal. The settings are transaction-local (``set_config(..., true)``), so a pooled
connection never carries a tenant into the next transaction. Policies read them through
``lovedcrm_current_org()`` / ``lovedcrm_current_user()`` (see the first migration).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = structlog.stdlib.get_logger("lovedcrm.db")

_SET = text(
    "SELECT set_config('app.organization_id', :org, true), set_config('app.user_id', :uid, true)"
)


async def set_tenant(
    session: AsyncSession, organization_id: uuid.UUID | None, user_id: uuid.UUID | None = None
) -> None:
    """Point the current transaction at a tenant (``None`` clears it)."""
    await session.execute(
        _SET,
        {
            "org": str(organization_id) if organization_id else "",
            "uid": str(user_id) if user_id else "",
        },
    )


@asynccontextmanager
async def tenant_transaction(
    maker: async_sessionmaker[AsyncSession],
    organization_id: uuid.UUID | None,
    user_id: uuid.UUID | None = None,
) -> AsyncIterator[AsyncSession]:
    """One transaction for one unit of work: commit on success, roll back on error."""
    async with maker() as session:
        async with session.begin():
            await set_tenant(session, organization_id, user_id)
            yield session
        await run_after_commit(session)


AfterCommit = Callable[[], Awaitable[None]]


def after_commit(session: AsyncSession, action: AfterCommit) -> None:
    """Run ``action`` once the unit of work has committed (mail, notifications). Dropped on
    rollback, so nothing leaves the system for a change that did not happen."""
    session.info.setdefault("after_commit", []).append(action)


async def run_after_commit(session: AsyncSession) -> None:
    actions: list[AfterCommit] = session.info.pop("after_commit", [])
    for action in actions:
        try:
            await action()
        except Exception:  # an after-commit failure must not turn a committed request into an error
            log.exception("after-commit action failed")


async def save_new(session: AsyncSession, row: object) -> None:
    """Insert ``row`` now and read back what the database filled in (defaults, triggers)."""
    session.add(row)
    await session.flush()
    await session.refresh(row)
