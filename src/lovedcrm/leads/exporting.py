"""Exporting the current filtered list of leads as CSV, streamed.

The rows come from ``leads.service.list_leads`` itself (same filters, same role scope, same
sort), one keyset page of ``EXPORT_BATCH`` at a time, so the export never holds more than one
page in memory and always matches what the list shows. The first page is read in the request's
own transaction (a bad filter is a normal 4xx before anything is sent); the following pages
each run in a short tenant transaction of their own, since the request's transaction has ended
by the time the body streams.

Format: UTF-8 with a BOM (Excel then reads accents right) and ``,`` as the separator (what
spreadsheet programs and scripts expect from a ``.csv``; the BOM makes Excel honour UTF-8).
Columns: the lead's fields, the stage's name, the assignee's e-mail, then one
``custom:<key>`` column per custom field the organization defines. Cells that a spreadsheet
would run as a formula (starting with ``=``, ``@``, ``+`` or ``-`` but not a number or a phone
number) are prefixed with ``'``.

Audit: a ``data_export`` row with the filters and the columns is written before the first byte
is sent (the stream is lazy, and a client may stop reading); when the stream ends a
``data_export_completed`` row records how many rows were sent.
"""

from __future__ import annotations

import codecs
import csv
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.auth.models import OrganizationMember, User
from lovedcrm.core.principal import Principal
from lovedcrm.core.text import safe_cell
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.leads import service
from lovedcrm.leads.models import PipelineStage
from lovedcrm.organizations import custom_fields
from lovedcrm.organizations.models import Organization

EXPORT_BATCH = 1000
BASE_COLUMNS = (
    "id",
    "full_name",
    "email",
    "phone",
    "company",
    "job_title",
    "stage",
    "assignee_email",
    "source",
    "estimated_value",
    "status",
    "created_at",
)


@dataclass(frozen=True)
class ExportFilters:
    """The filters of ``GET /api/v1/leads`` (without the page cursor and size)."""

    stage_id: uuid.UUID | None = None
    assigned_to: uuid.UUID | None = None
    status: str | None = None
    source: str | None = None
    score_min: int | None = None
    score_max: int | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    q: str | None = None
    sort: str = "-created_at"

    def for_audit(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "; ".join(_text(v) for v in value)
    return str(value)


@dataclass
class _Lookups:
    custom_keys: list[str]
    stages: dict[uuid.UUID, str]
    emails: dict[uuid.UUID, str]

    @property
    def columns(self) -> list[str]:
        return [*BASE_COLUMNS, *(f"custom:{k}" for k in self.custom_keys)]

    def row(self, lead: Any) -> list[str]:
        custom = lead.custom_fields or {}
        cells = [
            str(lead.id),
            lead.full_name,
            lead.email,
            lead.phone,
            lead.company,
            lead.job_title,
            self.stages.get(lead.stage_id, ""),
            self.emails.get(lead.assigned_to, "") if lead.assigned_to else "",
            lead.source,
            service.money(lead.estimated_value),
            lead.status,
            lead.created_at,
            *(custom.get(k) for k in self.custom_keys),
        ]
        return [safe_cell(_text(c)) for c in cells]


async def _lookups(session: AsyncSession, organization_id: uuid.UUID) -> _Lookups:
    org = await session.get(Organization, organization_id)
    keys = [d["key"] for d in custom_fields.custom_field_definitions(org)]
    stages = {
        r.id: r.name
        for r in (
            await session.execute(
                select(PipelineStage.id, PipelineStage.name).where(
                    PipelineStage.organization_id == organization_id
                )
            )
        ).all()
    }
    emails = {
        r.user_id: r.email
        for r in (
            await session.execute(
                select(OrganizationMember.user_id, User.email)
                .join(User, User.id == OrganizationMember.user_id)
                .where(OrganizationMember.organization_id == organization_id)
            )
        ).all()
    }
    return _Lookups(keys, stages, emails)


def _encode(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


async def export_csv(
    session: AsyncSession,
    database: Database,
    principal: Principal,
    filters: ExportFilters,
) -> AsyncIterator[bytes]:
    """Check the filters, audit the export and return the stream of the CSV's bytes."""
    principal.require("leads:export")
    principal.require("leads:read")
    org_id = principal.org()
    kwargs = asdict(filters)
    first = await service.list_leads(session, principal, limit=EXPORT_BATCH, **kwargs)
    lookups = await _lookups(session, org_id)
    export_id = uuid.uuid4()
    await audit.record(
        session,
        action="data_export",
        resource_type="leads_export",
        resource_id=export_id,
        organization_id=org_id,
        user_id=principal.user_id,
        changes={"format": "csv", "filters": filters.for_audit(), "columns": lookups.columns},
    )

    async def stream() -> AsyncIterator[bytes]:
        yield codecs.BOM_UTF8 + _encode([lookups.columns])
        page, sent = first, 0
        while True:
            yield _encode([lookups.row(lead) for lead in page.items])
            sent += len(page.items)
            if page.next_cursor is None:
                break
            async with tenant_transaction(database.sessionmaker, org_id, principal.user_id) as own:
                page = await service.list_leads(
                    own, principal, limit=EXPORT_BATCH, cursor=page.next_cursor, **kwargs
                )
        async with tenant_transaction(database.sessionmaker, org_id, principal.user_id) as own:
            await audit.record(
                own,
                action="data_export_completed",
                resource_type="leads_export",
                resource_id=export_id,
                organization_id=org_id,
                user_id=principal.user_id,
                changes={"row_count": sent, "filters": filters.for_audit()},
            )

    return stream()
