"""The assistant's job: train an organization's sentiment model on its corrections (queued
by ``service.correct`` once there are enough, deduplicated per organization)."""

from __future__ import annotations

from typing import Any

from lovedcrm.assistant import service
from lovedcrm.jobs.queue import JobContext, PermanentFailure, job_handler


@job_handler(service.TRAIN, service.TrainPayload, max_attempts=2, timeout_seconds=600)
async def train_sentiment(ctx: JobContext, payload: service.TrainPayload) -> dict[str, Any] | None:
    if ctx.organization_id is None:
        raise PermanentFailure("a sentiment model belongs to an organization")
    return await service.train_organization(ctx.session, ctx.organization_id)
