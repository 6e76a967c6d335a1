"""``reports.recompute``: rebuild one organization's aggregates from its history, in the
background. Queued when a report finds leads older than the aggregates (an organization
that existed before migration 0012, or data loaded around the events)."""

from __future__ import annotations

from typing import Any

from lovedcrm.jobs.queue import JobContext, job_handler
from lovedcrm.reports import aggregates


@job_handler(
    aggregates.RECOMPUTE, aggregates.RecomputePayload, max_attempts=3, timeout_seconds=1800
)
async def recompute(ctx: JobContext, payload: aggregates.RecomputePayload) -> dict[str, Any] | None:
    assert ctx.organization_id is not None
    done = await aggregates.recompute(ctx.session, ctx.organization_id)
    return {"leads": done.leads, "spans": done.spans, "activity_buckets": done.activity_buckets}
