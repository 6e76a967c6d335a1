"""Background work of calls: the sandbox's timer, recordings downloaded into file storage
(Telnyx's links expire in minutes), callbacks that came before their call, and the Telnyx
actions a callback asks for (bridge the agent's answered leg to the lead; answer an inbound
call and transfer it). A stored recording is announced (``call.recording_stored``): the
assistant queues its transcription (``calls.transcribe``) when the organization turned it on."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pydantic import BaseModel, Field

from lovedcrm.calls import configs, inbound, service, state
from lovedcrm.calls.providers.base import ProviderError
from lovedcrm.calls.providers.sandbox import tone_wav
from lovedcrm.calls.providers.telnyx import TelnyxProvider
from lovedcrm.calls.switching import config_for_call
from lovedcrm.core.events import DomainEvent, emit
from lovedcrm.core.storage import get_storage
from lovedcrm.jobs.queue import JobContext, PermanentFailure, RetryLater, enqueue, job_handler

MAX_RECORDING_BYTES = 50 * 1024 * 1024


class CallJob(BaseModel):
    call_id: uuid.UUID


class SandboxStep(BaseModel):
    call_id: uuid.UUID
    status: str = Field(max_length=20)


class TelnyxAction(BaseModel):
    call_id: uuid.UUID
    provider_call_id: str = Field(max_length=255)
    to: str | None = Field(default=None, max_length=50)


async def _call(ctx: JobContext, call_id: uuid.UUID) -> Any:
    if ctx.organization_id is None:
        raise PermanentFailure("a calls job needs an organization")
    call = await service.call_for_job(ctx.session, ctx.organization_id, call_id)
    if call is None:
        raise PermanentFailure("the call no longer exists")
    return call


def _retry(exc: ProviderError, ctx: JobContext) -> Exception:
    if exc.transient:
        return RetryLater(min(60.0, 2.0 * ctx.attempt), exc.message)
    return PermanentFailure(exc.message)


@job_handler("calls.sandbox_step", SandboxStep, max_attempts=3, timeout_seconds=60)
async def sandbox_step(ctx: JobContext, payload: SandboxStep) -> dict[str, Any] | None:
    call = await _call(ctx, payload.call_id)
    update = service.sandbox_update(call, payload.status)
    outcome = await service.record_update(
        ctx.session, ctx.settings, call.organization_id, "sandbox", update
    )
    return {"outcome": outcome}


@job_handler("calls.apply_pending", CallJob, max_attempts=3, timeout_seconds=60)
async def apply_pending(ctx: JobContext, payload: CallJob) -> dict[str, Any] | None:
    call = await _call(ctx, payload.call_id)
    return {"applied": await service.apply_pending(ctx.session, ctx.settings, call)}


class NoPayload(BaseModel):
    pass


@job_handler("calls.apply_events", NoPayload, max_attempts=10, timeout_seconds=120)
async def apply_events(ctx: JobContext, payload: NoPayload) -> dict[str, Any] | None:
    """Apply the organization's stored callbacks (a batch; another job for the rest)."""
    if ctx.organization_id is None:
        raise PermanentFailure("a calls job needs an organization")
    applied, more = await service.apply_events(ctx.session, ctx.settings, ctx.organization_id)
    if more:
        await enqueue(
            ctx.session, "calls.apply_events", NoPayload(), organization_id=ctx.organization_id
        )
    return {"applied": applied}


@job_handler("calls.finished", CallJob, max_attempts=5, timeout_seconds=60)
async def call_finished(ctx: JobContext, payload: CallJob) -> dict[str, Any] | None:
    """The timeline activity, ``call.completed`` and a missed call's task, off the callback's
    path."""
    call = await _call(ctx, payload.call_id)
    await state.finished(ctx.session, ctx.settings, call)
    return {"status": call.status}


@job_handler("calls.recording", CallJob, max_attempts=8, timeout_seconds=300)
async def download_recording(ctx: JobContext, payload: CallJob) -> dict[str, Any] | None:
    call = await _call(ctx, payload.call_id)
    meta = call.metadata_ or {}
    if meta.get("recording_key"):
        return {"skipped": "already stored"}
    url = meta.get("provider_recording_url")
    if not url:
        return {"skipped": "no recording"}
    if str(url).startswith("sandbox://"):
        data = await asyncio.to_thread(tone_wav)
    else:
        row = await config_for_call(ctx.session, call)
        if row is None:
            raise PermanentFailure("the call's telephony configuration was removed")
        async with configs.http_client(ctx.settings) as client:
            provider = configs.provider_for(ctx.settings, row, client)
            try:
                data = await provider.fetch_recording(str(url), max_bytes=MAX_RECORDING_BYTES)
            except ProviderError as exc:
                raise _retry(exc, ctx) from exc
    kind = "audio/mpeg" if data[:3] == b"ID3" or data[:2] == b"\xff\xfb" else "audio/wav"
    extension = "mp3" if kind == "audio/mpeg" else "wav"
    key = f"calls/{call.organization_id}/{call.id}.{extension}"
    storage = get_storage(ctx.settings)
    await asyncio.to_thread(storage.save, key, data, kind)
    await service.store_recording(ctx.session, call, key)
    await emit(
        ctx.session,
        DomainEvent(
            "call.recording_stored",
            call.organization_id,
            {
                "call_id": str(call.id),
                "recording_key": key,
                "content_type": kind,
                "bytes": len(data),
            },
        ),
    )
    return {"bytes": len(data), "key": key}


async def _telnyx(ctx: JobContext, call: Any) -> tuple[Any, TelnyxProvider]:
    row = await config_for_call(ctx.session, call)
    if row is None or row.provider_type != "telnyx":
        raise PermanentFailure("the call's Telnyx configuration was removed")
    client = configs.http_client(ctx.settings)
    provider = configs.provider_for(ctx.settings, row, client)
    assert isinstance(provider, TelnyxProvider)
    return client, provider


@job_handler("calls.bridge", TelnyxAction, max_attempts=3, timeout_seconds=60)
async def bridge(ctx: JobContext, payload: TelnyxAction) -> dict[str, Any] | None:
    """Telnyx: the agent answered; transfer their leg to the lead."""
    call = await _call(ctx, payload.call_id)
    if not payload.to:
        raise PermanentFailure("nobody to transfer to")
    client, provider = await _telnyx(ctx, call)
    async with client:
        try:
            await provider.transfer(
                payload.provider_call_id,
                to=payload.to,
                from_number=call.from_number or "",
                call_ref=str(call.id),
            )
        except ProviderError as exc:
            raise _retry(exc, ctx) from exc
    return {"transferred_to": payload.to}


@job_handler("calls.inbound_answer", TelnyxAction, max_attempts=3, timeout_seconds=60)
async def inbound_answer(ctx: JobContext, payload: TelnyxAction) -> dict[str, Any] | None:
    """Telnyx: answer an inbound call and transfer it to who it rings; nobody → missed."""
    call = await _call(ctx, payload.call_id)
    if not payload.to:
        await inbound.nobody_to_ring(ctx.session, ctx.settings, call)
        return {"missed": True}
    client, provider = await _telnyx(ctx, call)
    async with client:
        try:
            await provider.answer(payload.provider_call_id, call_ref=str(call.id))
            await provider.transfer(
                payload.provider_call_id,
                to=payload.to,
                from_number=call.from_number or call.to_number or "",
                call_ref=str(call.id),
            )
        except ProviderError as exc:
            raise _retry(exc, ctx) from exc
    return {"transferred_to": payload.to}
