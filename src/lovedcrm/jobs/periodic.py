"""Periodic jobs: a schedule in code. Every worker tries to enqueue each due period with the
dedupe key ``periodic:<name>:<period start>``, so a period's job is created once however many
workers run, and runs once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lovedcrm.db.engine import Database
from lovedcrm.jobs.queue import enqueue


@dataclass(frozen=True)
class Periodic:
    name: str
    job_type: str
    every: timedelta
    payload: dict[str, Any] = field(default_factory=dict)


_SCHEDULE: dict[str, Periodic] = {}


def every(name: str, job_type: str, interval: timedelta, **payload: Any) -> Periodic:
    """Put a job on the schedule (called by the module that defines its handler)."""
    item = Periodic(name, job_type, interval, dict(payload))
    if _SCHEDULE.setdefault(name, item) != item:
        raise RuntimeError(f"two periodic jobs named {name!r}")
    return item


def schedule() -> tuple[Periodic, ...]:
    return tuple(_SCHEDULE.values())


def period_start(now: datetime, every: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    n = (now - epoch) // every
    return epoch + n * every


async def enqueue_due(
    database: Database, now: datetime | None = None, items: tuple[Periodic, ...] | None = None
) -> int:
    """Enqueue the current period of every scheduled job; returns how many were new."""
    now = now or datetime.now(UTC)
    created = 0
    async with database.sessionmaker() as session, session.begin():
        for item in items if items is not None else schedule():
            start = period_start(now, item.every)
            job_id = await enqueue(
                session,
                item.job_type,
                item.payload,
                organization_id=None,
                scheduled_for=start,
                dedupe_key=f"periodic:{item.name}:{start.isoformat()}",
            )
            created += job_id is not None
    return created
