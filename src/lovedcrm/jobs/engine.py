"""The job engine on the ``background_jobs`` table.

- ``enqueue`` (``jobs.queue``) inserts in the caller's transaction: a job exists if and only
  if that transaction commits (a statement trigger NOTIFYs workers, and PostgreSQL delivers
  notifications only on commit).
- Workers claim with ``lovedcrm_claim_jobs`` (``FOR UPDATE SKIP LOCKED``, an equal share per
  organization per call, a lease in ``locked_by``/``locked_until``), wake on LISTEN/NOTIFY
  and poll as a fallback.
- Each job runs in one transaction scoped to its organization; the same transaction marks it
  completed, guarded by the lease, so a job's effects commit once: if the lease was lost (the
  worker stalled and another took the job), the whole transaction rolls back.
- Failures retry with exponential backoff and jitter up to ``max_attempts``, then ``failed``
  with the error. A worker that dies leaves its jobs to expire and be claimed again.
- Batches: jobs of a handler with ``batch > 1`` are grouped by organization and type and run
  in one transaction (completed together, guarded by the lease). A batch handler
  (``jobs.queue.batch_job_handler``) takes the whole group at once and may answer a failure
  for one job, which is then failed or retried alone while the others commit; any exception
  rolls the batch back and each of its jobs runs again on its own.
- SIGTERM: stop claiming, let running jobs finish for a grace period, release the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import structlog
from pydantic import ValidationError
from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from lovedcrm.config import Settings
from lovedcrm.core import clock
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import run_after_commit
from lovedcrm.jobs.periodic import enqueue_due
from lovedcrm.jobs.queue import (
    HANDLERS,
    JobContext,
    Outcome,
    PermanentFailure,
    RetryLater,
    backoff_seconds,
)

log = structlog.stdlib.get_logger("lovedcrm.jobs")


class LeaseLost(Exception):
    """Another worker owns the job now; this attempt's effects are rolled back."""


@dataclass
class ClaimedJob:
    id: uuid.UUID
    organization_id: uuid.UUID | None
    job_type: str
    job_data: dict[str, Any]
    attempts: int
    max_attempts: int
    enqueued_at: datetime | None = None
    priority: int = 0

    @property
    def bulk(self) -> bool:
        return self.priority < 0


_SCOPE = text(
    "SELECT set_config('app.organization_id', :org, true), set_config('app.user_id', '', true),"
    " set_config('app.scope', :scope, true), set_config('synchronous_commit', 'off', true)"
)
_COMPLETE = text(
    """
    UPDATE background_jobs
       SET status = 'completed', completed_at = now(), result_data = CAST(:result AS jsonb),
           error_message = NULL, locked_by = NULL, locked_until = NULL, updated_at = now()
     WHERE id = :id AND locked_by = :worker AND status = 'running'
    """
)
_COMPLETE_MANY = text(
    """
    UPDATE background_jobs AS j
       SET status = 'completed', completed_at = now(), result_data = CAST(r.result AS jsonb),
           error_message = NULL, locked_by = NULL, locked_until = NULL, updated_at = now()
      FROM unnest(CAST(:ids AS uuid[]), CAST(:results AS text[])) AS r(id, result)
     WHERE j.id = r.id AND j.locked_by = :worker AND j.status = 'running'
    """
)
_FAIL = text(
    """
    UPDATE background_jobs
       SET status = CASE WHEN :final OR attempts >= max_attempts THEN 'failed' ELSE 'retrying' END,
           completed_at = CASE WHEN :final OR attempts >= max_attempts THEN now() END,
           scheduled_for = now() + make_interval(secs => :delay),
           error_message = :error, locked_by = NULL, locked_until = NULL, updated_at = now()
     WHERE id = :id AND locked_by = :worker AND status = 'running'
    RETURNING status
    """
)


@dataclass
class WorkerStats:
    completed: int = 0
    failed: int = 0
    retried: int = 0
    lease_lost: int = 0


@dataclass
class Worker:
    database: Database
    settings: Settings
    concurrency: int = 8
    types: Sequence[str] | None = None
    lease_seconds: int = 60
    poll_seconds: float = 2.0
    grace_seconds: float = 20.0
    run_periodic: bool = True
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    )
    stats: WorkerStats = field(default_factory=WorkerStats)

    def __post_init__(self) -> None:
        # One entry per slot: the task and the ids of the jobs it holds (a batch or one job).
        self._running: dict[asyncio.Task[None], list[uuid.UUID]] = {}
        self._bulk_running: set[asyncio.Task[None]] = set()  # the slots holding bulk work
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._new_work = False  # a NOTIFY (or the poll) since the last claim

    # -- claiming ---------------------------------------------------------------------

    async def claim(self, limit: int, bulk_limit: int | None = None) -> list[ClaimedJob]:
        """Up to ``limit`` ready jobs, of which at most ``bulk_limit`` bulk ones (None: no
        cap)."""
        async with self.database.app_engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, organization_id, job_type, job_data, attempts, max_attempts,"
                        " created_at, priority FROM lovedcrm_claim_jobs(:w, :n, :lease,"
                        " CAST(:types AS text[]), CAST(:now AS timestamptz), :bulk)"
                    ),
                    {
                        "w": self.worker_id,
                        "n": limit,
                        "lease": self.lease_seconds,
                        "types": list(self.types) if self.types else None,
                        # A manual clock (tests) decides what is ready; else the database.
                        "now": clock.now() if clock.current().manual else None,
                        "bulk": bulk_limit,
                    },
                )
            ).all()
            await conn.commit()
        return [
            ClaimedJob(
                r.id,
                r.organization_id,
                r.job_type,
                r.job_data or {},
                r.attempts,
                r.max_attempts,
                r.created_at,
                r.priority or 0,
            )
            for r in rows
        ]

    @property
    def _bulk_slots(self) -> int:
        """Slots bulk work may hold: all but one kept for interactive work (a worker of one
        slot keeps none)."""
        return self.concurrency - 1 if self.concurrency > 1 else self.concurrency

    # -- running one job ------------------------------------------------------------------

    async def execute(self, job: ClaimedJob) -> None:
        spec = HANDLERS.get(job.job_type)
        if spec is None:
            await self._fail(job, f"no handler for job type {job.job_type!r}", final=True)
            return
        try:
            payload = spec.payload.model_validate(job.job_data)
        except ValidationError as exc:
            await self._fail(job, f"invalid payload: {exc}", final=True)
            return
        try:
            async with asyncio.timeout(spec.timeout_seconds):
                async with self.database.sessionmaker() as session:
                    # The job's connection is taken from the pool at its first statement,
                    # not before: a handler that first waits on the network (a webhook
                    # delivery) holds none meanwhile.
                    self._scope_when_begun(session, job.organization_id)
                    async with session.begin():
                        ctx = self._context(session, job)
                        result = await spec.fn(ctx, payload)
                        done = await session.execute(
                            _COMPLETE,
                            {
                                "id": job.id,
                                "worker": self.worker_id,
                                "result": json.dumps(result or {}, default=str),
                            },
                        )
                        if done.rowcount != 1:  # type: ignore[attr-defined]
                            raise LeaseLost(str(job.id))
                    await run_after_commit(session)
            self.stats.completed += 1
        except LeaseLost:
            self.stats.lease_lost += 1
            log.warning("job lease lost; its effects were rolled back", job_id=str(job.id))
        except RetryLater as exc:
            await self._fail(job, exc.reason, delay=exc.seconds)
        except PermanentFailure as exc:
            await self._fail(job, str(exc) or type(exc).__name__, final=True)
        except TimeoutError:
            await self._fail(job, f"timed out after {spec.timeout_seconds:g}s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("job failed", job_id=str(job.id), job_type=job.job_type, error=repr(exc))
            await self._fail(job, "".join(traceback.format_exception_only(exc)).strip()[:4000])

    def _context(self, session: AsyncSession, job: ClaimedJob) -> JobContext:
        return JobContext(
            session=session,
            job_id=job.id,
            job_type=job.job_type,
            organization_id=job.organization_id,
            attempt=job.attempts,
            max_attempts=job.max_attempts,
            settings=self.settings,
            database=self.database,
            enqueued_at=job.enqueued_at,
        )

    @staticmethod
    async def _scope(session: AsyncSession, organization_id: uuid.UUID | None) -> None:
        # One round trip: tenant, system scope, and an asynchronous commit. The job's effects
        # and its "completed" mark share the transaction, so a commit lost in a crash loses
        # both and the job simply runs again: no fsync wait is needed per job.
        await session.execute(
            _SCOPE,
            {
                "org": str(organization_id) if organization_id else "",
                "scope": "" if organization_id else "system",
            },
        )

    @staticmethod
    def _scope_when_begun(session: AsyncSession, organization_id: uuid.UUID | None) -> None:
        """Run :meth:`_scope`'s statement on the connection the session's transaction takes,
        when it takes one."""
        params = {
            "org": str(organization_id) if organization_id else "",
            "scope": "" if organization_id else "system",
        }

        def scope(_session: Session, _transaction: object, connection: Connection) -> None:
            connection.execute(_SCOPE, params)

        event.listen(session.sync_session, "after_begin", scope)

    async def _fail(
        self, job: ClaimedJob, error: str, *, final: bool = False, delay: float | None = None
    ) -> None:
        wait = backoff_seconds(job.attempts) if delay is None else max(0.0, delay)
        async with self.database.sessionmaker() as session, session.begin():
            await self._scope(session, job.organization_id)
            status = (
                await session.execute(
                    _FAIL,
                    {
                        "id": job.id,
                        "worker": self.worker_id,
                        "final": final,
                        "delay": wait,
                        "error": error,
                    },
                )
            ).scalar_one_or_none()
        if status == "failed":
            self.stats.failed += 1
            log.error("job failed for good", job_id=str(job.id), job_type=job.job_type, error=error)
        elif status == "retrying":
            self.stats.retried += 1

    # -- the loop -------------------------------------------------------------------------

    async def _listen(self) -> None:
        """Wake the claim loop on NOTIFY; reconnects with a pause if the connection drops."""
        url = self.database.app_url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        while not self._stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute("LISTEN lovedcrm_jobs")
                    async for _ in conn.notifies():
                        self._new_work = True
                        self._wake.set()
                        if self._stopping.is_set():
                            return
            except (psycopg.Error, OSError) as exc:
                log.warning("job listener reconnecting", error=repr(exc))
                await asyncio.sleep(1)

    async def _heartbeat(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(max(1.0, self.lease_seconds / 3))
            ids = [jid for held in self._running.values() for jid in held]
            if not ids:
                continue
            try:
                async with self.database.app_engine.connect() as conn:
                    await conn.execute(
                        text("SELECT lovedcrm_extend_leases(:w, CAST(:ids AS uuid[]), :lease)"),
                        {"w": self.worker_id, "ids": ids, "lease": self.lease_seconds},
                    )
                    await conn.commit()
            except Exception as exc:
                log.warning("heartbeat failed", error=repr(exc))

    async def _periodic(self) -> None:
        while not self._stopping.is_set():
            try:
                await enqueue_due(self.database)
            except Exception as exc:
                log.warning("periodic scheduling failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=15)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        log.info("worker started", worker=self.worker_id, concurrency=self.concurrency)
        helpers = [asyncio.create_task(self._listen()), asyncio.create_task(self._heartbeat())]
        if self.run_periodic:
            helpers.append(asyncio.create_task(self._periodic()))
        try:
            while not self._stopping.is_set():
                free = self.concurrency - len(self._running)
                claimed: list[ClaimedJob] = []
                # Claim in batches (one claim per half-pool, not one per finished job): a
                # claim costs a round trip and a scan, which dominates short jobs. But new
                # work (a NOTIFY, or the poll's fallback) is claimed into any free slot: with
                # long jobs holding most slots it would otherwise wait until they end.
                if free > 0 and (
                    free * 2 >= self.concurrency or not self._running or self._new_work
                ):
                    self._wake.clear()
                    self._new_work = False
                    try:
                        bulk_free = max(0, min(free, self._bulk_slots - len(self._bulk_running)))
                        claimed = await self.claim(
                            free * self._max_batch, bulk_free * self._max_batch
                        )
                    except Exception as exc:  # the database may be restarting
                        log.warning("claim failed", error=repr(exc))
                        await asyncio.sleep(1)
                        continue
                for lane, bulk in self._lanes(self._chunks(claimed), bulk_free):
                    task = asyncio.create_task(self._execute_in_turn(lane))
                    self._running[task] = [j.id for chunk in lane for j in chunk]
                    if bulk:
                        self._bulk_running.add(task)
                    task.add_done_callback(self._on_done)
                if claimed and len(claimed) == free * self._max_batch:
                    continue  # more may be waiting
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
                except TimeoutError:
                    self._new_work = True  # the poll: NOTIFY may have been missed
        finally:
            await self._shutdown(helpers)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._bulk_running.discard(task)
        self._wake.set()  # a slot is free

    @property
    def _max_batch(self) -> int:
        specs = (
            [HANDLERS[t] for t in self.types if t in HANDLERS] if self.types else HANDLERS.values()
        )
        return max(
            1, min(self.settings.worker_max_batch, max((spec.batch for spec in specs), default=1))
        )

    @staticmethod
    def _lanes(
        chunks: list[list[ClaimedJob]], bulk_slots: int
    ) -> list[tuple[list[list[ClaimedJob]], bool]]:
        """The tasks to start: each interactive chunk on its own; the bulk chunks shared out
        over at most ``bulk_slots`` tasks that run theirs in turn, so bulk work never holds
        more slots than it was given."""
        lanes: list[tuple[list[list[ClaimedJob]], bool]] = [
            ([chunk], False) for chunk in chunks if not chunk[0].bulk
        ]
        bulk = [chunk for chunk in chunks if chunk[0].bulk]
        width = max(1, min(bulk_slots, len(bulk)))
        lanes.extend((bulk[i::width], True) for i in range(width) if bulk[i::width])
        return lanes

    async def _execute_in_turn(self, chunks: list[list[ClaimedJob]]) -> None:
        for chunk in chunks:
            await self.execute_chunk(chunk)

    def _chunks(self, jobs: list[ClaimedJob]) -> list[list[ClaimedJob]]:
        """Group batchable jobs by organization and type, up to the handler's batch size."""
        chunks: list[list[ClaimedJob]] = []
        open_: dict[tuple[uuid.UUID | None, str, bool], list[ClaimedJob]] = {}
        for job in jobs:
            spec = HANDLERS.get(job.job_type)
            size = min(spec.batch, self._max_batch) if spec else 1
            if spec is None or size <= 1:
                chunks.append([job])
                continue
            key = (job.organization_id, job.job_type, job.bulk)
            chunk = open_.get(key)
            if chunk is None or len(chunk) >= size:
                chunk = open_[key] = []
                chunks.append(chunk)
            chunk.append(job)
        return chunks

    async def execute_chunk(self, chunk: list[ClaimedJob]) -> None:
        if len(chunk) == 1:
            await self.execute(chunk[0])
            return
        try:
            failed = await self._execute_together(chunk)
            self.stats.completed += len(chunk) - len(failed)
        except asyncio.CancelledError:
            raise
        except Exception:  # nothing committed: run each job on its own
            for job in chunk:
                await self.execute(job)
            return
        # Jobs a batch handler answered as failed: the others committed; these fail or retry.
        for job, exc in failed:
            if isinstance(exc, RetryLater):
                await self._fail(job, exc.reason, delay=exc.seconds)
            else:
                await self._fail(job, str(exc) or type(exc).__name__, final=True)

    async def _execute_together(
        self, chunk: list[ClaimedJob]
    ) -> list[tuple[ClaimedJob, RetryLater | PermanentFailure]]:
        """Run ``chunk`` in one transaction; the jobs a batch handler answered as failed."""
        spec = HANDLERS[chunk[0].job_type]
        payloads = [spec.payload.model_validate(job.job_data) for job in chunk]
        failed: list[tuple[ClaimedJob, RetryLater | PermanentFailure]] = []
        async with self.database.sessionmaker() as session:
            async with session.begin():
                await self._scope(session, chunk[0].organization_id)
                ctxs = [self._context(session, job) for job in chunk]
                outcomes: list[Outcome]
                if spec.many is not None:
                    async with asyncio.timeout(spec.timeout_seconds):
                        outcomes = await spec.many(ctxs, payloads)
                    if len(outcomes) != len(chunk):
                        raise RuntimeError(f"{spec.job_type}: one outcome per job expected")
                else:
                    outcomes = []
                    for ctx, payload in zip(ctxs, payloads, strict=True):
                        async with asyncio.timeout(spec.timeout_seconds):
                            outcomes.append(await spec.fn(ctx, payload))
                done: list[uuid.UUID] = []
                results: list[str] = []
                for job, outcome in zip(chunk, outcomes, strict=True):
                    if isinstance(outcome, RetryLater | PermanentFailure):
                        failed.append((job, outcome))
                    else:
                        done.append(job.id)
                        results.append(json.dumps(outcome or {}, default=str))
                if done:
                    marked = await session.execute(
                        _COMPLETE_MANY,
                        {"ids": done, "results": results, "worker": self.worker_id},
                    )
                    if marked.rowcount != len(done):  # type: ignore[attr-defined]
                        lost = len(done) - marked.rowcount  # type: ignore[attr-defined]
                        raise LeaseLost(f"{lost} of the batch")
            await run_after_commit(session)
        return failed

    async def _shutdown(self, helpers: list[asyncio.Task[None]]) -> None:
        running = list(self._running)
        if running:
            log.info("worker stopping: finishing running jobs", count=len(running))
            _, pending = await asyncio.wait(running, timeout=self.grace_seconds)
            unfinished = [jid for task in pending for jid in self._running.get(task, [])]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if unfinished:
                async with self.database.app_engine.connect() as conn:
                    await conn.execute(
                        text("SELECT lovedcrm_release_jobs(:w, CAST(:ids AS uuid[]))"),
                        {"w": self.worker_id, "ids": unfinished},
                    )
                    await conn.commit()
                log.info("released unfinished jobs", count=len(unfinished))
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        log.info("worker stopped", worker=self.worker_id, **self.stats.__dict__)


async def run_until_idle(
    database: Database,
    settings: Settings,
    *,
    types: Sequence[str] | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 - a budget for the loop, not one await
    concurrency: int = 4,
) -> int:
    """Run ready jobs in-process until none are ready (tests, the demo, one-off commands).
    Returns how many jobs were attempted."""
    worker = Worker(database, settings, concurrency=concurrency, types=types, run_periodic=False)
    deadline = time.monotonic() + timeout
    ran = 0
    while time.monotonic() < deadline:
        batch = await worker.claim(concurrency)
        if not batch:
            break
        await asyncio.gather(*(worker.execute(j) for j in batch))
        ran += len(batch)
    return ran
