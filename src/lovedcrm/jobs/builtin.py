"""Built-in jobs: a no-op (health checks, benchmarks) and housekeeping."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import text

from lovedcrm.jobs.periodic import every
from lovedcrm.jobs.queue import JobContext, job_handler


class NoopPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = None


@job_handler("noop", NoopPayload, max_attempts=3, timeout_seconds=30, batch=50)
async def noop(ctx: JobContext, payload: NoopPayload) -> dict[str, Any] | None:
    return None


class CleanupPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep_completed_days: int = 14


@job_handler("system.cleanup", CleanupPayload, max_attempts=3, timeout_seconds=600)
async def cleanup(ctx: JobContext, payload: CleanupPayload) -> dict[str, Any] | None:
    """Drop expired idempotency keys, old rate-limit windows and old completed system jobs."""
    s = ctx.session
    keys = await s.execute(text("DELETE FROM idempotency_keys WHERE expires_at < now()"))
    windows = await s.execute(
        text("DELETE FROM rate_limit_counters WHERE window_start < now() - interval '2 hours'")
    )
    jobs = await s.execute(
        text(
            "DELETE FROM background_jobs WHERE organization_id IS NULL AND status = 'completed'"
            " AND completed_at < now() - make_interval(days => :d) AND id <> :me"
        ),
        {"d": payload.keep_completed_days, "me": ctx.job_id},
    )
    return {
        "idempotency_keys": keys.rowcount,  # type: ignore[attr-defined]
        "rate_limit_windows": windows.rowcount,  # type: ignore[attr-defined]
        "system_jobs": jobs.rowcount,  # type: ignore[attr-defined]
    }


every("cleanup", "system.cleanup", timedelta(hours=1))
