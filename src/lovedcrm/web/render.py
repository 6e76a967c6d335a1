"""Transition shim: the pages not yet moved into their domain import from here. Everything
lives in :mod:`lovedcrm.web.kit`."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.config import Settings
from lovedcrm.core.principal import Principal
from lovedcrm.web.kit import (
    COLOR,
    DEFAULT_ACCENT,
    Shell,
    current_frame,
    flash,
    localizer,
    render,
    templates,
)

__all__ = [
    "COLOR",
    "DEFAULT_ACCENT",
    "Shell",
    "flash",
    "localizer",
    "page_frame",
    "render",
    "shell",
    "templates",
    "web_principal",
]


async def page_frame(
    request: Request, session: AsyncSession, settings: Settings, *, need_org: bool = False
) -> Shell | None:
    frame = await current_frame(request, session, settings)
    if frame is None or (need_org and frame.org is None):
        return None
    return frame


async def web_principal(
    request: Request, session: AsyncSession, settings: Settings
) -> Principal | None:
    frame = await current_frame(request, session, settings)
    return frame.principal if frame is not None else None


async def shell(request: Request, session: AsyncSession, settings: Settings) -> Shell | None:
    return await current_frame(request, session, settings)
