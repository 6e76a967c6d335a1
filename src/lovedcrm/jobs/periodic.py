"""Periodic jobs: a schedule in code. Every worker tries to enqueue each due period with the
dedupe key ``periodic:<name>:<period start>``, so a period's job is created once however many
workers run, and runs once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import enqueue


@dataclass(frozen=True)
class Periodic:
    name: str
    job_type: str
    every: timedelta
    payload: dict[str, Any] = field(default_factory=dict)


SCHEDULE: tuple[Periodic, ...] = (Periodic("cleanup", "system.cleanup", timedelta(hours=1)),)


def period_start(now: datetime, every: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    n = (now - epoch) // every
    return epoch + n * every


async def enqueue_due(
    database: Database, now: datetime | None = None, schedule: tuple[Periodic, ...] = SCHEDULE
) -> int:
    """Enqueue the current period of every scheduled job; returns how many were new."""
    now = now or datetime.now(UTC)
    created = 0
    async with database.sessionmaker() as session, session.begin():
        for item in schedule:
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
