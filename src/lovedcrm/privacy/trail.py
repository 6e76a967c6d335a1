"""Reading the audit trail on screen and over the API: filters (member, action, entity,
period, security events only), keyset pages newest first, the before/after diff of each
change, and a streamed CSV of the same filters. Needs ``audit:read``."""

from __future__ import annotations

import codecs
import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import security as audit_security
from lovedcrm.audit import service as audit
from lovedcrm.audit.models import AuditLog
from lovedcrm.auth.models import OrganizationMember, User
from lovedcrm.core.clock import now
from lovedcrm.core.pagination import keyset_after, page_of
from lovedcrm.core.principal import Principal
from lovedcrm.core.text import safe_cell
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction

MAX_PAGE = 200
CSV_CHUNK = 500


@dataclass(frozen=True)
class TrailFilter:
    user_id: uuid.UUID | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_id: uuid.UUID | None = None
    since: date | None = None
    until: date | None = None
    security_only: bool = False


def shown(value: Any) -> str:
    """A diff value as text: JSON for structures, the text itself for scalars."""
    if value is None:
        return "—"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


@dataclass(frozen=True)
class DiffLine:
    field: str
    before: Any
    after: Any

    @property
    def before_text(self) -> str:
        return shown(self.before)

    @property
    def after_text(self) -> str:
        return shown(self.after)


@dataclass
class TrailEntry:
    row: AuditLog
    member: str | None
    diff: list[DiffLine]

    @property
    def id(self) -> uuid.UUID:
        return self.row.id

    @property
    def high_risk(self) -> bool:
        return (self.row.risk_score or 0) > audit_security.HIGH


def diff_lines(changes: dict[str, Any] | None) -> list[DiffLine]:
    """The fields a change touched, before and after (``audit.diff``'s shape); other shapes
    (an event's details) are shown as fields with only an "after"."""
    changes = dict(changes or {})
    before = changes.get("before") if isinstance(changes.get("before"), dict) else None
    after = changes.get("after") if isinstance(changes.get("after"), dict) else None
    if before is None and after is None:
        return [DiffLine(str(k), None, v) for k, v in sorted(changes.items())]
    before, after = before or {}, after or {}
    keys = sorted(set(before) | set(after))
    lines = [DiffLine(k, before.get(k), after.get(k)) for k in keys]
    extra = {k: v for k, v in changes.items() if k not in ("before", "after")}
    return lines + [DiffLine(str(k), None, v) for k, v in sorted(extra.items())]


def _query(principal: Principal, f: TrailFilter) -> Select[Any]:
    query = select(AuditLog).where(AuditLog.organization_id == principal.org())
    if f.user_id is not None:
        query = query.where(AuditLog.user_id == f.user_id)
    if f.action:
        query = query.where(AuditLog.action == f.action)
    if f.resource_type:
        query = query.where(AuditLog.resource_type == f.resource_type)
    if f.resource_id is not None:
        query = query.where(AuditLog.resource_id == f.resource_id)
    if f.since is not None:
        query = query.where(AuditLog.created_at >= datetime.combine(f.since, time.min, tzinfo=UTC))
    if f.until is not None:
        end = datetime.combine(f.until + timedelta(days=1), time.min, tzinfo=UTC)
        query = query.where(AuditLog.created_at < end)
    if f.security_only:
        query = query.where(
            or_(
                AuditLog.risk_score > 0,
                AuditLog.action.in_(audit_security.SECURITY_ACTIONS[1:]),
                and_(AuditLog.action == "login", AuditLog.success.is_(False)),
            )
        )
    return query


async def _members(session: AsyncSession, organization_id: uuid.UUID) -> dict[uuid.UUID, str]:
    rows = await session.execute(
        select(User.id, User.full_name, User.email)
        .join(OrganizationMember, OrganizationMember.user_id == User.id)
        .where(OrganizationMember.organization_id == organization_id)
    )
    return {r.id: r.full_name or r.email for r in rows}


async def members(session: AsyncSession, principal: Principal) -> list[tuple[uuid.UUID, str]]:
    principal.require("audit:read")
    found = await _members(session, principal.org())
    return sorted(found.items(), key=lambda item: item[1].lower())


async def actions(session: AsyncSession, principal: Principal) -> list[str]:
    """The actions the organization's trail holds (the filter's choices)."""
    principal.require("audit:read")
    rows = await session.scalars(
        select(AuditLog.action)
        .distinct()
        .where(AuditLog.organization_id == principal.org())
        .order_by(AuditLog.action)
        .limit(300)
    )
    return list(rows)


async def page(
    session: AsyncSession,
    principal: Principal,
    f: TrailFilter,
    *,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[TrailEntry], str | None]:
    principal.require("audit:read")
    limit = max(1, min(limit, MAX_PAGE))
    query = keyset_after(
        _query(principal, f), cursor, key=AuditLog.created_at, id_col=AuditLog.id, sort="audit"
    ).limit(limit + 1)
    rows = list((await session.scalars(query)).all())
    shown, next_cursor = page_of(rows, limit, key_of=lambda r: r.created_at, sort="audit")
    names = await _members(session, principal.org())
    entries = [
        TrailEntry(r, names.get(r.user_id) if r.user_id else None, diff_lines(r.changes))
        for r in shown
    ]
    return entries, next_cursor


async def login_failures(
    session: AsyncSession, principal: Principal, *, days: int = 30
) -> list[dict[str, Any]]:
    """Failed log-ins into the members' accounts over the last ``days`` days."""
    principal.require("audit:read")
    found = await audit_security.member_login_failures(
        session, principal.org(), now() - timedelta(days=days)
    )
    names = await _members(session, principal.org())
    return [
        row | {"member": names.get(row["user_id"]) if row["user_id"] else None} for row in found
    ]


CSV_HEADER = (
    "created_at",
    "member",
    "action",
    "resource_type",
    "resource_id",
    "ip_address",
    "success",
    "risk_score",
    "changes",
)


def _cell(value: Any) -> str:
    return safe_cell("" if value is None else str(value))


def _csv(rows: list[AuditLog], names: dict[uuid.UUID, str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for r in rows:
        writer.writerow(
            [
                _cell(r.created_at.isoformat() if r.created_at else ""),
                _cell(names.get(r.user_id) if r.user_id else ""),
                _cell(r.action),
                _cell(r.resource_type),
                _cell(r.resource_id),
                _cell(r.ip_address),
                _cell(r.success),
                _cell(r.risk_score),
                _cell(json.dumps(r.changes or {}, ensure_ascii=False, sort_keys=True)),
            ]
        )
    return buffer.getvalue().encode()


async def _chunk(
    session: AsyncSession, principal: Principal, f: TrailFilter, cursor: str | None
) -> tuple[list[AuditLog], str | None]:
    query = keyset_after(
        _query(principal, f), cursor, key=AuditLog.created_at, id_col=AuditLog.id, sort="audit"
    ).limit(CSV_CHUNK + 1)
    rows = list((await session.scalars(query)).all())
    return page_of(rows, CSV_CHUNK, key_of=lambda r: r.created_at, sort="audit")


async def export_csv(
    session: AsyncSession, database: Database, principal: Principal, f: TrailFilter
) -> AsyncIterator[bytes]:
    """The filtered trail as CSV bytes, streamed: the first chunk read in the request's
    transaction, each following one in a short tenant transaction of its own (the
    request's has ended by then). The export itself is audited first."""
    principal.require("audit:read")
    org_id = principal.org()
    names = await _members(session, org_id)
    first = await _chunk(session, principal, f, None)
    await audit.record_by(
        session,
        principal,
        "audit_export",
        "audit_logs",
        None,
        {"filters": {k: str(v) for k, v in asdict(f).items() if v not in (None, False)}},
    )

    async def stream() -> AsyncIterator[bytes]:
        yield codecs.BOM_UTF8 + ",".join(CSV_HEADER).encode() + b"\r\n"
        rows, cursor = first
        while True:
            yield _csv(rows, names)
            if cursor is None:
                return
            async with tenant_transaction(database.sessionmaker, org_id, principal.user_id) as own:
                rows, cursor = await _chunk(own, principal, f, cursor)

    return stream()
