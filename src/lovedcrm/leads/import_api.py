"""JSON routes for importing leads (CSV/XLSX, as a background job) and exporting them (CSV,
streamed). Rules in leads.importing and leads.exporting.

Included before ``leads.api``: ``/api/v1/leads/export.csv`` must match before
``/api/v1/leads/{lead_id}``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Query, UploadFile, status
from fastapi.responses import StreamingResponse
from pydantic import ConfigDict, Field

from lovedcrm.core import clock
from lovedcrm.core.deps import DatabaseDep, Require, SessionDep, SettingsDep
from lovedcrm.core.openapi import Problem, problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.core.schemas import IsoDateTime, Out, StrictIn
from lovedcrm.jobs.models import BackgroundJob
from lovedcrm.leads import exporting, import_files, importing
from lovedcrm.leads.schemas import LeadSort, LeadStatus

router = APIRouter(tags=["imports"])
Importer = Annotated[Principal, Depends(Require("leads:import"))]
Exporter = Annotated[Principal, Depends(Require("leads:export"))]
Reader = Annotated[Principal, Depends(Require("leads:read"))]


class CSVResponse(StreamingResponse):
    media_type = "text/csv"


def _csv_doc(description: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"description": description, "content": {"text/csv": {"schema": {"type": "string"}}}}
    }


_TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {
        "model": Problem,
        "description": "The file is larger than the import limit (the problem names it)",
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }
}


# --- schemas ------------------------------------------------------------------------------


class PreviewRowOut(Out):
    line: int = Field(description="The row's line number in the file (the header is line 1).")
    values: dict[str, str]


class ImportUploadOut(Out):
    upload_id: str = Field(description="Pass to POST /api/v1/imports/start.")
    file_name: str
    format: Literal["csv", "xlsx"]
    encoding: str | None = Field(description="CSV only: utf-8, utf-8-sig, cp1252 or latin-1.")
    delimiter: str | None = Field(description="CSV only: the detected separator.")
    headers: list[str]
    suggested_mapping: dict[str, str | None] = Field(
        description="Each column → the lead field it looks like (null: not imported)."
    )
    fields: list[str] = Field(
        description="Every field a column can be mapped to (custom fields as custom:<key>)."
    )
    preview: list[PreviewRowOut]
    total_rows: int


class ImportStartIn(StrictIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "upload_id": "0f5c0c3be0f84a0c9d7f6a1b2c3d4e5f",
                    "mapping": {"Nome": "full_name", "E-mail": "email", "Celular": "phone"},
                    "duplicate_policy": "skip",
                }
            ]
        }
    )

    upload_id: str = Field(min_length=1, max_length=64)
    mapping: dict[str, str | None] = Field(
        description="Column name → lead field (or null to leave the column out)."
    )
    duplicate_policy: Literal["skip", "update", "create"] = Field(
        default="skip",
        description="A row matching an existing lead (same e-mail or phone, or a similar name "
        "at the same company): skip it, update that lead with the row's values, or create "
        "another lead anyway.",
    )


class ImportRowOut(Out):
    """Why a row was skipped (the lead it matched, and by what) or failed (column, value,
    message)."""

    line: int = Field(description="The row's line in the file (the header is line 1).")
    outcome: Literal["skipped", "error"]
    reason: Literal["email", "phone", "name_and_company"] | None = None
    lead_id: uuid.UUID | None = None
    lead_name: str | None = None
    column: str | None = None
    value: str | None = None
    message: str | None = None


class ImportProgressOut(Out):
    processed: int
    total: int | None
    created: int
    updated: int
    skipped: int
    errors: int
    rows: list[ImportRowOut] = Field(
        default_factory=list,
        description="The first skipped or failed rows (up to 100) with the reason; every "
        "failed row is in the errors file.",
    )


class ImportOut(Out):
    id: uuid.UUID
    status: str | None = Field(examples=["running"])
    file_name: str | None
    duplicate_policy: str | None
    progress: ImportProgressOut
    error_message: str | None
    errors_url: str
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None


def _import_out(job: BackgroundJob) -> ImportOut:
    data = job.job_data or {}
    return ImportOut(
        id=job.id,
        status=job.status,
        file_name=data.get("file_name"),
        duplicate_policy=data.get("duplicate_policy"),
        progress=ImportProgressOut(**importing.progress_of(job)),
        error_message=job.error_message,
        errors_url=f"/api/v1/imports/{job.id}/errors.csv",
        created_at=job.created_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
    )


# --- import -------------------------------------------------------------------------------


@router.post(
    "/api/v1/imports",
    response_model=ImportUploadOut,
    status_code=status.HTTP_201_CREATED,
    responses={**problem_responses(401, 403, 422), **_TOO_LARGE},
)
async def upload_import(
    principal: Importer,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="A .csv or .xlsx file")],
) -> ImportUploadOut:
    """Step 1: upload a file. Answers its columns, a suggested mapping and the first rows;
    nothing is imported yet. Files over the import limit are refused with 413."""

    async def chunks() -> AsyncIterator[bytes]:
        while block := await file.read(1 << 20):
            yield block

    analysis = await importing.analyse_upload(
        session, settings, principal, file.filename or "upload.csv", chunks()
    )
    return ImportUploadOut.model_validate(analysis)


@router.post(
    "/api/v1/imports/start",
    response_model=ImportOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def start_import(
    body: ImportStartIn, principal: Importer, session: SessionDep, settings: SettingsDep
) -> ImportOut:
    """Step 2: import an uploaded file with a column mapping and a duplicate policy, as a
    background job. Follow it with GET /api/v1/imports/{id}."""
    job_id = await importing.start_import(
        session,
        settings,
        principal,
        upload_id=body.upload_id,
        mapping=body.mapping,
        duplicate_policy=body.duplicate_policy,
    )
    return _import_out(await importing.get_import(session, principal, job_id))


@router.get(
    "/api/v1/imports/{import_id}",
    response_model=ImportOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_import(import_id: uuid.UUID, principal: Importer, session: SessionDep) -> ImportOut:
    """An import's status and progress (rows processed, created, updated, skipped, in error)."""
    return _import_out(await importing.get_import(session, principal, import_id))


@router.get(
    "/api/v1/imports/{import_id}/errors.csv",
    response_class=CSVResponse,
    responses={
        **_csv_doc("line,column,value,message per bad row"),
        **problem_responses(401, 403, 404, 422),
    },
)
async def import_errors(
    import_id: uuid.UUID, principal: Importer, session: SessionDep, settings: SettingsDep
) -> CSVResponse:
    """The rows that were not imported, by line number, with the column and the reason."""
    job = await importing.get_import(session, principal, import_id)
    directory = import_files.errors_dir(settings, principal.org(), job.id)
    return CSVResponse(
        import_files.iter_errors_csv(directory),
        headers={"Content-Disposition": f'attachment; filename="import-{job.id}-errors.csv"'},
    )


# --- export -------------------------------------------------------------------------------


@router.get(
    "/api/v1/leads/export.csv",
    response_class=CSVResponse,
    tags=["leads"],
    responses={
        **_csv_doc("The leads, UTF-8 with BOM, comma-separated"),
        **problem_responses(400, 401, 403, 422),
    },
)
async def export_leads(
    principal: Exporter,
    _reader: Reader,
    session: SessionDep,
    database: DatabaseDep,
    stage_id: uuid.UUID | None = None,
    assigned_to: uuid.UUID | None = None,
    status: LeadStatus | None = None,
    source: Annotated[str | None, Query(max_length=100)] = None,
    score_min: Annotated[int | None, Query(ge=0, le=100)] = None,
    score_max: Annotated[int | None, Query(ge=0, le=100)] = None,
    created_after: Annotated[IsoDateTime | None, Query(description="Inclusive")] = None,
    created_before: Annotated[IsoDateTime | None, Query(description="Exclusive")] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    sort: LeadSort = "-created_at",
) -> CSVResponse:
    """The leads GET /api/v1/leads would list with the same filters (all pages), as CSV,
    streamed. Audited as `data_export`."""
    filters = exporting.ExportFilters(
        stage_id=stage_id,
        assigned_to=assigned_to,
        status=status,
        source=source,
        score_min=score_min,
        score_max=score_max,
        created_after=created_after,
        created_before=created_before,
        q=q,
        sort=sort,
    )
    body = await exporting.export_csv(session, database, principal, filters)
    stamp = clock.now().astimezone().strftime("%Y%m%d-%H%M%S")
    return CSVResponse(
        body, headers={"Content-Disposition": f'attachment; filename="leads-{stamp}.csv"'}
    )
