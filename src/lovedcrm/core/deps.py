"""Request dependencies: the unit of work, the authenticated principal, permissions.

Each request runs in ONE transaction (``SessionDep``). Authentication happens inside it and
points it at the principal's organization, so every later query is under that tenant's
row-level security.

How a credential becomes a :class:`Principal` is the ``auth`` domain's business; this module
only asks the :class:`Authenticator` the application installed (``app.state.authenticator``,
set by ``create_app``), so routes of every domain — ``auth``'s own included — share these
dependencies without importing one another.

Credentials: a JWT access token or an API key (``lcrm_…``) as ``Authorization: Bearer``, or
the web session cookie. API keys act for an organization, not for an account: they are
accepted by organization routes (``Require(...)``, ``CurrentMember``) and refused with 403
``api_keys_require_user`` by account routes (``CurrentPrincipal``). Every authenticated
request is counted against its key's or user's hourly rate limit (``core/ratelimit.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.config import Settings
from lovedcrm.core import ratelimit
from lovedcrm.core.errors import Forbidden
from lovedcrm.core.principal import Principal
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import run_after_commit

SESSION_COOKIE = "lovedcrm_session"

bearer = HTTPBearer(
    auto_error=False,
    description="An access token (JWT) from /api/v1/auth/login, or an API key (lcrm_…) "
    "from /api/v1/api-keys",
)


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


# The dependencies are coroutines: FastAPI runs a plain function dependency in its thread
# pool, a hand-off per request for what is an attribute read.
async def get_settings_dep(request: Request) -> Settings:
    return settings_of(request)


async def database_dep(request: Request) -> Database:
    return get_database(request)


def roll_back_request(request: Request) -> None:
    """Make the request's transaction roll back instead of committing when the route returns
    normally — what a page that answers with an error (a form shown again with its messages)
    asks for, so that a service's half-done writes are never saved (``web.kit.render``)."""
    request.state.rollback_only = True


@asynccontextmanager
async def unit_of_work(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: commit when the block ends, roll back if it raises or if
    the route asked for a roll-back (:func:`roll_back_request`); then the after-commit
    actions."""
    db = get_database(request)
    async with db.sessionmaker() as session:
        async with session.begin() as transaction:
            request.state.db_session = session
            yield session
            if getattr(request.state, "rollback_only", False):
                await transaction.rollback()
                return
        await run_after_commit(session)


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """:func:`unit_of_work` as a dependency (``SessionDep``)."""
    async with unit_of_work(request) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DatabaseDep = Annotated[Database, Depends(database_dep)]
# scope="function": the transaction ends before the response is sent, so a failed commit
# becomes an error response instead of a 200 for a change that did not happen.
SessionDep = Annotated[AsyncSession, Depends(get_db, scope="function")]


@dataclass(frozen=True)
class Authenticated:
    """What an authenticator answers: the principal and the hourly bucket it counts against
    (``limit`` 0: no limit)."""

    principal: Principal
    bucket: str
    limit: int


class Authenticator(Protocol):
    """Turns a request's credential (``token``: the Bearer value, else None) into a principal,
    inside the request's transaction; raises ``Unauthorized``/``Forbidden``."""

    async def __call__(
        self, request: Request, session: AsyncSession, settings: Settings, token: str | None
    ) -> Authenticated: ...


async def authenticate(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """Any credential: a JWT, an API key, or the web session cookie; then the rate limit.
    Once per request: a second call (a route needing both kinds) reuses the first result."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    authenticator: Authenticator = request.app.state.authenticator
    token = credentials.credentials if credentials is not None else None
    result = await authenticator(request, session, settings, token)
    if result.limit > 0:
        state = await ratelimit.hit(
            get_database(request).side_engine, result.bucket, result.limit, lease=True
        )
        request.state.ratelimit = state
        ratelimit.enforce(state)
    request.state.principal = result.principal
    return result.principal


async def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """A signed-in person (account routes): an API key is refused with 403."""
    principal = await authenticate(request, session, settings, credentials)
    if principal.via == "api_key":
        raise Forbidden(
            "API keys act for an organization and cannot use account routes: sign in as a person.",
            code="api_keys_require_user",
        )
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
# A person or an API key (organization routes).
AnyPrincipal = Annotated[Principal, Depends(authenticate)]


def permitted(principal: Principal, permission: str) -> Principal:
    """``principal`` if it acts in an organization and holds ``permission``; else 403."""
    principal.org()
    principal.require(permission)
    return principal


async def require_request(request: Request, session: AsyncSession, permission: str) -> Principal:
    """What ``Depends(Require(permission))`` gives a route, for a handler that reads the
    request itself (``core.lean``): the same credentials, authentication and checks."""
    return permitted(
        await authenticate(request, session, settings_of(request), await bearer(request)),
        permission,
    )


def Require(permission: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """``Annotated[Principal, Depends(Require("leads:write"))]``: a member of an organization
    (or an API key) holding the permission (scope), else 403 naming it."""

    async def _dep(principal: AnyPrincipal) -> Principal:
        return permitted(principal, permission)

    _dep.__name__ = f"require_{permission.replace(':', '_')}"
    return _dep


async def get_member(principal: AnyPrincipal) -> Principal:
    principal.org()
    return principal


CurrentMember = Annotated[Principal, Depends(get_member)]
