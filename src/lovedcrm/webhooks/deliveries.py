"""What a subscription's delivery log cannot show by itself: the deliveries queued and not
sent yet (a test, a redelivery, a retry), so that the settings page can say "waiting" and
watch for the result. The log itself is ``service.list_deliveries``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core import clock
from lovedcrm.core.principal import Principal
from lovedcrm.jobs.models import BackgroundJob
from lovedcrm.webhooks import service

# A job due within this long counts as "about to run": the page keeps watching for it.
SOON_SECONDS = 30


@dataclass(frozen=True)
class Waiting:
    queued: int  # deliveries queued or being sent, retries included
    soon: int  # of those, due now or within SOON_SECONDS (not a retry hours away)


async def waiting(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID
) -> Waiting:
    """The subscription's ``webhook.deliver`` jobs that have not finished."""
    sub = await service.get_subscription(session, principal, subscription_id)
    horizon = clock.now().timestamp() + SOON_SECONDS
    due_soon = (BackgroundJob.status == "running") | (
        func.extract("epoch", BackgroundJob.scheduled_for) <= horizon
    )
    row = (
        await session.execute(
            select(func.count(), func.count(case((due_soon, 1)))).where(
                BackgroundJob.organization_id == sub.organization_id,
                BackgroundJob.job_type == service.JOB_TYPE,
                BackgroundJob.status.in_(("pending", "running", "retrying")),
                BackgroundJob.job_data["subscription_id"].astext == str(sub.id),
            )
        )
    ).one()
    return Waiting(queued=int(row[0]), soon=int(row[1]))
