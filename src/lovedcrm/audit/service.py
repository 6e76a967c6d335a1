"""The audit trail: who did what, from where, with a before/after diff."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from lovedcrm.audit.models import AuditLog
from lovedcrm.core.context import request_meta_var
from lovedcrm.core.principal import Principal
from lovedcrm.db.tenant import set_tenant


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"before": {...}, "after": {...}}`` limited to the keys whose values changed."""
    before = before or {}
    after = after or {}
    keys = sorted(set(before) | set(after))
    changed = [k for k in keys if before.get(k) != after.get(k)]
    return {
        "before": {k: _jsonable(before.get(k)) for k in changed if k in before},
        "after": {k: _jsonable(after.get(k)) for k in changed if k in after},
    }


def _values(
    *,
    action: str,
    resource_type: str,
    resource_id: uuid.UUID | None = None,
    organization_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    changes: Mapping[str, Any] | None = None,
    success: bool = True,
    failure_reason: str | None = None,
    risk_score: int | None = None,
) -> dict[str, Any]:
    meta = request_meta_var.get()
    rid: uuid.UUID | None
    try:
        rid = uuid.UUID(meta.request_id) if meta.request_id else None
    except ValueError:
        rid = None  # a client-supplied id that is not a UUID stays in the logs only
    return {
        # Given here so the INSERT needs no RETURNING to learn the key.
        "id": uuid.uuid4(),
        "organization_id": organization_id,
        "user_id": user_id,
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "ip_address": meta.ip_address,
        "user_agent": meta.user_agent,
        "request_id": rid,
        "changes": _jsonable(dict(changes or {})),
        "success": success,
        "failure_reason": failure_reason,
        "risk_score": risk_score,
    }


# A plain INSERT without RETURNING: RETURNING would have to pass the SELECT policy, which a
# row without an organization (a failed log-in) never does for the app role.
_TABLE = cast(Table, AuditLog.__table__)
_INSERT = insert(_TABLE)


async def record(session: AsyncSession, **fields: Any) -> None:
    """Write an audit row in the caller's transaction (it commits or rolls back with it).
    Fields: action, resource_type, resource_id, organization_id, user_id, changes, success,
    failure_reason, risk_score."""
    conn = await session.connection()  # Core, not the ORM: no RETURNING is added
    await conn.execute(_INSERT.values(**_values(**fields)))


async def record_many(session: AsyncSession, entries: Sequence[Mapping[str, Any]]) -> None:
    """``record`` for many rows (each the fields ``record`` takes): one row as the
    parameters of a cached statement, several in one multi-row INSERT per thousand."""
    conn = await session.connection()
    if len(entries) == 1:
        await conn.execute(_INSERT, _values(**entries[0]))
        return
    for start in range(0, len(entries), 1000):
        chunk = entries[start : start + 1000]
        await conn.execute(insert(_TABLE).values([_values(**fields) for fields in chunk]))


async def record_by(
    session: AsyncSession,
    principal: Principal,
    action: str,
    resource_type: str,
    resource_id: uuid.UUID | None,
    changes: Mapping[str, Any],
) -> None:
    """``record`` an action of ``principal`` in its organization."""
    await record(
        session,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        organization_id=principal.org(),
        user_id=principal.user_id,
        changes=changes,
    )


async def record_detached(
    session: AsyncSession, *, bind: AsyncEngine | None = None, **fields: Any
) -> None:
    """Write an audit row in its own transaction, so it survives the caller's rollback
    (failed log-ins, refused actions). ``bind``: the engine to take that connection from
    instead of the session's (the database's side pool, for rows written while the request
    holds a connection of the main pool, which would otherwise deadlock under load; an
    autocommit engine keeps no tenant, so only for rows without an organization)."""
    async with AsyncSession(bind or session.bind) as own, own.begin():
        await set_tenant(own, fields.get("organization_id"), fields.get("user_id"))
        conn = await own.connection()
        await conn.execute(_INSERT.values(**_values(**fields)))
