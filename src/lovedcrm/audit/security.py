"""Security events and their risk score (0–100): simple, documented rules over the trail.

A security event is an audit row with a ``risk_score``: a failed log-in, a log-in, an API
key used from an address it was not used from before, a reused refresh token.

Log-in rules (:func:`login_risk`), the score is the sum, capped at 100:

- a new address (the member never logged in successfully from this IP)        +40
- a new device (never from this user agent)                                     +30
- failed log-ins just before, same e-mail and address (the throttle's window)  +10 each,
  at most +30
- no earlier successful log-in at all: nothing to compare with, so the address and device
  rules do not apply (a first log-in is not suspicious in itself).

API key rule (:func:`API_KEY_NEW_ADDRESS`): the key's first address scores 10, every later
new address 50. A failed log-in scores ``10 × attempt`` (auth.service); a reused refresh
token 90. Events of score > 50 are "high" on the audit page.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

NEW_ADDRESS = 40
NEW_DEVICE = 30
PER_RECENT_FAILURE = 10
MAX_FAILURES_SCORE = 30
API_KEY_FIRST_ADDRESS = 10
API_KEY_NEW_ADDRESS = 50
HIGH = 50

SECURITY_ACTIONS = ("login", "refresh_token_reused", "security.api_key_new_address")


@dataclass(frozen=True)
class LoginRisk:
    score: int
    new_address: bool
    new_device: bool
    recent_failures: int


def score_login(
    *, has_history: bool, new_address: bool, new_device: bool, recent_failures: int
) -> int:
    if not has_history:
        new_address = new_device = False
    score = (NEW_ADDRESS if new_address else 0) + (NEW_DEVICE if new_device else 0)
    score += min(MAX_FAILURES_SCORE, PER_RECENT_FAILURE * recent_failures)
    return min(100, score)


_HISTORY = text(
    """
    SELECT count(*) AS logins,
           count(*) FILTER (WHERE ip_address = CAST(:ip AS inet)) AS same_ip,
           count(*) FILTER (WHERE user_agent = :ua) AS same_ua
      FROM audit_logs
     WHERE user_id = :uid AND action = 'login' AND success
    """
)


async def login_risk(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    ip_address: str | None,
    user_agent: str | None,
    recent_failures: int,
) -> LoginRisk:
    """The risk of a successful log-in, read before it is recorded (the caller's tenant:
    earlier log-ins into the same organization)."""
    row = (
        await session.execute(_HISTORY, {"uid": user_id, "ip": ip_address, "ua": user_agent or ""})
    ).one()
    failures = max(0, recent_failures)
    has_history = int(row.logins) > 0
    new_address = ip_address is not None and int(row.same_ip) == 0
    new_device = bool(user_agent) and int(row.same_ua) == 0
    score = score_login(
        has_history=has_history,
        new_address=new_address,
        new_device=new_device,
        recent_failures=failures,
    )
    return LoginRisk(score, has_history and new_address, has_history and new_device, failures)


_MEMBER_FAILURES = text(
    "SELECT id, user_id, ip_address, user_agent, failure_reason, risk_score, created_at"
    " FROM lovedcrm_member_login_failures(:org, :since)"
)


async def member_login_failures(
    session: AsyncSession, organization_id: uuid.UUID, since: datetime
) -> list[dict[str, Any]]:
    """Failed log-ins into the accounts of the organization's members (the trail keeps
    them without an organization, since none is known before the password checks)."""
    rows = await session.execute(_MEMBER_FAILURES, {"org": organization_id, "since": since})
    return [dict(r._mapping) for r in rows]


_KEY_ADDRESSES = text(
    "SELECT changes->>'ip' FROM audit_logs WHERE organization_id = :org"
    " AND action = 'security.api_key_new_address' AND resource_id = :key"
)


async def new_key_addresses(
    session: AsyncSession, organization_id: uuid.UUID, key_id: uuid.UUID, seen: set[str]
) -> list[tuple[str, int]]:
    """The addresses of ``seen`` this key was never used from, each with its risk."""
    known = {
        r[0] for r in await session.execute(_KEY_ADDRESSES, {"org": organization_id, "key": key_id})
    }
    fresh = sorted(seen - known)
    out = []
    for ip in fresh:
        out.append((ip, API_KEY_FIRST_ADDRESS if not known else API_KEY_NEW_ADDRESS))
        known.add(ip)
    return out
