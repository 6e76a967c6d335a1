"""The page kit: what every HTML page of every domain stands on, so that no page repeats it.

A domain's ``pages.py`` (or ``pages/`` package) declares ``router = page_router()`` and its
routes take what they need as dependencies:

- ``SignedIn`` / ``Member``: the signed-in frame (:class:`Shell`: principal, organization,
  memberships, CSRF token, language). Nobody signed in → a redirect to ``/login``; signed in
  outside any organization (``Member``) → a redirect to ``/``. On a form post the CSRF token is
  checked first: a wrong one is a 403 page, never a silent redirect.
- load-or-404: a domain dependency (e.g. ``leads.pages.LeadInPage``) that raises
  :class:`PageError` or lets the service's ``NotFound`` through; the kit renders it.
- Any ``AppError`` that escapes a page becomes an HTML error page in the shell (404, 403…),
  never problem+json.

The savepoint rule, structurally: a page that answers with an error status (a form shown again
with its messages: 422, 409, 403…) through :func:`render` rolls the request's transaction back,
so a service's half-done writes are never saved. A page that carries on after a failed call
(a bulk action, a flash and a redirect) wraps that call in :func:`attempt`, which rolls back
to before it. No page writes ``begin_nested()`` itself (a test checks).

The frame's organization data comes from the ``FrameSource`` the application installs
(``app.state.frame_source``, from ``auth``): this kit imports no domain.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, pass_context
from jinja2.runtime import Context
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.config import Settings
from lovedcrm.core.deps import (
    SESSION_COOKIE,
    SessionDep,
    SettingsDep,
    authenticate,
    roll_back_request,
)
from lovedcrm.core.errors import AppError, Unauthorized
from lovedcrm.core.principal import Principal
from lovedcrm.web.i18n import (
    DEFAULT_LOCALE,
    LANG_COOKIE,
    LANGUAGE_NAMES,
    N_,
    Localizer,
    choose_locale,
    localizer_for,
)
from lovedcrm.web.problems import translate_text

T = TypeVar("T")

FLASH_COOKIE = "lovedcrm_flash"
COLOR = re.compile(r"#[0-9a-fA-F]{6}")
DEFAULT_ACCENT = "#6366f1"
_PACKAGE = Path(__file__).parent.parent


# --- templates: the kit's own, then each domain's under its package name --------------------


def _domain_template_folders() -> dict[str, FileSystemLoader]:
    """``<package>/templates`` of every domain package, served as ``<package>/<name>``
    (``leads/list.html`` is ``lovedcrm/leads/templates/list.html``)."""
    return {
        folder.parent.name: FileSystemLoader(str(folder))
        for folder in sorted(_PACKAGE.glob("*/templates"))
        if folder.parent.name != "web" and folder.is_dir()
    }


templates = Jinja2Templates(
    env=Environment(
        loader=ChoiceLoader(
            [
                FileSystemLoader(str(Path(__file__).parent / "templates")),
                PrefixLoader(_domain_template_folders()),
            ]
        ),
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
        return translate_text(_loc(ctx).gettext, str(text)) if text else ""

    env.filters["tr"] = _tr
    for name in ("money", "number", "date", "datetime", "reltime", "phone"):
        env.filters[name] = fmt(name)


_install()


# --- the request's language and flash messages ----------------------------------------------


def localizer(request: Request, org_settings: dict[str, Any] | None = None) -> Localizer:
    settings = dict(org_settings or {})
    locale = choose_locale(
        request.cookies.get(LANG_COOKIE),
        settings.get("locale"),
        request.headers.get("accept-language"),
    )
    return localizer_for(locale, settings)


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


def redirect(url: str, text: str, kind: str = "success") -> RedirectResponse:
    """A 303 to ``url`` (after a form post) that shows ``text`` there once (see ``flash``)."""
    response = RedirectResponse(url, status_code=303)
    flash(response, text, kind)
    return response


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


def render(
    request: Request,
    name: str,
    status_code: int = 200,
    *,
    i18n: Localizer | None = None,
    **ctx: Any,
) -> HTMLResponse:
    """Render a page; flash messages waiting in the cookie are shown once. An error status
    (≥ 400) rolls the request's transaction back: what the page shows was not saved."""
    if status_code >= 400:
        roll_back_request(request)
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


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def parse_uuid(value: str | None) -> uuid.UUID | None:
    """An id from a form or a URL, or None when it is not one."""
    if not value:
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


async def attempt(session: AsyncSession, call: Awaitable[T]) -> T:
    """Run one service call that the page may catch an ``AppError`` from and carry on: on
    error the writes it made are rolled back (to a savepoint) and the error re-raised."""
    async with session.begin_nested():
        return await call


# --- the signed-in frame ---------------------------------------------------------------------


@dataclass(frozen=True)
class OrgView:
    """An organization as the frame shows it (name, brand, language, settings)."""

    id: uuid.UUID
    name: str
    slug: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class FrameData:
    org: OrgView | None
    memberships: list[tuple[str, OrgView]]  # (role, organization) of each active membership
    csrf: str


class FrameSource(Protocol):
    """What the frame needs beyond the principal: installed by the application
    (``app.state.frame_source``)."""

    async def __call__(
        self, request: Request, session: AsyncSession, settings: Settings, principal: Principal
    ) -> FrameData: ...


def accent_of(org: OrgView | None) -> str:
    """The organization's primary color when it is a valid ``#RRGGBB``, else the default."""
    value = org.settings.get("primary_color") if org is not None else None
    return value if isinstance(value, str) and COLOR.fullmatch(value) else DEFAULT_ACCENT


@dataclass
class Shell:
    """What the frame around every signed-in page needs."""

    principal: Principal
    org: OrgView | None
    memberships: list[tuple[str, OrgView]]
    csrf: str
    i18n: Localizer

    def context(self, active: str) -> dict[str, Any]:
        org = self.org
        logo = bool(org is not None and org.settings.get("logo"))
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


class LoginRequired(Exception):
    """Nobody is signed in (or the session ended): the page redirects to the log-in."""


class NoOrganization(Exception):
    """Signed in, but outside any organization: the page redirects home."""


class PageError(Exception):
    """A page that cannot be shown, in the reader's words (``title`` and ``message`` are
    catalog msgids), with a way back."""

    def __init__(
        self,
        status: int,
        title: str,
        message: str,
        *,
        back_url: str = "/",
        back_label: str = "Go to the home page",
    ) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message
        self.back_url, self.back_label = back_url, back_label


async def current_frame(
    request: Request, session: AsyncSession, settings: Settings
) -> Shell | None:
    """The signed-in frame of this request, or None when nobody is signed in. Once per
    request. For anything but GET/HEAD the CSRF token is checked (a 403 if wrong)."""
    cached = getattr(request.state, "frame", None)
    if isinstance(cached, Shell):
        return cached
    if not request.cookies.get(SESSION_COOKIE):
        return None
    try:
        principal = await authenticate(request, session, settings, None)
    except Unauthorized:
        return None
    except AppError:
        if request.method in ("GET", "HEAD"):
            return None
        raise
    source: FrameSource = request.app.state.frame_source
    data = await source(request, session, settings, principal)
    loc = localizer(request, data.org.settings if data.org else None)
    request.state.i18n = loc
    frame = Shell(
        principal=principal,
        org=data.org,
        memberships=data.memberships,
        csrf=data.csrf,
        i18n=loc,
    )
    request.state.frame = frame
    refusal = getattr(request.state, "page_refusal", None)
    if isinstance(refusal, AppError):
        # Authenticated, but the plan leaves this page's feature out: the error page, in the
        # shell, with the way to upgrade.
        raise refusal
    return frame


async def signed_in(request: Request, session: SessionDep, settings: SettingsDep) -> Shell:
    frame = await current_frame(request, session, settings)
    if frame is None:
        raise LoginRequired()
    return frame


async def member(frame: Annotated[Shell, Depends(signed_in)]) -> Shell:
    if frame.org is None:
        raise NoOrganization()
    return frame


async def maybe_signed_in(
    request: Request, session: SessionDep, settings: SettingsDep
) -> Shell | None:
    return await current_frame(request, session, settings)


SignedIn = Annotated[Shell, Depends(signed_in)]
Member = Annotated[Shell, Depends(member)]
MaybeSignedIn = Annotated[Shell | None, Depends(maybe_signed_in)]


def require(permission: str) -> Callable[..., Coroutine[Any, Any, Shell]]:
    """``Annotated[Shell, Depends(require("settings:manage"))]``: a member holding the
    permission, else the 403 page."""

    async def _dep(frame: Member) -> Shell:
        frame.principal.require(permission)
        return frame

    _dep.__name__ = f"page_require_{permission.replace(':', '_')}"
    return _dep


# --- errors as pages ---------------------------------------------------------------------------

_TITLES = {
    404: (N_("Not found"), N_("This page does not exist, was deleted, or is not visible to you.")),
    403: (
        N_("No access"),
        N_("You do not have permission to do this. Ask an admin of your organization."),
    ),
}


def error_page(request: Request, status: int, title: str, message: str, **ctx: Any) -> Response:
    """An error in the reader's words: inside the shell when someone is signed in."""
    frame = getattr(request.state, "frame", None)
    if isinstance(frame, Shell):
        t = frame.i18n.gettext
        return render(
            request,
            "page_error.html",
            status,
            **frame.context(ctx.pop("active", "")),
            title=t(title),
            message=t(message),
            back_url=ctx.pop("back_url", "/"),
            back_label=t(ctx.pop("back_label", "Go to the home page")),
        )
    loc = localizer(request)
    return render(
        request, "message.html", status, i18n=loc, title=loc.gettext(title), message=message
    )


def _page_response(request: Request, exc: Exception) -> Response | None:
    if isinstance(exc, LoginRequired):
        return RedirectResponse("/login", status_code=303)
    if isinstance(exc, NoOrganization):
        return RedirectResponse("/", status_code=303)
    if isinstance(exc, PageError):
        return error_page(
            request,
            exc.status,
            exc.title,
            exc.message,
            back_url=exc.back_url,
            back_label=exc.back_label,
        )
    if isinstance(exc, AppError) and exc.extra.get("upgrade_url"):
        # A plan's refusal (a feature left out, a limit reached): its reason and the way on.
        return error_page(
            request,
            exc.status,
            exc.title,  # catalog msgids: "Not in your plan", "Plan limit reached"…
            exc.detail,
            back_url=exc.extra["upgrade_url"],
            back_label=N_("See plans and billing"),
        )
    if isinstance(exc, AppError):
        title, message = _TITLES.get(exc.status, (N_("Something went wrong"), exc.detail))
        return error_page(request, exc.status, title, message)
    return None


class PageRoute(APIRoute):
    """A route whose failures are pages: redirects to log in, or an error page in the shell."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except (LoginRequired, NoOrganization, PageError, AppError) as exc:
                # The dependencies' exit runs after this handler returns: whatever the page
                # wrote before failing must not be committed with the error page.
                roll_back_request(request)
                response = _page_response(request, exc)
                if response is None:  # pragma: no cover - every listed type has a page
                    raise
                return response

        return page_handler


def page_router(**kwargs: Any) -> APIRouter:
    """The router of a domain's pages: not in the OpenAPI schema, failures as pages."""
    return APIRouter(include_in_schema=False, route_class=PageRoute, **kwargs)
