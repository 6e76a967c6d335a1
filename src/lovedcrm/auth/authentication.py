"""Credentials → :class:`~lovedcrm.core.principal.Principal`: the application's authenticator.

``create_app`` installs :func:`authenticate_request` as ``app.state.authenticator``; the
request dependencies of ``core.deps`` (``AnyPrincipal``, ``Require``, ``CurrentMember``) call
it once per request.

- A JWT access token names its user session (``sid``) and organization; the session must not
  be revoked or expired.
- An API key (``lcrm_…``) acts for its organization with the permissions of its scopes
  (``auth.api_keys``).
- The web session cookie; on unsafe methods the CSRF token (header ``X-CSRF-Token`` or the
  form field ``csrf_token``) must match it.

The tenant is set on the request's transaction as soon as the organization is known, and the
member's role and effective permissions are read under it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import replace
from typing import Literal

import jwt
from fastapi import Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth import account, api_keys
from lovedcrm.auth import service as auth_service
from lovedcrm.auth.models import OrganizationMember, User, UserSession
from lovedcrm.auth.permissions import effective_permissions
from lovedcrm.config import Settings
from lovedcrm.core import security
from lovedcrm.core.context import request_meta_var
from lovedcrm.core.deps import SESSION_COOKIE, Authenticated, get_database
from lovedcrm.core.errors import Forbidden, Unauthorized
from lovedcrm.core.principal import Person, Principal
from lovedcrm.db.tenant import set_tenant
from lovedcrm.organizations import plans

CSRF_HEADER = "x-csrf-token"
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


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


def person_of(user: User) -> Person:
    return Person(
        id=user.id, email=user.email, full_name=user.full_name, email_verified=user.email_verified
    )


async def principal_for(
    session: AsyncSession,
    user: User,
    organization_id: uuid.UUID | None,
    via: Literal["jwt", "web", "job"],
    session_id: uuid.UUID | None = None,
) -> Principal:
    """The user acting in ``organization_id`` (None when they are no longer an active member
    of it), with the tenant set on ``session``."""
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
        user=person_of(user),
        organization_id=organization_id,
        role=role,
        permissions=perms,
        via=via,
        session_id=session_id,
    )


async def principal_for_member(
    session: AsyncSession,
    organization_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    limit_to: Collection[str] | None = None,
) -> Principal | None:
    """The member ``user_id`` of ``organization_id`` acting in a job (an import, the demo),
    with at most the permissions ``limit_to`` (what they had when they asked for the job);
    None when the account or the membership is no longer active."""
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        return None
    principal = await principal_for(session, user, organization_id, "job")
    if principal.organization_id is None:
        return None
    if limit_to is not None:
        principal = replace(principal, permissions=principal.permissions & frozenset(limit_to))
    return principal


async def _from_session(
    session: AsyncSession,
    user_session: UserSession,
    organization_id: uuid.UUID | None,
    via: Literal["jwt", "web"],
) -> Principal:
    user = await session.get(User, user_session.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("The account is disabled.", code="account_disabled")
    return await principal_for(session, user, organization_id, via, user_session.id)


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
    return await _from_session(session, user_session, org, "jwt")


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
            value = form.get(security.CSRF_FIELD)
            candidate = value if isinstance(value, str) else None
        if not security.csrf_valid(settings, user_session.token_hash, candidate):
            raise Forbidden(
                "The form expired or came from another site. Reload the page.", code="csrf_failed"
            )
    request.state.user_session = user_session
    await account.note_seen(get_database(request).side_engine, user_session)
    return await _from_session(session, user_session, user_session.active_organization_id, "web")


async def _from_api_key(session: AsyncSession, raw: str) -> Authenticated:
    key, person = await api_keys.authenticate(session, raw)
    api_keys.record_usage(key.id, key.organization_id, request_meta_var.get().ip_address)
    principal = Principal(
        user=person,
        organization_id=key.organization_id,
        role=None,
        permissions=api_keys.key_permissions(key.scopes),
        via="api_key",
        api_key_id=key.id,
        scopes=key.scopes,
    )
    return Authenticated(principal, f"key:{key.id}", key.rate_limit_per_hour)


async def authenticate_request(
    request: Request, session: AsyncSession, settings: Settings, token: str | None
) -> Authenticated:
    """The :class:`~lovedcrm.core.deps.Authenticator` of the application; then the plan's
    gate (features by path, read-only when past due: ``organizations.plans.gate``)."""
    result = await _credential(request, session, settings, token)
    try:
        await plans.gate(session, settings, result.principal, request.method, request.url.path)
    except plans.FeatureNotInPlan as refusal:
        if request.url.path.startswith("/api/"):
            raise
        # A page: the kit shows the refusal inside the signed-in shell, once it is built.
        request.state.page_refusal = refusal
    return result


async def _credential(
    request: Request, session: AsyncSession, settings: Settings, token: str | None
) -> Authenticated:
    if token is not None and api_keys.looks_like_key(token):
        return await _from_api_key(session, token)
    if token is not None:
        principal = await _from_jwt(session, settings, token)
    elif cookie := request.cookies.get(SESSION_COOKIE):
        principal = await _from_cookie(request, session, settings, cookie)
    else:
        raise Unauthorized(
            "Authentication required: send 'Authorization: Bearer <token>'.",
            code="not_authenticated",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Authenticated(principal, f"user:{principal.user_id}", settings.user_rate_limit_per_hour)
