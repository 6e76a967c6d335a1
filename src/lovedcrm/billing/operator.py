"""``lovedcrm org set-plan|set-flag|show``: the operator changes an organization's plan or
its flags (features, limits, billing enforcement); every change is audited, and takes
effect in the running servers within ``plans.CACHE_SECONDS`` (no restart)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.billing import service
from lovedcrm.config import Settings
from lovedcrm.organizations import command_line

Action = Callable[[AsyncSession, uuid.UUID], Awaitable[Any]]


async def run(settings: Settings, organization: str, action: Action) -> Any:
    """``action`` in the organization named by slug or id, in its own transaction."""
    return await command_line.in_organization(settings, organization, action)


async def set_plan(settings: Settings, organization: str, plan: str, force: bool) -> Any:
    return await run(settings, organization, lambda s, o: service.set_plan(s, o, plan, force=force))


async def set_flag(settings: Settings, organization: str, name: str, value: str) -> Any:
    return await run(settings, organization, lambda s, o: service.set_flag(s, o, name, value))


async def show(settings: Settings, organization: str) -> Any:
    return await run(settings, organization, lambda s, o: service.describe(s, settings, o))
