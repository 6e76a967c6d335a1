"""Rendering pages: the Jinja2 environment (gettext, format filters), the shell's context,
the language of a request and flash messages.

Every page is rendered with ``i18n`` (a :class:`~lovedcrm.web.i18n.Localizer`) in its
context; the ``_``/``gettext``/``ngettext`` callables and the ``money``, ``number``,
``date``, ``datetime``, ``reltime`` and ``phone`` filters read it from there, so one
environment serves requests in different languages at once.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, pass_context
from jinja2.runtime import Context
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth import service as auth_service
from lovedcrm.config import Settings
from lovedcrm.core import security
from lovedcrm.core.deps import SESSION_COOKIE, get_principal
from lovedcrm.core.errors import AppError
from lovedcrm.core.principal import Principal
from lovedcrm.organizations.models import Organization
from lovedcrm.web.i18n import (
    DEFAULT_LOCALE,
    LANG_COOKIE,
    LANGUAGE_NAMES,
    Localizer,
    choose_locale,
    localizer_for,
)

FLASH_COOKIE = "lovedcrm_flash"
COLOR = re.compile(r"#[0-9a-fA-F]{6}")
DEFAULT_ACCENT = "#6366f1"

templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
    )
)
_default_localizer = Localizer(locale=DEFAULT_LOCALE)


def _loc(ctx: Context) -> Localizer:
    value = ctx.get("i18n")
    return value if isinstance(value, Localizer) else _default_localizer


# Jinja's newstyle wrappers call these with the context, then interpolate (escaped).
@pass_context
def _gettext(ctx: Context, message: str) -> str:
    return _loc(ctx).gettext(message)


@pass_context
def _ngettext(ctx: Context, singular: str, plural: str, n: int) -> str:
    return _loc(ctx).ngettext(singular, plural, n)


def _install() -> None:
    env = templates.env
    # newstyle: autoescaped interpolation; the callables read the request's Localizer.
    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals["LANGUAGE_NAMES"] = LANGUAGE_NAMES

    def fmt(name: str) -> Any:
        @pass_context
        def _filter(ctx: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
            return getattr(_loc(ctx), name)(value, *args, **kwargs)

        return _filter

    @pass_context
    def _tr(ctx: Context, text: Any) -> str:
        """A dynamic text (a service's error message) in the catalog, else as it is."""
        return _loc(ctx).gettext(str(text)) if text else ""

    env.filters["tr"] = _tr
    for name in ("money", "number", "date", "datetime", "reltime", "phone"):
        env.filters[name] = fmt(name)


_install()


# --- the request's language ----------------------------------------------------------------


def localizer(request: Request, org: Organization | None = None) -> Localizer:
    org_settings = dict(org.settings or {}) if org is not None else {}
    locale = choose_locale(
        request.cookies.get(LANG_COOKIE),
        org_settings.get("locale"),
        request.headers.get("accept-language"),
    )
    return localizer_for(locale, org_settings)


# --- flash messages -------------------------------------------------------------------------


def flash(response: Response, text: str, kind: str = "success") -> None:
    """A message shown once, on the next page (a toast). Not a secret: plain base64 JSON."""
    payload = json.dumps([{"kind": kind, "text": text[:300]}]).encode()
    response.set_cookie(
        FLASH_COOKIE,
        base64.urlsafe_b64encode(payload).decode(),
        max_age=60,
        httponly=True,
        samesite="lax",
        path="/",
    )


def _read_flash(request: Request) -> list[dict[str, str]]:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return []
    try:
        items = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, TypeError):
        return []
    if not isinstance(items, list):
        return []
    out = []
    for item in items[:5]:
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            kind = item.get("kind") if item.get("kind") in ("success", "error", "info") else "info"
            out.append({"kind": str(kind), "text": item["text"][:300]})
    return out


# --- rendering ------------------------------------------------------------------------------


def render(
    request: Request,
    name: str,
    status_code: int = 200,
    *,
    i18n: Localizer | None = None,
    **ctx: Any,
) -> HTMLResponse:
    """Render a page; flash messages waiting in the cookie are shown once."""
    loc = i18n or getattr(request.state, "i18n", None) or localizer(request)
    messages = _read_flash(request)
    response: HTMLResponse = templates.TemplateResponse(
        request,
        name,
        {"i18n": loc, "lang": loc.tag, "flashes": messages, **ctx},
        status_code=status_code,
    )
    if messages:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


async def web_principal(
    request: Request, session: AsyncSession, settings: Settings
) -> Principal | None:
    """The signed-in person of a page request, or None (no cookie, expired session)."""
    if not request.cookies.get(SESSION_COOKIE):
        return None
    try:
        return await get_principal(request, session, settings, None)
    except AppError:
        return None


def accent_of(org: Organization | None) -> str:
    """The organization's primary color when it is a valid ``#RRGGBB``, else the default."""
    value = (org.settings or {}).get("primary_color") if org is not None else None
    return value if isinstance(value, str) and COLOR.fullmatch(value) else DEFAULT_ACCENT


@dataclass
class Shell:
    """What the frame around every signed-in page needs."""

    principal: Principal
    org: Organization | None
    memberships: list[Any]
    csrf: str
    i18n: Localizer

    def context(self, active: str) -> dict[str, Any]:
        org = self.org
        logo = bool(org is not None and (org.settings or {}).get("logo"))
        return {
            "principal": self.principal,
            "org": org,
            "memberships": self.memberships,
            "csrf": self.csrf,
            "accent": accent_of(org),
            "logo_url": f"/branding/logo/{org.id}" if org is not None and logo else None,
            "active": active,
            "i18n": self.i18n,
        }


async def page_frame(
    request: Request, session: AsyncSession, settings: Settings, *, need_org: bool = False
) -> Shell | None:
    """The signed-in frame of a page or a form post. For anything but GET/HEAD the CSRF token
    is checked first: a wrong one is a 403, never a silent redirect to the log-in page. None
    when nobody is signed in (and, with ``need_org``, outside any organization)."""
    if request.method not in ("GET", "HEAD"):
        if not request.cookies.get(SESSION_COOKIE):
            return None
        await get_principal(request, session, settings, None)
    frame = await shell(request, session, settings)
    if frame is None or (need_org and frame.org is None):
        return None
    return frame


async def shell(request: Request, session: AsyncSession, settings: Settings) -> Shell | None:
    principal = await web_principal(request, session, settings)
    if principal is None:
        return None
    memberships = await auth_service.memberships_of(session, principal.user_id)
    org = next((o for _, o in memberships if o.id == principal.organization_id), None)
    loc = localizer(request, org)
    request.state.i18n = loc
    return Shell(
        principal=principal,
        org=org,
        memberships=memberships,
        csrf=security.csrf_token(settings, request.state.user_session.token_hash),
        i18n=loc,
    )
