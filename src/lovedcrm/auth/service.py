"""Accounts: sign-up, log-in, sessions and tokens, email verification, password reset.

Services never commit: the request (or job) that calls them owns the transaction.
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from lovedcrm.audit import security as audit_security
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
from lovedcrm.web.i18n import N_

PASSWORD_MIN = 10
# The rules, as messages (translated piece by piece by the pages and the API).
PASSWORD_RULES = {
    "length": N_("at least 10 characters"),  # PASSWORD_MIN
    "letter": N_("at least one letter"),
    "other": N_("at least one digit or symbol"),
    "email": N_("different from your email"),
}


def check_password(password: str, *, email: str | None = None) -> None:
    """Raise ValidationFailed naming every rule the password breaks."""
    problems = []
    if len(password) < PASSWORD_MIN:
        problems.append(PASSWORD_RULES["length"])
    if not re.search(r"[A-Za-z]", password):
        problems.append(PASSWORD_RULES["letter"])
    if not re.search(r"[^A-Za-z]", password):
        problems.append(PASSWORD_RULES["other"])
    if email and password.strip().lower() == email.strip().lower():
        problems.append(PASSWORD_RULES["email"])
    if problems:
        # "Sentence: item, item." so that pages and the API translate each piece.
        raise ValidationFailed(
            "The password must have: " + ", ".join(problems) + ".",
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
        password_hash=await security.hash_password(password),
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
    user.password_hash = await security.hash_password(new_password)
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
    if not await security.verify_password(user.password_hash, current):
        raise Unauthorized("The current password is wrong.", code="wrong_password")
    check_password(new, email=user.email)
    user.password_hash = await security.hash_password(new)
    await audit.record(
        session,
        action="password_changed",
        resource_type="user",
        resource_id=user.id,
        user_id=user.id,
    )


# The log-in throttle: at most ``login_max_failures`` password checks per (e-mail, client
# address) in a window of ``login_failure_window_minutes`` that starts at the first check.
# The attempt is counted (one atomic statement, on its own autocommit connection so that the
# request's rollback cannot undo it) BEFORE the password is checked: parallel attempts each
# get their own number, and only the first ``login_max_failures`` reach the hash. A successful
# log-in gives its attempt back, so only failures use the budget up.
_COUNT_ATTEMPT = text(
    """
    INSERT INTO login_attempts AS a (bucket, window_start, attempts)
    VALUES (:bucket, now(), 1)
    ON CONFLICT (bucket) DO UPDATE SET
        window_start = CASE WHEN a.window_start <= now() - make_interval(secs => :w)
                            THEN now() ELSE a.window_start END,
        attempts = CASE WHEN a.window_start <= now() - make_interval(secs => :w)
                        THEN 1 ELSE a.attempts + 1 END
    RETURNING a.attempts AS n,
              CEIL(EXTRACT(EPOCH FROM (a.window_start + make_interval(secs => :w) - now())))::int
                  AS retry_after
    """
)
_FORGIVE_ATTEMPT = text(
    "UPDATE login_attempts SET attempts = attempts - 1 WHERE bucket = :bucket AND attempts > 0"
)
_FORGET_OLD_ATTEMPTS = text(
    "DELETE FROM login_attempts WHERE window_start < now() - make_interval(secs => :w)"
)
# Share of log-ins that also delete expired windows (no scheduler needed).
_CLEANUP_PROBABILITY = 0.01


def _attempt_bucket(email: str, ip: str | None) -> str:
    return hashlib.sha256(f"{email}\n{ip or ''}".encode()).hexdigest()


async def _count_login_attempt(
    side_engine: AsyncEngine, settings: Settings, bucket: str
) -> tuple[int, int]:
    """This attempt's number in its window, and the seconds until the window ends."""
    window = settings.login_failure_window_minutes * 60
    async with side_engine.connect() as conn:
        row = (await conn.execute(_COUNT_ATTEMPT, {"bucket": bucket, "w": window})).one()
        if random.random() < _CLEANUP_PROBABILITY:  # noqa: S311 - not security-relevant
            await conn.execute(_FORGET_OLD_ATTEMPTS, {"w": window})
    return int(row.n), max(1, int(row.retry_after))


async def _forgive_login_attempt(side_engine: AsyncEngine, bucket: str) -> None:
    async with side_engine.connect() as conn:
        await conn.execute(_FORGIVE_ATTEMPT, {"bucket": bucket})


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
    side_engine: AsyncEngine,
    *,
    email: str,
    password: str,
    kind: str,
    organization_id: uuid.UUID | None = None,
) -> tuple[User, IssuedSession]:
    """``side_engine``: the database's side pool (``Database.side_engine``), where the
    throttle's count and a failure's audit row are written so that they outlast the
    request's rollback."""
    email = normalize_email(email)
    bucket = _attempt_bucket(email, request_meta_var.get().ip_address)
    attempt, retry_after = await _count_login_attempt(side_engine, settings, bucket)
    if attempt > settings.login_max_failures:
        raise TooManyRequests(
            "Too many failed log-ins. Wait a few minutes and try again.",
            code="login_throttled",
            headers={"Retry-After": str(retry_after)},
        )
    user = await get_user_by_email(session, email)
    if (
        user is None
        or not await security.verify_password(user.password_hash, password)
        or not user.is_active
    ):
        await audit.record_detached(
            session,
            bind=side_engine,
            action="login",
            resource_type="user",
            user_id=user.id if user else None,
            changes={"email": email},
            success=False,
            failure_reason="inactive" if user and not user.is_active else "bad_credentials",
            risk_score=min(100, 10 * attempt),
        )
        raise Unauthorized("Wrong email or password.", code="invalid_credentials")
    await _forgive_login_attempt(side_engine, bucket)
    if security.password_needs_rehash(user.password_hash):
        user.password_hash = await security.hash_password(password)
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
    meta = request_meta_var.get()
    risk = await audit_security.login_risk(
        session,
        user_id=user.id,
        ip_address=meta.ip_address,
        user_agent=meta.user_agent,
        recent_failures=attempt - 1,
    )
    await audit.record(
        session,
        action="login",
        resource_type="user",
        resource_id=user.id,
        organization_id=active_org,
        user_id=user.id,
        changes={"email": email, "kind": kind}
        | {"new_address": risk.new_address, "new_device": risk.new_device},
        risk_score=risk.score,
    )
    return user, issued


async def open_session(
    session: AsyncSession,
    settings: Settings,
    user: User,
    *,
    kind: str,
    organization_id: uuid.UUID | None,
    family_id: uuid.UUID | None = None,
) -> IssuedSession:
    """A new session (a log-in: a new family) or the next one of ``family_id`` (a
    rotation)."""
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
        family_id=family_id or uuid.uuid4(),
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


def _invalid_refresh_token() -> Unauthorized:
    return Unauthorized("The refresh token is invalid, expired or revoked.", code="invalid_token")


async def _locked_api_session(session: AsyncSession, token: str) -> tuple[UserSession | None, bool]:
    """The API session of ``token``, row-locked until the request ends, and whether another
    request held the lock when we asked (it was being rotated or revoked at that moment).

    The first look skips a locked row; only then do we wait for it. So a rotated token found
    without waiting was rotated by a request that had already finished: a reuse. One found
    after waiting lost a race against its own twin (parallel refreshes of one token)."""
    query = (
        select(UserSession)
        .where(UserSession.token_hash == security.token_hash(token), UserSession.kind == "api")
        .execution_options(populate_existing=True)
    )
    row = (await session.execute(query.with_for_update(skip_locked=True))).scalar_one_or_none()
    if row is not None:
        return row, False
    return (await session.execute(query.with_for_update())).scalar_one_or_none(), True


async def _revoke_family(session: AsyncSession, side_engine: AsyncEngine, old: UserSession) -> None:
    """A rotated refresh token came back: someone holds a copy. End every session of its
    family and audit it, on the side pool, so that both outlast the request's 401."""
    async with side_engine.connect() as conn:
        revoked = (
            await conn.execute(
                update(UserSession)
                .where(UserSession.family_id == old.family_id, UserSession.revoked_at.is_(None))
                .values(revoked_at=func.now())
                .returning(UserSession.id)
            )
        ).all()
    await audit.record_detached(
        session,
        bind=side_engine,
        action="refresh_token_reused",
        resource_type="user_session",
        resource_id=old.id,
        user_id=old.user_id,
        changes={"family_id": str(old.family_id), "revoked_sessions": len(revoked)},
        success=False,
        failure_reason="refresh_token_reused",
        risk_score=90,
    )


async def refresh(
    session: AsyncSession, settings: Settings, side_engine: AsyncEngine, refresh_token: str
) -> tuple[User, IssuedSession]:
    """Rotate the refresh token: the old one stops working the moment a new one is issued.

    Exactly one of several parallel refreshes of a token wins (the row is locked); the
    others get 401. A token that was already rotated is a stolen copy (or the original,
    after the thief used the copy): the whole family is revoked and audited
    (``refresh_token_reused``), so whoever holds the newest token has to log in again."""
    old, contended = await _locked_api_session(session, refresh_token)
    if old is None:
        raise _invalid_refresh_token()
    if old.rotated_at is not None and not contended:
        await _revoke_family(session, side_engine, old)
        raise Unauthorized(
            "This refresh token was already used. Every session it belongs to has ended: "
            "log in again.",
            code="refresh_token_reused",
        )
    if old.revoked_at is not None or old.expires_at <= security.utcnow():
        raise _invalid_refresh_token()
    user = await session.get(User, old.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("The account is disabled.", code="account_disabled")
    return user, await rotate_session(session, settings, user, old, old.active_organization_id)


async def rotate_session(
    session: AsyncSession,
    settings: Settings,
    user: User,
    old: UserSession,
    organization_id: uuid.UUID | None,
) -> IssuedSession:
    """End ``old`` as rotated and open its successor, in the same family, acting in
    ``organization_id``."""
    old.revoked_at = old.rotated_at = security.utcnow()
    return await open_session(
        session,
        settings,
        user,
        kind=old.kind,
        organization_id=organization_id,
        family_id=old.family_id,
    )


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
