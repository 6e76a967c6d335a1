"""Your own account: your profile (name and phone) and your sessions (each browser log-in and
each API log-in, with its device, address and when it was last seen; end one, or every one
but this). Changing the password is ``auth.service.change_password``'s. Every change is
audited.

Sessions are the account's, not an organization's: ``user_sessions`` has no row-level
security, so every query here names the principal's user.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.auth import service as auth_service
from lovedcrm.auth.models import User, UserSession
from lovedcrm.core import security
from lovedcrm.core.errors import NotFound, ValidationFailed
from lovedcrm.core.phones import to_e164
from lovedcrm.core.principal import Principal

NAME_MAX = 255
# A web session's last_seen_at is written at most this often (not on every request).
SEEN_EVERY = timedelta(minutes=5)
UNSET: Any = object()  # "leave as it is" for update_profile's fields


# --- profile --------------------------------------------------------------------------------


def _errors(field: str, message: str) -> dict[str, Any]:
    return {"errors": [{"field": field, "message": message}]}


def clean_name(raw: str) -> str:
    name = " ".join(raw.split())
    if not name or len(name) > NAME_MAX:
        raise ValidationFailed(
            "Write your name, with up to 255 characters.",
            code="invalid_name",
            extra=_errors("full_name", "1 to 255 characters"),
        )
    return name


def clean_phone(raw: str | None, region: str = "BR") -> str | None:
    """E.164, or None for an empty value; ValidationFailed for anything else."""
    if raw is None or not raw.strip():
        return None
    try:
        return to_e164(raw.strip(), region)
    except ValueError as exc:
        raise ValidationFailed(
            "The phone number is not valid. Write it with the area code.",
            code="invalid_phone",
            extra=_errors("phone", "not a phone number"),
        ) from exc


async def update_profile(
    session: AsyncSession,
    principal: Principal,
    *,
    full_name: str = UNSET,
    phone: str | None = UNSET,
    region: str = "BR",
) -> User:
    """Change your name and/or phone (``UNSET``: unchanged; an empty phone removes it)."""
    user = await auth_service.user_of(session, principal)
    before = {"full_name": user.full_name, "phone": user.phone}
    new_name, new_phone = user.full_name, user.phone
    problems: list[ValidationFailed] = []
    if full_name is not UNSET:
        try:
            new_name = clean_name(full_name)
        except ValidationFailed as exc:
            problems.append(exc)
    if phone is not UNSET:
        try:
            new_phone = clean_phone(phone, region)
        except ValidationFailed as exc:
            problems.append(exc)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        detail = " ".join(p.detail for p in problems)
        raise ValidationFailed(
            detail,
            code="invalid_profile",
            extra={"errors": [e for p in problems for e in p.extra["errors"]]},
        )
    user.full_name, user.phone = new_name, new_phone
    after = {"full_name": user.full_name, "phone": user.phone}
    if after != before:
        await session.flush()
        await audit.record(
            session,
            action="profile_update",
            resource_type="user",
            resource_id=user.id,
            organization_id=principal.organization_id,
            user_id=user.id,
            changes=audit.diff(before, after),
        )
    return user


# --- sessions -------------------------------------------------------------------------------


async def list_sessions(session: AsyncSession, principal: Principal) -> list[UserSession]:
    """Your sessions that still work (not ended, not expired), the most recently seen first.
    A refreshed API log-in is one session: its rotated rows have ended."""
    result = await session.execute(
        select(UserSession)
        .where(
            UserSession.user_id == principal.user_id,
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > func.now(),
        )
        .order_by(
            UserSession.last_seen_at.desc().nulls_last(),
            UserSession.created_at.desc(),
            UserSession.id,
        )
    )
    return list(result.scalars())


async def _end(session: AsyncSession, user_id: uuid.UUID, family_ids: list[uuid.UUID]) -> int:
    """End every still-working row of these log-ins (families); how many."""
    if not family_ids:
        return 0
    ended = await session.execute(
        update(UserSession)
        .where(
            UserSession.user_id == user_id,
            UserSession.family_id.in_(family_ids),
            UserSession.revoked_at.is_(None),
        )
        .values(revoked_at=func.now())
        .returning(UserSession.id)
        .execution_options(synchronize_session=False)
    )
    return len(ended.all())


async def end_session(session: AsyncSession, principal: Principal, session_id: uuid.UUID) -> None:
    """End one of your sessions (this one too: that is logging out). Its access and refresh
    tokens, or its browser cookie, stop working at once. 404 for a session that is not
    yours or has already ended."""
    found = (
        await session.execute(
            select(UserSession).where(
                UserSession.id == session_id,
                UserSession.user_id == principal.user_id,
                UserSession.revoked_at.is_(None),
                UserSession.expires_at > func.now(),
            )
        )
    ).scalar_one_or_none()
    if found is None:
        raise NotFound("No active session of yours with that id.", code="session_not_found")
    await _end(session, principal.user_id, [found.family_id])
    await audit.record(
        session,
        action="session_end",
        resource_type="user_session",
        resource_id=found.id,
        organization_id=principal.organization_id,
        user_id=principal.user_id,
        changes={"before": {"kind": found.kind, "ip_address": _text(found.ip_address)}},
    )


async def end_other_sessions(session: AsyncSession, principal: Principal) -> int:
    """End every session of yours but the one making this request; how many ended."""
    current = await _current(session, principal)
    query = select(UserSession.family_id).where(
        UserSession.user_id == principal.user_id,
        UserSession.revoked_at.is_(None),
        UserSession.expires_at > func.now(),
    )
    if current is not None:
        query = query.where(UserSession.family_id != current.family_id)
    families = list(dict.fromkeys((await session.execute(query)).scalars()))
    ended = await _end(session, principal.user_id, families)
    if ended:
        await audit.record(
            session,
            action="sessions_end_others",
            resource_type="user",
            resource_id=principal.user_id,
            organization_id=principal.organization_id,
            user_id=principal.user_id,
            changes={"ended": ended},
        )
    return ended


async def _current(session: AsyncSession, principal: Principal) -> UserSession | None:
    if principal.session_id is None:
        return None
    return await session.get(UserSession, principal.session_id)


def is_current(principal: Principal, user_session: UserSession) -> bool:
    return principal.session_id is not None and user_session.id == principal.session_id


# last_seen_at, written on its own (autocommit) connection: the request's transaction holds
# no lock on the session row, and a request that fails still counts as seen.
_SEEN = text(
    "UPDATE user_sessions SET last_seen_at = now() WHERE id = :id"
    " AND (last_seen_at IS NULL OR last_seen_at < now() - make_interval(secs => :every))"
)


async def note_seen(side_engine: AsyncEngine, user_session: UserSession) -> None:
    """Record that a web session is in use, at most once per ``SEEN_EVERY``."""
    last = user_session.last_seen_at
    if last is not None and security.utcnow() - last < SEEN_EVERY:
        return
    async with side_engine.connect() as conn:
        await conn.execute(_SEEN, {"id": user_session.id, "every": SEEN_EVERY.total_seconds()})


# --- describing a session for people ----------------------------------------------------------

# (pattern, name), first match wins: Edge and Opera say "Chrome" too, Chrome says "Safari".
_BROWSERS = (
    (r"Edg(e|A|iOS)?/", "Edge"),
    (r"OPR/|Opera", "Opera"),
    (r"SamsungBrowser/", "Samsung Internet"),
    (r"Firefox/|FxiOS/", "Firefox"),
    (r"Chrom(e|ium)/|CriOS/", "Chrome"),
    (r"Safari/", "Safari"),
    (r"python-httpx|python-requests|aiohttp", "Python"),
    (r"^curl/", "curl"),
    (r"PostmanRuntime", "Postman"),
    (r"okhttp", "Android app"),
)
_SYSTEMS = (
    (r"Android", "Android"),
    (r"iPhone|iPad|iPod|iOS", "iOS"),
    (r"Windows", "Windows"),
    (r"Mac OS X|Macintosh", "macOS"),
    (r"CrOS", "ChromeOS"),
    (r"Linux|X11", "Linux"),
)


def describe_device(user_agent: str | None) -> str | None:
    """ "Chrome on Windows", "Safari on iOS", "curl" — or None when the client said nothing
    recognizable."""
    agent = user_agent or ""
    browser = next((name for pattern, name in _BROWSERS if re.search(pattern, agent)), None)
    system = next((name for pattern, name in _SYSTEMS if re.search(pattern, agent)), None)
    if browser and system:
        return f"{browser} · {system}"
    return browser or system


def _text(value: object) -> str | None:
    return str(value) if value is not None else None


def address_of(user_session: UserSession) -> str | None:
    """The session's IP address as text (the column is ``inet``)."""
    return _text(user_session.ip_address)


def last_seen(user_session: UserSession) -> datetime | None:
    return user_session.last_seen_at or user_session.created_at
