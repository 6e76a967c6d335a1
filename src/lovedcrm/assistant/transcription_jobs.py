"""The ``calls.transcribe`` job (queued when a call's recording is stored and the
organization transcribes calls): rules in ``assistant.transcription``. 429/5xx → retried
later; a refusal (over 25 MB, the provider said no, the last attempt failed) is written to
the call's metadata in its own transaction, then the job fails for good."""

from __future__ import annotations

import uuid
from typing import Any

from lovedcrm.assistant import transcription
from lovedcrm.assistant.transcription import (
    JOB_TYPE,
    MAX_ATTEMPTS,
    TranscribePayload,
    TranscriptionRefused,
    TranscriptionUnavailable,
)
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.jobs.queue import JobContext, PermanentFailure, RetryLater, job_handler

MAX_WAIT_SECONDS = 600.0


async def _record_failure(ctx: JobContext, org_id: uuid.UUID, call_id: uuid.UUID, why: str) -> None:
    # The job's own transaction rolls back with the failure: the reason commits apart.
    async with tenant_transaction(ctx.database.sessionmaker, org_id) as session:
        await transcription.announce(session, org_id, call_id, failure=why)


@job_handler(JOB_TYPE, TranscribePayload, max_attempts=MAX_ATTEMPTS, timeout_seconds=300)
async def transcribe_call(ctx: JobContext, payload: TranscribePayload) -> dict[str, Any] | None:
    org_id = ctx.organization_id
    if org_id is None:
        raise PermanentFailure("a transcription needs an organization")
    try:
        return await transcription.transcribe_recording(ctx.session, ctx.settings, org_id, payload)
    except TranscriptionRefused as exc:
        await _record_failure(ctx, org_id, payload.call_id, exc.reason)
        raise PermanentFailure(exc.reason) from exc
    except TranscriptionUnavailable as exc:
        if ctx.attempt >= ctx.max_attempts:
            await _record_failure(ctx, org_id, payload.call_id, exc.reason)
            raise PermanentFailure(exc.reason) from exc
        wait = exc.seconds if exc.seconds is not None else 30.0 * 2 ** (ctx.attempt - 1)
        raise RetryLater(min(wait, MAX_WAIT_SECONDS), exc.reason) from exc
