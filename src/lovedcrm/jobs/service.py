"""The organization's view of its jobs: counts, failures with their errors, retry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.core.errors import Conflict, NotFound
from lovedcrm.core.pagination import BadCursor, decode_cursor, encode_cursor
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
    if cursor:
        created_raw, id_raw = decode_cursor(cursor, 2)
        try:
            created, last_id = datetime.fromisoformat(created_raw), uuid.UUID(id_raw)
        except ValueError as exc:
            raise BadCursor(
                "The cursor is not valid. Use the next_cursor of a previous page."
            ) from exc
        query = query.where(
            or_(
                BackgroundJob.created_at < created,
                and_(BackgroundJob.created_at == created, BackgroundJob.id < last_id),
            )
        )
    rows = list(
        (
            await session.execute(
                query.order_by(BackgroundJob.created_at.desc(), BackgroundJob.id.desc()).limit(
                    limit + 1
                )
            )
        ).scalars()
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(
            [last.created_at.isoformat() if last.created_at else "", last.id]
        )
    return rows, next_cursor


async def retry(session: AsyncSession, principal: Principal, job_id: uuid.UUID) -> BackgroundJob:
    """Give a failed job a fresh set of attempts, now."""
    principal.require("jobs:manage")
    job = await session.get(BackgroundJob, job_id)
    if job is None or job.organization_id != principal.org():
        raise NotFound("No job with that id.", code="job_not_found")
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
    await audit.record(
        session,
        action="job_retry",
        resource_type="background_job",
        resource_id=job_id,
        organization_id=principal.org(),
        user_id=principal.user_id,
        changes={"before": before, "after": {"status": "pending", "attempts": 0}},
    )
    await session.refresh(job)
    return job
