"""Accounts: sign-up, log-in, sessions and tokens, email verification, password reset.

Services never commit: the request (or job) that calls them owns the transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.auth.models import OrganizationMember, User, UserSession, UserToken
from lovedcrm.config import Settings
from lovedcrm.core import security
from lovedcrm.core.context import request_meta_var
from lovedcrm.core.emails import normalize_email, valid_email
from lovedcrm.core.errors import (
    Conflict,
    NotFound,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from lovedcrm.core.mail import get_mailer
from lovedcrm.core.principal import Principal
from lovedcrm.db.tenant import after_commit, set_tenant
from lovedcrm.organizations import service as organizations
from lovedcrm.organizations.models import Organization

PASSWORD_MIN = 10


def check_password(password: str, *, email: str | None = None) -> None:
    """Raise ValidationFailed naming every rule the password breaks."""
    problems = []
    if len(password) < PASSWORD_MIN:
        problems.append(f"at least {PASSWORD_MIN} characters")
    if not re.search(r"[A-Za-z]", password):
        problems.append("at least one letter")
    if not re.search(r"[^A-Za-z]", password):
        problems.append("at least one digit or symbol")
    if email and password.strip().lower() == email.strip().lower():
        problems.append("different from your email")
    if problems:
        raise ValidationFailed(
            "The password must have " + ", ".join(problems) + ".",
            code="weak_password",
            extra={"errors": [{"field": "password", "message": p} for p in problems]},
        )


@dataclass
class IssuedSession:
    session: UserSession
    token: str  # the opaque refresh token (API) or session cookie (web), shown once


async def user_of(session: AsyncSession, principal: Principal) -> User:
    """The account behind a principal (already in the session's identity map after
    authentication, so no query)."""
    user = await session.get(User, principal.user_id)
    if user is None:
        raise Unauthorized("The account no longer exists.", code="account_disabled")
    return user


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == normalize_email(email)))
    return result.scalar_one_or_none()


async def signup(
    session: AsyncSession,
    settings: Settings,
    *,
    email: str,
    password: str,
    full_name: str,
    organization_name: str,
    phone: str | None = None,
    locale: str = "pt-BR",
) -> tuple[User, Organization]:
    email = valid_email(email)
    check_password(password, email=email)
    if await get_user_by_email(session, email) is not None:
        raise Conflict(
            "An account with this email already exists. Log in instead.", code="email_taken"
        )
    user = User(
        email=email,
        password_hash=security.hash_password(password),
        full_name=full_name.strip(),
        phone=phone,
        is_active=True,
        email_verified=False,
    )
    session.add(user)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:  # a concurrent sign-up with the same email
        raise Conflict(
            "An account with this email already exists. Log in instead.", code="email_taken"
        ) from exc
    org = await organizations.create_organization(
        session, name=organization_name, owner_id=user.id, settings_override={"locale": locale}
    )
    await audit.record(
        session,
        action="signup",
        resource_type="user",
        resource_id=user.id,
        organization_id=org.id,
        user_id=user.id,
        changes={"after": {"email": email, "organization": org.slug}},
    )
    await send_verification_email(session, settings, user)
    return user, org


async def _issue_user_token(
    session: AsyncSession, settings: Settings, user: User, purpose: str
) -> str:
    token = security.new_token()
    hours = settings.email_token_hours if purpose == "verify_email" else 2
    session.add(
        UserToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=security.token_hash(token),
            expires_at=security.utcnow() + timedelta(hours=hours),
        )
    )
    await session.flush()
    return token


async def _mail_token_link(
    session: AsyncSession,
    settings: Settings,
    user: User,
    purpose: str,
    path: str,
    subject: str,
    body: Callable[[str], str],
) -> None:
    """Issue a single-use token for ``purpose`` and, once the transaction commits, mail the
    user a link to ``path`` carrying it (``body`` writes the text around the link)."""
    token = await _issue_user_token(session, settings, user, purpose)
    link = f"{settings.base_url}{path}?token={token}"
    mailer, to = get_mailer(settings), user.email
    after_commit(session, lambda: mailer.send(to, subject, body(link)))


async def send_verification_email(session: AsyncSession, settings: Settings, user: User) -> None:
    await _mail_token_link(
        session,
        settings,
        user,
        "verify_email",
        "/verify-email",
        "Confirme seu email / Confirm your email — Loved CRM",
        lambda link: (
            f"Olá! Confirme seu email abrindo este link:\n{link}\n\n"
            f"Hello! Confirm your email by opening this link:\n{link}\n"
        ),
    )


async def _consume_user_token(session: AsyncSession, token: str, purpose: str) -> UserToken:
    """Single use: the row is marked used in the same statement that finds it."""
    result = await session.execute(
        update(UserToken)
        .where(
            UserToken.token_hash == security.token_hash(token),
            UserToken.purpose == purpose,
            UserToken.used_at.is_(None),
            UserToken.expires_at > func.now(),
        )
        .values(used_at=func.now())
        .returning(UserToken)
    )
    row = result.scalar_one_or_none()
    if row is None:
        raise Unauthorized("This link is invalid, expired or already used.", code="invalid_token")
    return row


async def verify_email(session: AsyncSession, token: str) -> User:
    row = await _consume_user_token(session, token, "verify_email")
    user = await session.get(User, row.user_id)
    assert user is not None
    user.email_verified = True
    await audit.record(
        session, action="email_verified", resource_type="user", resource_id=user.id, user_id=user.id
    )
    return user


async def request_password_reset(session: AsyncSession, settings: Settings, email: str) -> None:
    """Always succeeds from the caller's view, so it does not reveal which emails exist."""
    user = await get_user_by_email(session, email)
    if user is None or not user.is_active:
        return
    await _mail_token_link(
        session,
        settings,
        user,
        "reset_password",
        "/reset-password",
        "Redefinir senha / Reset your password — Loved CRM",
        lambda link: (
            f"Para criar uma nova senha, abra:\n{link}\n\nTo choose a new password, open:\n{link}\n"
            "Se não foi você, ignore este email. / If this wasn't you, ignore this email.\n"
        ),
    )
    await audit.record(
        session,
        action="password_reset_requested",
        resource_type="user",
        resource_id=user.id,
        user_id=user.id,
    )


async def reset_password(session: AsyncSession, token: str, new_password: str) -> User:
    row = await _consume_user_token(session, token, "reset_password")
    user = await session.get(User, row.user_id)
    assert user is not None
    check_password(new_password, email=user.email)
    user.password_hash = security.hash_password(new_password)
    # A new password ends every existing session.
    await session.execute(
        update(UserSession)
        .where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    await audit.record(
        session, action="password_reset", resource_type="user", resource_id=user.id, user_id=user.id
    )
    return user


async def change_password(session: AsyncSession, user: User, current: str, new: str) -> None:
    if not security.verify_password(user.password_hash, current):
        raise Unauthorized("The current password is wrong.", code="wrong_password")
    check_password(new, email=user.email)
    user.password_hash = security.hash_password(new)
    await audit.record(
        session,
        action="password_changed",
        resource_type="user",
        resource_id=user.id,
        user_id=user.id,
    )


async def _login_failures(
    session: AsyncSession, settings: Settings, email: str, ip: str | None
) -> tuple[int, int]:
    """How many failed log-ins for this email from this address in the window, and the
    seconds until the oldest of them leaves it."""
    window = settings.login_failure_window_minutes * 60
    row = (
        await session.execute(
            text(
                "SELECT n, retry_after"
                " FROM lovedcrm_login_failures(:email, CAST(:ip AS inet), :window)"
            ),
            {"email": email, "ip": ip, "window": window},
        )
    ).one()
    return int(row.n), int(row.retry_after or 0)


async def memberships_of(
    session: AsyncSession, user_id: uuid.UUID
) -> list[tuple[OrganizationMember, Organization]]:
    """The user's active memberships across organizations (RLS: own_memberships policy)."""
    result = await session.execute(
        select(OrganizationMember, Organization)
        .join(Organization, Organization.id == OrganizationMember.organization_id)
        .where(OrganizationMember.user_id == user_id, OrganizationMember.is_active.is_(True))
        .order_by(OrganizationMember.joined_at)
    )
    return [(m, o) for m, o in result.all()]


async def login(
    session: AsyncSession,
    settings: Settings,
    *,
    email: str,
    password: str,
    kind: str,
    organization_id: uuid.UUID | None = None,
) -> tuple[User, IssuedSession]:
    email = normalize_email(email)
    ip = request_meta_var.get().ip_address
    failures, retry_after = await _login_failures(session, settings, email, ip)
    if failures >= settings.login_max_failures:
        raise TooManyRequests(
            "Too many failed log-ins. Wait a few minutes and try again.",
            code="login_throttled",
            headers={"Retry-After": str(max(retry_after, 1))},
        )
    user = await get_user_by_email(session, email)
    if (
        user is None
        or not security.verify_password(user.password_hash, password)
        or not user.is_active
    ):
        await audit.record_detached(
            session,
            action="login",
            resource_type="user",
            user_id=user.id if user else None,
            changes={"email": email},
            success=False,
            failure_reason="inactive" if user and not user.is_active else "bad_credentials",
            risk_score=min(100, 10 * (failures + 1)),
        )
        raise Unauthorized("Wrong email or password.", code="invalid_credentials")
    if security.password_needs_rehash(user.password_hash):
        user.password_hash = security.hash_password(password)
    user.last_login_at = security.utcnow()
    await set_tenant(session, None, user.id)
    memberships = await memberships_of(session, user.id)
    active_org = None
    if organization_id is not None:
        if organization_id not in {o.id for _, o in memberships}:
            raise Unauthorized("You are not a member of that organization.", code="not_a_member")
        active_org = organization_id
    elif memberships:
        active_org = memberships[0][1].id
    issued = await open_session(session, settings, user, kind=kind, organization_id=active_org)
    await set_tenant(session, active_org, user.id)
    await audit.record(
        session,
        action="login",
        resource_type="user",
        resource_id=user.id,
        organization_id=active_org,
        user_id=user.id,
        changes={"email": email, "kind": kind},
    )
    return user, issued


async def open_session(
    session: AsyncSession,
    settings: Settings,
    user: User,
    *,
    kind: str,
    organization_id: uuid.UUID | None,
) -> IssuedSession:
    token = security.new_token()
    days = settings.web_session_days if kind == "web" else settings.refresh_token_days
    meta = request_meta_var.get()
    row = UserSession(
        user_id=user.id,
        kind=kind,
        token_hash=security.token_hash(token),
        active_organization_id=organization_id,
        ip_address=meta.ip_address,
        user_agent=(meta.user_agent or "")[:1000] or None,
        expires_at=security.utcnow() + timedelta(days=days),
        last_seen_at=security.utcnow(),
    )
    session.add(row)
    await session.flush()
    return IssuedSession(session=row, token=token)


async def find_session(session: AsyncSession, token: str, kind: str) -> UserSession | None:
    result = await session.execute(
        select(UserSession).where(
            UserSession.token_hash == security.token_hash(token),
            UserSession.kind == kind,
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > func.now(),
        )
    )
    return result.scalar_one_or_none()


async def refresh(
    session: AsyncSession, settings: Settings, refresh_token: str
) -> tuple[User, IssuedSession]:
    """Rotate the refresh token: the old one stops working the moment a new one is issued."""
    old = await find_session(session, refresh_token, "api")
    if old is None:
        raise Unauthorized(
            "The refresh token is invalid, expired or revoked.", code="invalid_token"
        )
    user = await session.get(User, old.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("The account is disabled.", code="account_disabled")
    old.revoked_at = security.utcnow()
    issued = await open_session(
        session, settings, user, kind="api", organization_id=old.active_organization_id
    )
    return user, issued


async def revoke_session(session: AsyncSession, session_id: uuid.UUID) -> None:
    await session.execute(
        update(UserSession).where(UserSession.id == session_id).values(revoked_at=func.now())
    )


async def switch_organization(
    session: AsyncSession, user_session: UserSession, organization_id: uuid.UUID
) -> None:
    await set_tenant(session, None, user_session.user_id)
    if organization_id not in {
        o.id for _, o in await memberships_of(session, user_session.user_id)
    }:
        # 404, not 403: whether an organization exists is not the caller's business.
        raise NotFound("No organization with that id among yours.", code="organization_not_found")
    user_session.active_organization_id = organization_id
    await session.flush()
