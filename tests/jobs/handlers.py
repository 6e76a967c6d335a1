"""Job handlers used only by the tests (imported by the tests and by worker_proc.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from lovedcrm.jobs.queue import JobContext, PermanentFailure, RetryLater, job_handler
from lovedcrm.reports.models import AnalyticsEvent


class RecordPayload(BaseModel):
    tag: str
    sleep_first_attempt: float = 0.0
    fail_until_attempt: int = 0
    permanent: bool = False


@job_handler("test.record", RecordPayload, max_attempts=3, timeout_seconds=120)
async def record(ctx: JobContext, payload: RecordPayload) -> dict[str, Any] | None:
    """Writes one analytics row per successful run, in the job's own transaction, so the
    rows count how many times a job's effects committed."""
    if ctx.attempt == 1 and payload.sleep_first_attempt:
        print(f"started {ctx.job_id}", flush=True)
        await asyncio.sleep(payload.sleep_first_attempt)
    if payload.permanent:
        raise PermanentFailure("told to fail for good")
    if ctx.attempt <= payload.fail_until_attempt:
        raise RetryLater(0, f"failing attempt {ctx.attempt} on purpose")
    ctx.session.add(
        AnalyticsEvent(
            organization_id=ctx.organization_id,
            event_type="test_job",
            event_data={"job_id": str(ctx.job_id), "tag": payload.tag},
        )
    )
    return {"attempt": ctx.attempt}


class BoomPayload(BaseModel):
    message: str = "boom"


@job_handler("test.boom", BoomPayload, max_attempts=2, timeout_seconds=30)
async def boom(ctx: JobContext, payload: BoomPayload) -> dict[str, Any] | None:
    raise RuntimeError(payload.message)


class FairPayload(BaseModel):
    n: int = 0


@job_handler("test.fair", FairPayload, max_attempts=1, timeout_seconds=30)
async def fair(ctx: JobContext, payload: FairPayload) -> dict[str, Any] | None:
    return None


class BatchPayload(BaseModel):
    tag: str
    fail: bool = False


@job_handler("test.batch", BatchPayload, max_attempts=1, timeout_seconds=30, batch=10)
async def batched(ctx: JobContext, payload: BatchPayload) -> dict[str, Any] | None:
    """Batchable: jobs of one organization may share a transaction."""
    ctx.session.add(
        AnalyticsEvent(
            organization_id=ctx.organization_id,
            event_type="test_job",
            event_data={"job_id": str(ctx.job_id), "tag": payload.tag},
        )
    )
    if payload.fail:
        raise RuntimeError("one bad job in the batch")
    return None


class ProbePayload(BaseModel):
    tag: str


@job_handler("test.pool_probe", ProbePayload, max_attempts=1, timeout_seconds=60)
async def pool_probe(ctx: JobContext, payload: ProbePayload) -> dict[str, Any] | None:
    """What a handler that first waits on something else holds: the pool's checked-out
    connections before and after its first statement, and the tenant that statement saw."""
    from sqlalchemy import text

    pool = ctx.database.app_engine.pool
    before = pool.checkedout()  # type: ignore[attr-defined]
    await asyncio.sleep(0)  # a network wait would be here
    tenant = text("SELECT current_setting('app.organization_id')")
    org = (await ctx.session.execute(tenant)).scalar()
    after = pool.checkedout()  # type: ignore[attr-defined]
    return {"before": before, "after": after, "org": org, "tag": payload.tag}


# Jobs of ``test.gate`` wait here until a test opens the gate (one event per process).
GATE = asyncio.Event()
GATE_ENTERED: list[int] = []
_GATE_MOVED = asyncio.Event()


async def gate_entered(enough: Callable[[list[int]], bool]) -> None:
    """Wait until the jobs that started at the gate are ``enough``."""
    while not enough(GATE_ENTERED):
        _GATE_MOVED.clear()
        await _GATE_MOVED.wait()


class GatePayload(BaseModel):
    n: int = 0


@job_handler("test.gate", GatePayload, max_attempts=1, timeout_seconds=60)
async def gate(ctx: JobContext, payload: GatePayload) -> dict[str, Any] | None:
    """Holds its slot until ``GATE`` is set; records that it started."""
    GATE_ENTERED.append(payload.n)
    _GATE_MOVED.set()
    await GATE.wait()
    return None
