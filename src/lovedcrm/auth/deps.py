"""Request dependencies: the unit of work, the authenticated principal, permissions.

Each request runs in ONE transaction (``SessionDep``). Authentication happens inside it and
points it at the principal's organization, so every later query is under that tenant's
row-level security.

Credentials: a JWT access token or an API key (``lcrm_…``) as ``Authorization: Bearer``, or
the web session cookie. API keys act for an organization, not for an account: they are
accepted by organization routes (``Require(...)``, ``CurrentMember``) and refused with 403
``api_keys_require_user`` by account routes (``CurrentPrincipal``). Every authenticated
request is counted against its key's or user's hourly rate limit (``core/ratelimit.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth import api_keys
from lovedcrm.auth import service as auth_service
from lovedcrm.auth.models import User, UserSession
from lovedcrm.config import Settings
from lovedcrm.core import ratelimit, security
from lovedcrm.core.errors import Forbidden, Unauthorized
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import run_after_commit, set_tenant
from lovedcrm.organizations.models import OrganizationMember
from lovedcrm.organizations.permissions import effective_permissions

SESSION_COOKIE = "lovedcrm_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

bearer = HTTPBearer(
    auto_error=False,
    description="An access token (JWT) from /api/v1/auth/login, or an API key (lcrm_…) "
    "from /api/v1/api-keys",
)


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: commit when the route returns, roll back if it raises."""
    db = get_database(request)
    async with db.sessionmaker() as session:
        async with session.begin():
            request.state.db_session = session
            yield session
        await run_after_commit(session)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
# scope="function": the transaction ends before the response is sent, so a failed commit
# becomes an error response instead of a 200 for a change that did not happen.
SessionDep = Annotated[AsyncSession, Depends(get_db, scope="function")]


@dataclass(frozen=True)
class Principal:
    user: User
    organization_id: uuid.UUID | None
    role: str | None
    permissions: frozenset[str]
    via: Literal["jwt", "web", "api_key"]
    session_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def user_id(self) -> uuid.UUID:
        return self.user.id

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def require(self, permission: str) -> None:
        if self.can(permission):
            return
        if self.via == "api_key":
            raise Forbidden(
                f"This API key lacks the '{permission}' scope.",
                code="insufficient_scope",
                headers={
                    "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{permission}"'
                },
                extra={"scope": permission, "permission": permission},
            )
        raise Forbidden(
            f"You do not have the '{permission}' permission.",
            code="permission_denied",
            extra={"permission": permission},
        )

    def org(self) -> uuid.UUID:
        if self.organization_id is None:
            raise Forbidden(
                "You are not a member of any organization. Create one or accept an invitation.",
                code="no_organization",
            )
        return self.organization_id


async def _member(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
) -> OrganizationMember | None:
    result = await session.execute(
        select(OrganizationMember).where(
            OrganizationMember.organization_id == organization_id,
            OrganizationMember.user_id == user_id,
            OrganizationMember.is_active.is_(True),
        )
    )
    return result.scalar_one_or_none()


async def _principal_for(
    session: AsyncSession,
    user_session: UserSession,
    organization_id: uuid.UUID | None,
    via: Literal["jwt", "web"],
) -> Principal:
    user = await session.get(User, user_session.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("The account is disabled.", code="account_disabled")
    await set_tenant(session, organization_id, user.id)
    role, perms = None, frozenset[str]()
    if organization_id is not None:
        member = await _member(session, organization_id, user.id)
        if member is None:
            # Removed from the organization since the token was issued.
            await set_tenant(session, None, user.id)
            organization_id = None
        else:
            role, perms = member.role, effective_permissions(member.role, member.permissions)
    return Principal(
        user=user,
        organization_id=organization_id,
        role=role,
        permissions=perms,
        via=via,
        session_id=user_session.id,
    )


async def _from_jwt(session: AsyncSession, settings: Settings, token: str) -> Principal:
    try:
        claims = security.decode_access_token(settings, token)
        sid = uuid.UUID(claims["sid"])
        org = uuid.UUID(claims["org"]) if claims.get("org") else None
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise Unauthorized("The access token is invalid or expired.", code="invalid_token") from exc
    user_session = await session.get(UserSession, sid)
    if (
        user_session is None
        or user_session.revoked_at is not None
        or user_session.expires_at <= security.utcnow()
        or str(user_session.user_id) != claims["sub"]
    ):
        raise Unauthorized("The session has ended. Log in again.", code="session_revoked")
    return await _principal_for(session, user_session, org, "jwt")


async def _from_cookie(
    request: Request, session: AsyncSession, settings: Settings, cookie: str
) -> Principal:
    user_session = await auth_service.find_session(session, cookie, "web")
    if user_session is None:
        raise Unauthorized("Your session has ended. Log in again.", code="session_expired")
    if request.method in _UNSAFE:
        candidate = request.headers.get(CSRF_HEADER)
        if candidate is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            candidate = value if isinstance(value, str) else None
        if not security.csrf_valid(settings, user_session.token_hash, candidate):
            raise Forbidden(
                "The form expired or came from another site. Reload the page.", code="csrf_failed"
            )
    request.state.user_session = user_session
    return await _principal_for(session, user_session, user_session.active_organization_id, "web")


async def _from_api_key(session: AsyncSession, raw: str) -> tuple[Principal, int]:
    key, user = await api_keys.authenticate(session, raw)
    scopes = key.scopes
    api_keys.record_usage(key.id, key.organization_id)
    principal = Principal(
        user=user,
        organization_id=key.organization_id,
        role=None,
        permissions=api_keys.key_permissions(scopes),
        via="api_key",
        api_key_id=key.id,
        scopes=scopes,
    )
    return principal, key.rate_limit_per_hour


async def _count_request(request: Request, bucket: str, limit: int) -> None:
    """One request against the hourly limit; 429 once it is spent. The state is left in
    ``request.state`` for the RateLimit-* response headers."""
    if limit <= 0:
        return
    state = await ratelimit.hit(get_database(request).side_engine, bucket, limit)
    request.state.ratelimit = state
    ratelimit.enforce(state)


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
    if credentials is not None and api_keys.looks_like_key(credentials.credentials):
        principal, limit = await _from_api_key(session, credentials.credentials)
        bucket = f"key:{principal.api_key_id}"
    else:
        if credentials is not None:
            principal = await _from_jwt(session, settings, credentials.credentials)
        elif cookie := request.cookies.get(SESSION_COOKIE):
            principal = await _from_cookie(request, session, settings, cookie)
        else:
            raise Unauthorized(
                "Authentication required: send 'Authorization: Bearer <token>'.",
                code="not_authenticated",
                headers={"WWW-Authenticate": "Bearer"},
            )
        limit, bucket = settings.user_rate_limit_per_hour, f"user:{principal.user_id}"
    await _count_request(request, bucket, limit)
    request.state.principal = principal
    return principal


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


def Require(permission: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """``Annotated[Principal, Depends(Require("leads:write"))]``: a member of an organization
    (or an API key) holding the permission (scope), else 403 naming it."""

    async def _dep(principal: AnyPrincipal) -> Principal:
        principal.org()
        principal.require(permission)
        return principal

    _dep.__name__ = f"require_{permission.replace(':', '_')}"
    return _dep


async def get_member(principal: AnyPrincipal) -> Principal:
    principal.org()
    return principal


CurrentMember = Annotated[Principal, Depends(get_member)]
