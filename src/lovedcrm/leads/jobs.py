"""The lead import's job (``leads.import``): the file in chunks of ``CHUNK_SIZE`` rows, each in
its own short transaction that also writes the progress, so progress shows while it runs and
a retry resumes after the last committed chunk (see ``leads.importing`` for the steps before).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.auth import authentication
from lovedcrm.core.errors import ValidationFailed
from lovedcrm.core.events import DomainEvent, emit
from lovedcrm.core.principal import Principal
from lovedcrm.db.tenant import after_commit, tenant_transaction
from lovedcrm.jobs.engine import LeaseLost
from lovedcrm.jobs.models import BackgroundJob
from lovedcrm.jobs.queue import JobContext, PermanentFailure, job_handler
from lovedcrm.leads import assignment, service
from lovedcrm.leads.access import organization_settings, region_of
from lovedcrm.leads.dedup import Contact, DuplicateIndex, match_reason
from lovedcrm.leads.import_files import (
    DataRows,
    FileFormat,
    RowError,
    errors_dir,
    open_rows,
    write_chunk_errors,
)
from lovedcrm.leads.importing import JOB_TYPE, ImportPayload, convert_row
from lovedcrm.leads.models import Lead
from lovedcrm.organizations import custom_fields
from lovedcrm.web.i18n import DEFAULT_LOCALE, N_, catalog_name, translations

CHUNK_SIZE = 500


# How many skipped or failed rows the import keeps with their reason for the page and the
# API (every failed row is in the errors file; a skipped row names the lead it matched).
ROW_DETAILS = 100
NOT_YOURS = N_("duplicate of a lead you may not edit: not updated")


@dataclass
class Progress:
    processed: int = 0
    total: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "rows": list(self.rows)}

    def note(self, row: dict[str, Any]) -> None:
        if len(self.rows) < ROW_DETAILS:
            self.rows.append(row)


_PROGRESS = text(
    """
    UPDATE background_jobs SET result_data = CAST(:progress AS jsonb), updated_at = now()
     WHERE id = :id AND status = 'running' AND attempts = :attempt
    """
)


async def _save_progress(session: AsyncSession, ctx: JobContext, progress: Progress) -> None:
    """In the chunk's transaction, guarded by the attempt: if another worker has taken the job
    (our lease expired), this chunk rolls back."""
    done = await session.execute(
        _PROGRESS,
        {"progress": json.dumps(progress.as_dict()), "id": ctx.job_id, "attempt": ctx.attempt},
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(str(ctx.job_id))


async def _job_principal(
    session: AsyncSession, organization_id: uuid.UUID, payload: ImportPayload
) -> Principal:
    principal = await authentication.principal_for_member(
        session, organization_id, payload.created_by, limit_to=payload.permissions
    )
    if principal is None:
        raise PermanentFailure("the member who started the import is no longer active")
    if not principal.can("leads:import"):
        raise PermanentFailure("the member who started the import may no longer import leads")
    return principal


@dataclass
class _Chunk:
    first_row: int  # index of its first data row (0-based), names its errors file
    rows: list[tuple[int, list[str]]]


def _chunks(data: DataRows, start: int, size: int) -> Iterator[_Chunk]:
    index = 0
    current: list[tuple[int, list[str]]] = []
    first = start
    for line, cells in data.rows:
        if index < start:
            index += 1
            continue
        if not current:
            first = index
        current.append((line, cells))
        index += 1
        if len(current) >= size:
            yield _Chunk(first, current)
            current = []
    if current:
        yield _Chunk(first, current)


def _apply_update(lead: Lead, data: dict[str, Any]) -> None:
    """The row's non-empty values onto an existing lead (custom fields merged)."""
    for key, value in data.items():
        if key == "custom_fields":
            if value:
                lead.custom_fields = {**(lead.custom_fields or {}), **value}
        elif value not in (None, ""):
            setattr(lead, key, value)
    lead.updated_at = func.now()


async def _run_chunk(
    ctx: JobContext,
    principal: Principal,
    payload: ImportPayload,
    headers: list[str],
    chunk: _Chunk,
    progress: Progress,
) -> Progress:
    org_id = principal.org()
    out = Progress(**progress.as_dict())
    errors: list[RowError] = []
    async with tenant_transaction(ctx.database.sessionmaker, org_id, principal.user_id) as s:
        org_settings = await organization_settings(s, org_id)
        definitions = {d["key"]: d for d in custom_fields.definitions_in(org_settings)}
        stage_id = (await service.first_stage(s, org_id)).id
        # The errors (file and page) in the organization's language.
        locale = catalog_name(str(org_settings.get("locale") or "")) or DEFAULT_LOCALE
        gettext = translations(locale).gettext
        cleaned: list[tuple[int, dict[str, Any]]] = []
        for line, cells in chunk.rows:
            by_header = {h: (cells[i] if i < len(cells) else "") for i, h in enumerate(headers)}
            data, row_errors = await convert_row(
                s, principal, line, by_header, payload.mapping, definitions, gettext
            )
            if data is None:
                errors += row_errors
            else:
                cleaned.append((line, data))
        region = region_of(org_settings)
        contacts = {line: Contact.from_values(data, region) for line, data in cleaned}
        known = await DuplicateIndex.load(s, org_id, list(contacts.values()))
        for position, (line, data) in enumerate(cleaned):
            if position % 50 == 49:
                # The duplicate rule is CPU work in Python: let the event loop answer the
                # requests of a server that runs its worker in-process between rows.
                await asyncio.sleep(0)
            existing = known.match(contacts[line]) if payload.duplicate_policy != "create" else None
            if existing is not None and payload.duplicate_policy == "skip":
                out.skipped += 1
                out.note(
                    {
                        "line": line,
                        "outcome": "skipped",
                        "reason": match_reason(contacts[line], Contact.of(existing)),
                        "lead_id": str(existing.id),
                        "lead_name": existing.full_name,
                    }
                )
                continue
            if existing is not None:  # update
                if not (
                    principal.can("leads:write_all") or existing.assigned_to == principal.user_id
                ):
                    errors.append(RowError(line, "", "", gettext(NOT_YOURS)))
                    continue
                _apply_update(existing, data)
                out.updated += 1
                continue
            if not principal.can("leads:write_all"):
                data["assigned_to"] = principal.user_id
            elif "assigned_to" not in data:  # as create_lead: the assignment setting decides
                data["assigned_to"] = await assignment.automatic_assignee(s, org_id, org_settings)
            lead = Lead(id=uuid.uuid4(), organization_id=org_id, stage_id=stage_id, **data)
            s.add(lead)
            known.add(lead)
            out.created += 1
        await s.flush()
        out.errors += len(errors)
        for error in errors:
            out.note(
                {
                    "line": error.line,
                    "outcome": "error",
                    "column": error.column,
                    "value": error.value[:80],
                    "message": error.message,
                }
            )
        out.processed += len(chunk.rows)
        write_chunk_errors(errors_dir(ctx.settings, org_id, ctx.job_id), chunk.first_row, errors)
        await _save_progress(s, ctx, out)
    return out


@job_handler(JOB_TYPE, ImportPayload, max_attempts=3, timeout_seconds=3600)
async def run_import(ctx: JobContext, payload: ImportPayload) -> dict[str, Any] | None:
    """One job per import; each chunk commits on its own (with the progress), so a 100,000-row
    file holds one worker slot, never a long transaction, and a retry resumes where the last
    attempt stopped. Other organizations' jobs keep running on the other slots."""
    org_id = ctx.organization_id
    if org_id is None:
        raise PermanentFailure("an import belongs to an organization")
    path = ctx.settings.data_dir.resolve() / payload.path
    if not path.is_file():
        raise PermanentFailure(f"the uploaded file {payload.file_name!r} is gone")
    async with tenant_transaction(ctx.database.sessionmaker, org_id, payload.created_by) as s:
        principal = await _job_principal(s, org_id, payload)
    fmt = FileFormat(payload.format, payload.encoding, payload.delimiter)
    # Reading the file is blocking CPU work (opening an XLSX, skipping to the chunk a retry
    # resumes at): in a worker thread, so a server running its worker in-process keeps
    # answering requests meanwhile.
    try:
        data = await anyio.to_thread.run_sync(open_rows, path, fmt)
    except ValidationFailed as exc:
        raise PermanentFailure(exc.detail) from exc
    previous = (
        await ctx.session.execute(
            select(BackgroundJob.result_data).where(BackgroundJob.id == ctx.job_id)
        )
    ).scalar_one_or_none() or {}
    progress = Progress(
        **{k: int(previous.get(k, 0)) for k in ("processed", "created", "updated", "skipped")},
        errors=int(previous.get("errors", 0)),
        total=payload.total_rows or 0,
        rows=list(previous.get("rows") or [])[:ROW_DETAILS],
    )
    chunks = _chunks(data, progress.processed, CHUNK_SIZE)
    while (chunk := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
        progress = await _run_chunk(ctx, principal, payload, data.headers, chunk, progress)
    progress.total = progress.processed
    await audit.record(
        ctx.session,
        action="leads_import",
        resource_type="import",
        resource_id=ctx.job_id,
        organization_id=org_id,
        user_id=payload.created_by,
        changes={
            "file_name": payload.file_name,
            "format": payload.format,
            "mapping": payload.mapping,
            "duplicate_policy": payload.duplicate_policy,
            **{k: v for k, v in progress.as_dict().items() if k != "rows"},
        },
    )

    await emit(
        ctx.session,
        DomainEvent(
            type="import.finished",
            organization_id=org_id,
            data={
                "job_id": str(ctx.job_id),
                "file_name": payload.file_name,
                **{k: v for k, v in progress.as_dict().items() if k != "rows"},
            },
            actor_id=payload.created_by,
        ),
    )

    async def _drop_upload() -> None:
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)

    after_commit(ctx.session, _drop_upload)
    return progress.as_dict()
