"""The organization's view of its jobs: counts, failures with their errors, retry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.core.errors import Conflict, NotFound
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.pagination import keyset_after, page_of
from lovedcrm.core.principal import Principal
from lovedcrm.jobs.models import JOB_STATUSES, BackgroundJob


@dataclass
class JobStats:
    by_status: dict[str, int]
    by_type: dict[str, dict[str, int]]


async def stats(session: AsyncSession, principal: Principal) -> JobStats:
    principal.require("jobs:manage")
    rows = (
        await session.execute(
            select(BackgroundJob.job_type, BackgroundJob.status, func.count())
            .where(BackgroundJob.organization_id == principal.org())
            .group_by(BackgroundJob.job_type, BackgroundJob.status)
        )
    ).all()
    by_status = dict.fromkeys(JOB_STATUSES, 0)
    by_type: dict[str, dict[str, int]] = {}
    for job_type, raw_status, n in rows:
        status = raw_status or "pending"
        by_status[status] = by_status.get(status, 0) + n
        by_type.setdefault(job_type, dict.fromkeys(JOB_STATUSES, 0))[status] = n
    return JobStats(by_status=by_status, by_type=by_type)


async def list_jobs(
    session: AsyncSession,
    principal: Principal,
    *,
    status: str | None = None,
    job_type: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[BackgroundJob], str | None]:
    principal.require("jobs:manage")
    query = select(BackgroundJob).where(BackgroundJob.organization_id == principal.org())
    if status:
        query = query.where(BackgroundJob.status == status)
    if job_type:
        query = query.where(BackgroundJob.job_type == job_type)
    query = keyset_after(query, cursor, key=BackgroundJob.created_at, id_col=BackgroundJob.id)
    rows = list((await session.execute(query.limit(limit + 1))).scalars())
    return page_of(rows, limit, key_of=lambda job: job.created_at)


async def retry(session: AsyncSession, principal: Principal, job_id: uuid.UUID) -> BackgroundJob:
    """Give a failed job a fresh set of attempts, now."""
    principal.require("jobs:manage")
    job = await get_in_org(
        session,
        BackgroundJob,
        job_id,
        principal,
        NotFound("No job with that id.", code="job_not_found"),
    )
    if job.status != "failed":
        raise Conflict(
            f"Only failed jobs can be retried; this one is {job.status}.", code="job_not_failed"
        )
    before: dict[str, Any] = {
        "status": job.status,
        "attempts": job.attempts,
        "error": job.error_message,
    }
    await session.execute(
        update(BackgroundJob)
        .where(BackgroundJob.id == job_id)
        .values(
            status="pending",
            attempts=0,
            scheduled_for=func.now(),
            completed_at=None,
            updated_at=func.now(),
        )
    )
    await audit.record_by(
        session,
        principal,
        "job_retry",
        "background_job",
        job_id,
        {"before": before, "after": {"status": "pending", "attempts": 0}},
    )
    await session.refresh(job)
    return job
