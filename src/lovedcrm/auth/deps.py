"""Request dependencies: the unit of work, the authenticated principal, permissions.

Each request runs in ONE transaction (``SessionDep``). Authentication happens inside it and
points it at the principal's organization, so every later query is under that tenant's
row-level security.
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

from lovedcrm.auth import service as auth_service
from lovedcrm.auth.models import User, UserSession
from lovedcrm.config import Settings
from lovedcrm.core import security
from lovedcrm.core.errors import Forbidden, Unauthorized
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import run_after_commit, set_tenant
from lovedcrm.organizations.models import OrganizationMember
from lovedcrm.organizations.permissions import effective_permissions

SESSION_COOKIE = "lovedcrm_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

bearer = HTTPBearer(auto_error=False, description="An access token (JWT) from /api/v1/auth/login")


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
        if not self.can(permission):
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


async def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
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
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def Require(permission: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """``Annotated[Principal, Depends(Require("leads:write"))]``: a member of an organization
    holding the permission, else 403 naming it."""

    async def _dep(principal: CurrentPrincipal) -> Principal:
        principal.org()
        principal.require(permission)
        return principal

    _dep.__name__ = f"require_{permission.replace(':', '_')}"
    return _dep


async def get_member(principal: CurrentPrincipal) -> Principal:
    principal.org()
    return principal


CurrentMember = Annotated[Principal, Depends(get_member)]
