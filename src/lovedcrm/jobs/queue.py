"""Queueing jobs: the handler registry and ``enqueue``.

- ``job_handler`` registers a handler for a job type when its module is imported; the modules
  are imported in one place, ``lovedcrm.wiring``.
- ``enqueue`` inserts in the caller's transaction: a job exists if and only if that
  transaction commits (a statement trigger NOTIFYs workers, and PostgreSQL delivers
  notifications only on commit).

Running them is ``jobs.engine``'s.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import SessionTransaction

from lovedcrm.config import Settings
from lovedcrm.core import clock
from lovedcrm.db.engine import Database

P = TypeVar("P", bound=BaseModel)


class RetryLater(Exception):
    """This attempt failed; run again after ``seconds`` if attempts remain."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds
        self.reason = reason


class PermanentFailure(Exception):
    """Fail now; retrying cannot help (bad payload, target refused)."""


@dataclass
class JobContext:
    session: AsyncSession
    job_id: uuid.UUID
    job_type: str
    organization_id: uuid.UUID | None
    attempt: int
    max_attempts: int
    settings: Settings
    database: Database
    # When the job was queued (the database's time): a webhook's moment of arrival.
    enqueued_at: datetime | None = None


Handler = Callable[[JobContext, Any], Awaitable[dict[str, Any] | None]]
# What a batch handler answers for each job: its result, or why that job alone failed.
Outcome = dict[str, Any] | None | RetryLater | PermanentFailure
BatchHandler = Callable[[list[JobContext], list[Any]], Awaitable[list[Outcome]]]


@dataclass(frozen=True)
class HandlerSpec:
    job_type: str
    payload: type[BaseModel]
    fn: Handler
    max_attempts: int
    timeout_seconds: float
    # >1: short, database-only handlers whose jobs of one organization may share one
    # transaction (all commit or none; on any error each job is re-run on its own).
    batch: int = 1
    # A handler that takes the whole batch at once (``batch_job_handler``): set-based work,
    # and a job that fails alone is answered as a failure while the others commit.
    many: BatchHandler | None = None


HANDLERS: dict[str, HandlerSpec] = {}


def job_handler(
    job_type: str,
    payload: type[P],
    *,
    max_attempts: int = 3,
    timeout_seconds: float = 300,
    batch: int = 1,
) -> Callable[
    [Callable[[JobContext, P], Awaitable[dict[str, Any] | None]]],
    Callable[[JobContext, P], Awaitable[dict[str, Any] | None]],
]:
    """Register the handler of ``job_type``; its payload is validated with ``payload``."""

    def register(
        fn: Callable[[JobContext, P], Awaitable[dict[str, Any] | None]],
    ) -> Callable[[JobContext, P], Awaitable[dict[str, Any] | None]]:
        if job_type in HANDLERS and HANDLERS[job_type].fn is not fn:
            raise RuntimeError(f"two handlers for job type {job_type!r}")
        HANDLERS[job_type] = HandlerSpec(
            job_type, payload, fn, max_attempts, timeout_seconds, batch
        )
        return fn

    return register


def batch_job_handler(
    job_type: str,
    payload: type[P],
    *,
    max_attempts: int = 3,
    timeout_seconds: float = 300,
    batch: int = 50,
) -> Callable[
    [Callable[[list[JobContext], list[P]], Awaitable[list[Outcome]]]],
    Callable[[list[JobContext], list[P]], Awaitable[list[Outcome]]],
]:
    """Register a handler that processes up to ``batch`` jobs of one organization in one
    transaction. It answers one outcome per job, in order: a result, or the
    ``PermanentFailure``/``RetryLater`` of a job that failed alone (the others commit, that
    one fails or retries on its own). An exception it raises rolls the whole batch back and
    each job is re-run alone. A job run alone (``run_until_idle``, the fallback) goes
    through the same handler as a batch of one."""

    def register(
        fn: Callable[[list[JobContext], list[P]], Awaitable[list[Outcome]]],
    ) -> Callable[[list[JobContext], list[P]], Awaitable[list[Outcome]]]:
        known = HANDLERS.get(job_type)
        if known is not None:
            if known.many is not fn:
                raise RuntimeError(f"two handlers for job type {job_type!r}")
            return fn

        async def one(ctx: JobContext, p: P) -> dict[str, Any] | None:
            (outcome,) = await fn([ctx], [p])
            if isinstance(outcome, RetryLater | PermanentFailure):
                raise outcome
            return outcome

        HANDLERS[job_type] = HandlerSpec(
            job_type,
            payload,
            one,
            max_attempts,
            timeout_seconds,
            batch,
            many=fn,
        )
        return fn

    return register


# Bulk work (periodic fan-outs over every organization, rebuilds, retraining) takes a negative
# priority: workers claim every organization's interactive jobs (priority >= 0: deliveries,
# sends, a user's import) before any bulk one, so a nightly job never delays a WhatsApp send.
BULK_PRIORITY = -10

_INSERT = text(
    """
    INSERT INTO background_jobs
        (id, organization_id, job_type, job_data, status, scheduled_for, max_attempts, priority,
         dedupe_key)
    VALUES (:id, :org, :type, CAST(:data AS jsonb), 'pending',
            COALESCE(CAST(:at AS timestamptz), now()), :max_attempts, :priority, :dedupe)
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
    """
)


async def enqueue(
    session: AsyncSession,
    job_type: str,
    payload: BaseModel | dict[str, Any],
    *,
    organization_id: uuid.UUID | None,
    delay: timedelta | None = None,
    scheduled_for: datetime | None = None,
    max_attempts: int | None = None,
    priority: int = 0,
    dedupe_key: str | None = None,
) -> uuid.UUID | None:
    """Queue a job in the caller's transaction. Returns its id, or None when a job with the
    same ``dedupe_key`` already exists. ``organization_id=None`` makes a system job."""
    spec = HANDLERS.get(job_type)
    if spec is None:
        raise ValueError(
            f"no handler registered for job type {job_type!r}: handlers are registered by "
            "importing lovedcrm.wiring"
        )
    data = payload if isinstance(payload, BaseModel) else spec.payload.model_validate(payload)
    if not isinstance(data, spec.payload):
        raise TypeError(f"{job_type} takes {spec.payload.__name__}, not {type(data).__name__}")
    if dedupe_key is not None and _queued_here(session, dedupe_key):
        return None  # queued earlier in this transaction: the INSERT would find it
    if organization_id is None:
        # System jobs are visible only under this transaction-local scope (RLS policy).
        await session.execute(text("SELECT set_config('app.scope', 'system', true)"))
    at = scheduled_for
    if delay is not None:
        at = clock.now() + delay
    elif at is None and clock.current().manual:
        at = clock.now()  # "now" on the manual clock, so a claim as of that time sees it
    job_id = uuid.uuid4()
    result = await session.execute(
        _INSERT,
        {
            "id": job_id,
            "org": organization_id,
            "type": job_type,
            "data": data.model_dump_json(),
            "at": at,
            "max_attempts": max_attempts or spec.max_attempts,
            "priority": priority,
            "dedupe": dedupe_key,
        },
    )
    if dedupe_key is not None:
        _remember(session, dedupe_key)
    return job_id if result.rowcount else None  # type: ignore[attr-defined]


# Dedupe keys queued (or found taken) in this session, with the transaction (or savepoint)
# that did it: a key counts as queued while that transaction is active, so many events of
# one unit of work asking for the same debounced job cost one INSERT, and a savepoint rolled
# back forgets its keys.
_DEDUPED = "jobs_dedupe_keys"


def _innermost(session: AsyncSession) -> SessionTransaction | None:
    sync = session.sync_session
    return sync.get_nested_transaction() or sync.get_transaction()


def _queued_here(session: AsyncSession, key: str) -> bool:
    seen: dict[str, SessionTransaction] = session.info.get(_DEDUPED, {})
    trans = seen.get(key)
    return trans is not None and trans.is_active


def _remember(session: AsyncSession, key: str) -> None:
    trans = _innermost(session)
    if trans is not None:
        session.info.setdefault(_DEDUPED, {})[key] = trans


def backoff_seconds(attempt: int, *, base: float = 2.0, cap: float = 3600.0) -> float:
    """Exponential backoff with full jitter around the mean: base·2^(n-1) × U(0.5, 1.5)."""
    mean: float = min(cap, base * 2.0 ** max(0, attempt - 1))
    return mean * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not security
