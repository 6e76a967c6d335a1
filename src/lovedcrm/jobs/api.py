"""JSON routes for the organization's background jobs (admins: jobs:manage)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from lovedcrm.core.deps import Require, SessionDep
from lovedcrm.core.principal import Principal
from lovedcrm.core.schemas import Out
from lovedcrm.jobs import service

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
Manager = Annotated[Principal, Depends(Require("jobs:manage"))]
JobStatus = Literal["pending", "running", "completed", "failed", "retrying"]


class JobStatsOut(Out):
    by_status: dict[str, int]
    by_type: dict[str, dict[str, int]]


class JobOut(Out):
    id: uuid.UUID
    job_type: str
    status: str | None
    attempts: int | None
    max_attempts: int | None
    scheduled_for: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    result_data: dict[str, Any] | None
    created_at: datetime | None


class JobPageOut(Out):
    items: list[JobOut]
    next_cursor: str | None


@router.get("/stats", response_model=JobStatsOut)
async def job_stats(principal: Manager, session: SessionDep) -> JobStatsOut:
    """Counts of this organization's jobs by status, and by type and status."""
    result = await service.stats(session, principal)
    return JobStatsOut(by_status=result.by_status, by_type=result.by_type)


@router.get("", response_model=JobPageOut, responses={400: {"description": "Invalid cursor"}})
async def list_jobs(
    principal: Manager,
    session: SessionDep,
    status: JobStatus | None = None,
    job_type: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> JobPageOut:
    """Newest first; `status=failed` lists failures with their errors."""
    rows, next_cursor = await service.list_jobs(
        session, principal, status=status, job_type=job_type, limit=limit, cursor=cursor
    )
    return JobPageOut(items=[JobOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.post(
    "/{job_id}/retry",
    response_model=JobOut,
    responses={404: {"description": "Not found"}, 409: {"description": "Job is not failed"}},
)
async def retry_job(job_id: uuid.UUID, principal: Manager, session: SessionDep) -> JobOut:
    return JobOut.model_validate(await service.retry(session, principal, job_id))
