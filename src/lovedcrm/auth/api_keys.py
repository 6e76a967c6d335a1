"""API keys (spec §7.1): an organization's credentials for the public API.

A key is ``lcrm_<prefix>_<secret>``:

- ``prefix``: 8 random alphanumerics, stored in ``api_key_prefix`` and shown in lists, so a
  person can tell keys apart;
- ``secret``: 43 random url-safe characters (256 bits).

Before a tenant is known the key's row is invisible to the app role (row-level security), so
it is found by ``lovedcrm_api_key_auth(prefix, sha256(key))``, a narrow security-definer
function (migration 0003) that returns the key, its creator and their membership in one
round trip; the request then runs under the key's organization.

Only the SHA-256 of the whole key is stored (``api_key_hash``); the key is shown once, when
created. SHA-256 rather than argon2: the key carries 256 random bits, so a slow hash adds
nothing but latency to every request.

A key acts for its organization with the permissions named by its scopes (``leads:read``
also reads every lead of the organization: a key is not one salesperson). It stops working
at once when revoked, when it expires, or when its creator leaves the organization or is
deactivated.

Usage (``last_used_at``, ``total_requests``) is counted in memory and written every few
seconds by ``UsageFlusher`` (started in the app's lifespan), not once per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
import secrets
import string
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import security as audit_security
from lovedcrm.audit import service as audit
from lovedcrm.auth.models import ApiKey
from lovedcrm.auth.permissions import PERMISSIONS, SCOPE_DESCRIPTIONS
from lovedcrm.core import security
from lovedcrm.core.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.principal import Person
from lovedcrm.db import reads
from lovedcrm.db.tenant import save_new, tenant_transaction

if TYPE_CHECKING:
    from lovedcrm.core.principal import Principal
    from lovedcrm.db.engine import Database

log = structlog.stdlib.get_logger("lovedcrm.api_keys")

KEY_MARKER = "lcrm_"
PREFIX_LENGTH = 8
DEFAULT_RATE_LIMIT = 1000
MAX_RATE_LIMIT = 100_000

# What a key may be granted: the organization-level permissions that make sense for an
# integration. Not members:manage, settings:manage, billing:manage, api_keys:manage,
# audit:read or jobs:manage: those stay with people.
SCOPES: dict[str, str] = {
    name: SCOPE_DESCRIPTIONS.get(name, PERMISSIONS[name])
    for name in (
        "leads:read",
        "leads:write",
        "leads:delete",
        "leads:export",
        "leads:import",
        "pipeline:manage",
        "messages:read",
        "messages:write",
        "templates:manage",
        "members:read",
        "webhooks:manage",
        "reports:read",
    )
}

_ALNUM = string.ascii_letters + string.digits
_KEY_RE = re.compile(
    rf"^{KEY_MARKER}(?P<prefix>[A-Za-z0-9]{{{PREFIX_LENGTH}}})_[A-Za-z0-9_-]{{43,200}}$"
)


@dataclass(frozen=True)
class ParsedKey:
    prefix: str


def generate_key() -> tuple[str, str]:
    """A new key and its prefix (the organization is not part of the key)."""
    prefix = "".join(secrets.choice(_ALNUM) for _ in range(PREFIX_LENGTH))
    return f"{KEY_MARKER}{prefix}_{security.new_token(32)}", prefix


def looks_like_key(credential: str) -> bool:
    return credential.startswith(KEY_MARKER)


def parse_key(raw: str) -> ParsedKey | None:
    match = _KEY_RE.match(raw)
    if match is None:
        return None
    return ParsedKey(prefix=match["prefix"])


def key_permissions(scopes: frozenset[str]) -> frozenset[str]:
    """A key's permissions: its scopes, organization-wide."""
    perms = set(scopes & SCOPES.keys())
    # Changing a thing means finding it first: writing implies reading what you write.
    if perms & {"leads:write", "leads:delete", "leads:import", "leads:export"}:
        perms.add("leads:read")
    if perms & {"templates:manage", "messages:write"}:
        perms.add("messages:read")
    if "messages:read" in perms:
        # A conversation is a lead's: reading it means finding the lead.
        perms.add("leads:read")
    if "leads:read" in perms:
        perms.add("leads:read_all")
    if "leads:write" in perms:
        perms.add("leads:write_all")
    return frozenset(perms)


# --- authentication -------------------------------------------------------------------


def _invalid(detail: str) -> Unauthorized:
    return Unauthorized(detail, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


@dataclass(frozen=True)
class AuthenticatedKey:
    id: uuid.UUID
    organization_id: uuid.UUID
    scopes: frozenset[str]
    rate_limit_per_hour: int


# One round trip: find the key (security-definer look-up by prefix and hash) and point the
# transaction at its organization. The tenant is set only when a key matched.
_AUTH = text(
    """
    SELECT k.*, set_config('app.organization_id', k.organization_id::text, true) AS org_set,
           set_config('app.user_id', k.user_id::text, true) AS user_set
      FROM lovedcrm_api_key_auth(:prefix, :hash) AS k
    """
)


async def authenticate(session: AsyncSession, raw: str) -> tuple[AuthenticatedKey, Person]:
    """The active key and its creator, with the transaction pointed at the key's
    organization; 401 ``invalid_api_key`` otherwise."""
    parsed = parse_key(raw)
    if parsed is None:
        raise _invalid("The API key is not valid.")
    digest = security.token_hash(raw)
    found = await reads.rows(session, _AUTH, {"prefix": parsed.prefix, "hash": digest})
    row = found[0] if found else None
    if row is None or not hmac.compare_digest(row.api_key_hash, digest):
        raise _invalid("The API key is not valid.")
    if not row.is_active:
        raise _invalid("The API key has been revoked.")
    if row.expires_at is not None and row.expires_at <= security.utcnow():
        raise _invalid("The API key has expired.")
    if not row.user_active or not row.member_active:
        raise _invalid("The API key's creator no longer has access to the organization.")
    # The creator, as far as a key's principal needs it (no ORM object: a plain value).
    user = Person(id=row.user_id, email=row.user_email, full_name=row.user_full_name)
    key = AuthenticatedKey(
        id=row.id,
        organization_id=row.organization_id,
        scopes=frozenset(str(s) for s in row.scopes or []),
        rate_limit_per_hour=row.rate_limit_per_hour or DEFAULT_RATE_LIMIT,
    )
    return key, user


# --- management (people with api_keys:manage only) ------------------------------------


def ensure_can_manage(principal: Principal) -> None:
    if principal.via == "api_key":
        raise Forbidden(
            "API keys cannot manage API keys: sign in as a person with the "
            "'api_keys:manage' permission.",
            code="api_keys_require_user",
        )
    principal.org()
    principal.require("api_keys:manage")


def _snapshot(key: ApiKey) -> dict[str, Any]:
    return {
        "key_name": key.key_name,
        "api_key_prefix": key.api_key_prefix,
        "scopes": list(key.scopes or []),
        "rate_limit_per_hour": key.rate_limit_per_hour,
        "expires_at": key.expires_at,
        "is_active": key.is_active,
    }


def _clean_scopes(scopes: list[str]) -> list[str]:
    names = [s.strip() for s in scopes]
    unknown = sorted({s for s in names if s not in SCOPES})
    if unknown:
        raise ValidationFailed(
            f"Unknown scopes: {', '.join(unknown)}. Allowed: {', '.join(sorted(SCOPES))}.",
            code="invalid_scope",
            extra={
                "errors": [{"field": "scopes", "message": f"unknown scope {s}"} for s in unknown]
            },
        )
    if not names:
        raise ValidationFailed(
            "Give the key at least one scope.",
            code="invalid_scope",
            extra={"errors": [{"field": "scopes", "message": "at least one scope"}]},
        )
    return sorted(set(names))


async def create_key(
    session: AsyncSession,
    principal: Principal,
    *,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    rate_limit_per_hour: int = DEFAULT_RATE_LIMIT,
) -> tuple[ApiKey, str]:
    """A new key and its full text (returned once, never stored)."""
    ensure_can_manage(principal)
    clean_scopes = _clean_scopes(scopes)
    if expires_at is not None:
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if expires_at <= security.utcnow():
            raise ValidationFailed(
                "expires_at must be in the future.",
                code="invalid_expiry",
                extra={"errors": [{"field": "expires_at", "message": "must be in the future"}]},
            )
    if not 1 <= rate_limit_per_hour <= MAX_RATE_LIMIT:
        raise ValidationFailed(
            f"rate_limit_per_hour must be between 1 and {MAX_RATE_LIMIT}.",
            code="validation_error",
            extra={"errors": [{"field": "rate_limit_per_hour", "message": "out of range"}]},
        )
    org_id = principal.org()
    full, prefix = generate_key()
    key = ApiKey(
        organization_id=org_id,
        created_by=principal.user_id,
        key_name=name.strip(),
        api_key_hash=security.token_hash(full),
        api_key_prefix=prefix,
        scopes=clean_scopes,
        rate_limit_per_hour=rate_limit_per_hour,
        expires_at=expires_at,
        is_active=True,
        total_requests=0,
    )
    await save_new(session, key)
    await audit.record(
        session,
        action="api_key_create",
        resource_type="api_key",
        resource_id=key.id,
        organization_id=org_id,
        user_id=principal.user_id,
        changes=audit.diff(None, _snapshot(key)),
    )
    return key, full


async def list_keys(session: AsyncSession, principal: Principal) -> list[ApiKey]:
    ensure_can_manage(principal)
    result = await session.execute(
        select(ApiKey)
        .where(ApiKey.organization_id == principal.org())
        .order_by(ApiKey.created_at.desc(), ApiKey.id)
    )
    return list(result.scalars())


async def get_key(session: AsyncSession, principal: Principal, key_id: uuid.UUID) -> ApiKey:
    ensure_can_manage(principal)
    return await get_in_org(
        session,
        ApiKey,
        key_id,
        principal,
        NotFound("No API key with that id.", code="api_key_not_found"),
    )


async def revoke_key(session: AsyncSession, principal: Principal, key_id: uuid.UUID) -> ApiKey:
    """Deactivate a key; the next request made with it gets 401. Revoking twice is a no-op."""
    key = await get_key(session, principal, key_id)
    if not key.is_active:
        return key
    before = _snapshot(key)
    key.is_active = False
    await session.flush()
    await audit.record(
        session,
        action="api_key_revoke",
        resource_type="api_key",
        resource_id=key.id,
        organization_id=key.organization_id,
        user_id=principal.user_id,
        changes=audit.diff(before, _snapshot(key)),
    )
    return key


# --- usage: counted in memory, written every few seconds -------------------------------


@dataclass
class _Usage:
    organization_id: uuid.UUID
    count: int
    last_used: datetime
    # Addresses the key was used from since the last flush (a few; a security event is
    # recorded for each address the key was never used from, audit.security).
    addresses: set[str] = field(default_factory=set)


_MAX_ADDRESSES = 20


# key id -> requests since the last flush (this process only).
_pending: dict[uuid.UUID, _Usage] = {}

_ADD_USAGE = text(
    "UPDATE api_keys SET total_requests = COALESCE(total_requests, 0) + :n,"
    " last_used_at = GREATEST(COALESCE(last_used_at, :t), :t)"
    " WHERE id = :id"
)


def record_usage(
    key_id: uuid.UUID, organization_id: uuid.UUID, ip_address: str | None = None
) -> None:
    now = security.utcnow()
    usage = _pending.get(key_id)
    if usage is None:
        usage = _pending[key_id] = _Usage(organization_id, 1, now)
    else:
        usage.count += 1
        usage.last_used = max(usage.last_used, now)
    if ip_address and len(usage.addresses) < _MAX_ADDRESSES:
        usage.addresses.add(ip_address)


def pending_usage() -> dict[uuid.UUID, int]:
    """Requests counted but not written yet, by key (for tests and diagnostics)."""
    return {k: u.count for k, u in _pending.items()}


def _merge_back(batch: dict[uuid.UUID, _Usage]) -> None:
    for key_id, usage in batch.items():
        current = _pending.get(key_id)
        if current is None:
            _pending[key_id] = usage
        else:
            current.count += usage.count
            current.last_used = max(current.last_used, usage.last_used)
            current.addresses |= usage.addresses


async def _note_addresses(
    session: AsyncSession, organization_id: uuid.UUID, key_id: uuid.UUID, seen: set[str]
) -> None:
    """A security event for each address the key was never used from."""
    fresh = await audit_security.new_key_addresses(session, organization_id, key_id, seen)
    for ip, risk in fresh:
        await audit.record(
            session,
            action="security.api_key_new_address",
            resource_type="api_key",
            resource_id=key_id,
            organization_id=organization_id,
            changes={"ip": ip},
            risk_score=risk,
        )


async def flush_usage(database: Database) -> int:
    """Write the counted usage: one transaction per organization (row-level security).
    Returns how many keys were updated. An organization whose write fails keeps its counts
    for the next flush."""
    if not _pending:
        return 0
    batch = dict(_pending)
    _pending.clear()  # no await since the copy: nothing is counted twice or lost
    by_org: dict[uuid.UUID, dict[uuid.UUID, _Usage]] = defaultdict(dict)
    for key_id, usage in batch.items():
        by_org[usage.organization_id][key_id] = usage
    written = 0
    for org_id, usages in by_org.items():
        try:
            async with tenant_transaction(database.sessionmaker, org_id) as session:
                await session.execute(
                    _ADD_USAGE,
                    [{"id": k, "n": u.count, "t": u.last_used} for k, u in usages.items()],
                )
                for key_id, usage in usages.items():
                    if usage.addresses:
                        await _note_addresses(session, org_id, key_id, usage.addresses)
            written += len(usages)
        except Exception:
            log.exception("api key usage flush failed", organization_id=str(org_id))
            _merge_back(usages)
    return written


class UsageFlusher:
    """Writes API key usage every ``interval`` seconds, and once more when stopped."""

    def __init__(self, database: Database, interval: float) -> None:
        self.database = database
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="api-key-usage-flusher")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await flush_usage(self.database)
            except Exception:  # keep flushing: a database blip must not stop the task
                log.exception("api key usage flush failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await flush_usage(self.database)
        except Exception:
            log.exception("final api key usage flush failed")
