"""WhatsApp job handlers: process stored webhooks, send queued messages, fetch media."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core import clock, ratelimit
from lovedcrm.core.events import DomainEvent, emit, notify_live
from lovedcrm.core.storage import get_storage
from lovedcrm.db.tenant import set_tenant
from lovedcrm.jobs.queue import (
    JobContext,
    Outcome,
    PermanentFailure,
    RetryLater,
    batch_job_handler,
    enqueue,
    job_handler,
)
from lovedcrm.messaging import inbound, whatsapp
from lovedcrm.messaging.models import Message, MessageAttachment, WhatsappConfig
from lovedcrm.messaging.providers.base import (
    MESSAGE_PROVIDER_TYPE,
    MediaRef,
    MediaTooLarge,
    ProviderError,
    SendResult,
    WhatsAppProvider,
)
from lovedcrm.messaging.whatsapp_configs import (
    active_config,
    build_provider,
    decrypt,
    http_client,
    idle_client,
)


class InboundJob(BaseModel):
    config_id: uuid.UUID
    # The raw webhook body as received (already verified), parsed by the job.
    body: str = Field(max_length=2_000_000)
    received_at: datetime | None = None


class MessageJob(BaseModel):
    message_id: uuid.UUID


# Inbound webhooks of one organization processed in one transaction (at most the worker's
# ``worker_max_batch``): each costs a few statements per batch, not a dozen per message.
INBOUND_BATCH = 50
# A batch lets the event loop run other work every few webhooks: the server process that
# runs the worker also acknowledges the next webhooks, which must not wait for a whole batch.
PAUSE_EVERY = 10


# Providers' webhooks nest a few levels (Meta's about eight); anything deeper is not theirs.
MAX_BODY_DEPTH = 32


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects/arrays more than ``limit`` deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def parse_body(body: str) -> dict[str, Any]:
    """A verified webhook body as the JSON object every provider sends; anything else
    (not JSON, ``null``, a list, absurd nesting) raises ``PermanentFailure``: no retry
    can turn it into one."""
    try:
        payload = json.loads(body)
    except RecursionError as exc:
        raise PermanentFailure("the webhook body is nested too deeply to be a webhook") from exc
    except ValueError as exc:
        raise PermanentFailure(f"the webhook body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        kind = "null" if payload is None else type(payload).__name__
        raise PermanentFailure(f"the webhook body is not a JSON object (got {kind})")
    if _depth_over(payload, MAX_BODY_DEPTH):
        raise PermanentFailure(
            f"the webhook body nests more than {MAX_BODY_DEPTH} levels: not a provider's shape"
        )
    return payload


@batch_job_handler(
    "whatsapp.inbound", InboundJob, max_attempts=10, timeout_seconds=120, batch=INBOUND_BATCH
)
async def process_inbound(ctxs: list[JobContext], payloads: list[InboundJob]) -> list[Outcome]:
    """Stored webhooks of one organization, together, in the order they were received. A
    body that cannot be a webhook, or whose configuration was removed, fails alone (for
    good); the others are processed in one go (``inbound.process_webhooks``)."""
    session, settings = ctxs[0].session, ctxs[0].settings
    org_id = ctxs[0].organization_id
    assert org_id is not None
    wanted = sorted({p.config_id for p in payloads})
    configs = {
        c.id: c
        for c in (
            await session.execute(select(WhatsappConfig).where(WhatsappConfig.id.in_(wanted)))
        ).scalars()
    }
    providers: dict[uuid.UUID, WhatsAppProvider] = {}
    outcomes: list[Outcome] = [None] * len(payloads)
    webhooks: list[inbound.Webhook] = []
    errors: list[list[str]] = []
    positions: list[int] = []
    order = sorted(range(len(payloads)), key=lambda i: _arrival(ctxs[i], payloads[i], i))
    for n, i in enumerate(order):
        if n % PAUSE_EVERY == PAUSE_EVERY - 1:
            await asyncio.sleep(0)  # let the requests this process answers run meanwhile
        p = payloads[i]
        config = configs.get(p.config_id)
        if config is None:
            outcomes[i] = PermanentFailure("the WhatsApp configuration was removed")
            continue
        provider = providers.get(config.id)
        if provider is None:
            provider = providers[config.id] = build_provider(
                decrypt(settings, config), idle_client(), settings
            )
        try:
            parsed = provider.parse_webhook(parse_body(p.body))
        except PermanentFailure as exc:
            outcomes[i] = exc
            continue
        except (AttributeError, TypeError, ValueError, KeyError, RecursionError) as exc:
            # The adapters read defensively; a shape they still cannot read will not change.
            outcomes[i] = PermanentFailure(
                f"the webhook body is not in the provider's shape: {exc!r}"
            )
            continue
        webhooks.append(inbound.Webhook(config, parsed, p.received_at or ctxs[i].enqueued_at))
        errors.append([e.code for e in parsed.errors])
        positions.append(i)
    counts = await inbound.process_webhooks(session, org_id, webhooks)
    for i, c, provider_errors in zip(positions, counts, errors, strict=True):
        outcomes[i] = {
            "messages": c.messages,
            "duplicates": c.duplicates,
            "statuses": c.statuses,
            "backlogged": c.backlogged,
            "leads_created": c.leads_created,
            "unlinked": c.unlinked,
            "provider_errors": provider_errors,
        }
    return outcomes


def _arrival(ctx: JobContext, p: InboundJob, i: int) -> tuple[bool, datetime, int]:
    """Processing order: as received (acknowledged, else queued), then as claimed."""
    at = p.received_at or ctx.enqueued_at
    return (at is None, at or datetime.min.replace(tzinfo=UTC), i)


async def _note_attempt(ctx: JobContext, message_id: uuid.UUID, error: str) -> None:
    """Record a failed attempt on the message in its own transaction, so the inbox shows it
    although this attempt's transaction rolls back."""
    async with AsyncSession(ctx.session.bind) as own, own.begin():
        await set_tenant(own, ctx.organization_id)
        msg = await own.get(Message, message_id)
        if msg is None:
            return
        meta = dict(msg.metadata_ or {})
        meta["last_error"] = error
        meta["attempts"] = ctx.attempt
        msg.metadata_ = meta
        assert ctx.organization_id is not None
        await notify_live(
            own, ctx.organization_id, "message.updated", message_id=message_id, lead_id=msg.lead_id
        )


async def _over_rate_limit(ctx: JobContext, config: WhatsappConfig) -> float | None:
    """Seconds to wait when the configuration's send budget is spent, else None."""
    limits = config.rate_limits or {}
    for key, window in (("messages_per_second", 1), ("messages_per_minute", 60)):
        limit = int(limits.get(key) or 0)
        if limit <= 0:
            continue
        state = await ratelimit.hit(
            ctx.database.side_engine, f"wa-send:{config.id}:{window}", limit, window_seconds=window
        )
        if state.exceeded:
            return float(state.reset)
    return None


async def _mark_failed(ctx: JobContext, msg: Message, reason: str) -> None:
    msg.status = "failed"
    msg.failed_reason = reason
    msg.updated_at = clock.now()
    await ctx.session.flush()
    assert ctx.organization_id is not None
    await emit(
        ctx.session,
        DomainEvent(
            type="message.status_changed",
            organization_id=ctx.organization_id,
            data={"message_id": str(msg.id), "lead_id": str(msg.lead_id), "status": "failed"},
        ),
    )


@job_handler("whatsapp.send", MessageJob, max_attempts=8, timeout_seconds=90)
async def send(ctx: JobContext, p: MessageJob) -> dict[str, Any]:
    session = ctx.session
    assert ctx.organization_id is not None
    org_id = ctx.organization_id
    msg = await session.get(Message, p.message_id)
    if msg is None:
        return {"skipped": "the message was deleted"}
    if msg.provider_message_id or msg.status != "pending":
        return {"skipped": f"already {msg.status}"}
    config = await active_config(session, org_id)
    if config is None:
        await _note_attempt(ctx, msg.id, "No active WhatsApp provider.")
        raise RetryLater(300, "no active WhatsApp provider; the message stays queued")
    wait = await _over_rate_limit(ctx, config)
    if wait is not None:
        # Over the budget is not a failure: queue a fresh job for later, spend no attempt.
        await enqueue(
            session,
            "whatsapp.send",
            p,
            organization_id=org_id,
            delay=timedelta(seconds=wait),
            max_attempts=8,
        )
        return {"deferred_seconds": wait}
    provider_type = MESSAGE_PROVIDER_TYPE[config.provider_type]
    meta = dict(msg.metadata_ or {})
    if msg.provider_type != provider_type:
        # Queued before a provider switch: it leaves through the new provider, and a reply
        # reference to the old provider's id means nothing there.
        meta["switched_from"] = msg.provider_type
        meta.pop("reply_to", None)
        msg.provider_type = provider_type
    cfg = decrypt(ctx.settings, config)
    template = meta.get("template") or {}
    try:
        async with http_client(ctx.settings) as client:
            provider = build_provider(cfg, client, ctx.settings)
            result: SendResult
            if template.get("whatsapp_template_name") and cfg.kind == "business_api":
                result = await provider.send_template(
                    msg.to_number or "",
                    name=template["whatsapp_template_name"],
                    language=template.get("language") or "pt_BR",
                    parameters=list(template.get("parameters") or []),
                    body=msg.content or "",
                )
            else:
                result = await provider.send_text(
                    msg.to_number or "", msg.content or "", reply_to=meta.get("reply_to")
                )
    except ProviderError as exc:
        reason = f"[{exc.code}] {exc.message}"
        if exc.transient and ctx.attempt < ctx.max_attempts:
            await _note_attempt(ctx, msg.id, reason)
            raise RetryLater(
                min(600.0, 5.0 * 2 ** (ctx.attempt - 1)), f"{reason} (will retry)"
            ) from exc
        if exc.transient:
            reason += f" — gave up after {ctx.attempt} attempts"
        msg.metadata_ = meta
        await _mark_failed(ctx, msg, reason)
        return {"failed": reason}
    await whatsapp.record_sent(session, org_id, msg, result.provider_message_id, meta)
    if cfg.kind == "sandbox":
        await _schedule_sandbox_receipts(session, org_id, config.id, result.provider_message_id)
    return {"provider_message_id": result.provider_message_id}


async def _schedule_sandbox_receipts(
    session: AsyncSession, org_id: uuid.UUID, config_id: uuid.UUID, provider_message_id: str
) -> None:
    """The sandbox's phone "receives" the message after a second and reads it after three."""
    for status, seconds in (("delivered", 1), ("read", 3)):
        at = clock.now() + timedelta(seconds=seconds)
        body = {
            "statuses": [{"id": provider_message_id, "status": status, "timestamp": at.isoformat()}]
        }
        await enqueue(
            session,
            "whatsapp.inbound",
            InboundJob(config_id=config_id, body=json.dumps(body)),
            organization_id=org_id,
            delay=timedelta(seconds=seconds),
        )


def _extension(mime: str, filename: str | None) -> str:
    if filename and "." in filename:
        ext = "." + filename.rsplit(".", 1)[1].lower()
        if ext.isascii() and ext[1:].isalnum() and len(ext) <= 6:
            return ext
    return mimetypes.guess_extension(mime) or ".bin"


@job_handler("whatsapp.media", MessageJob, max_attempts=6, timeout_seconds=300)
async def fetch_media(ctx: JobContext, p: MessageJob) -> dict[str, Any]:
    """Download an inbound attachment through the provider into file storage."""
    session = ctx.session
    assert ctx.organization_id is not None
    msg = await session.get(Message, p.message_id)
    if msg is None:
        return {"skipped": "the message was deleted"}
    meta = dict(msg.metadata_ or {})
    media = dict(meta.get("media") or {})
    config = await session.get(WhatsappConfig, uuid.UUID(meta["config_id"]))
    if config is None:
        raise PermanentFailure("the configuration that received the message was removed")
    limit = ctx.settings.whatsapp_media_max_bytes
    allowed = set(ctx.settings.whatsapp_media_types)
    declared = (media.get("mime_type") or "").split(";")[0].strip().lower()

    async def refuse(reason: str) -> dict[str, Any]:
        meta["attachment_status"] = "refused"
        meta["attachment_error"] = reason
        msg.metadata_ = meta
        msg.updated_at = clock.now()
        await session.flush()
        assert ctx.organization_id is not None
        await notify_live(
            session, ctx.organization_id, "message.updated", message_id=msg.id, lead_id=msg.lead_id
        )
        return {"refused": reason}

    if declared and declared not in allowed:
        return await refuse(f"File type {declared} is not allowed.")
    try:
        async with http_client(ctx.settings) as client:
            provider = build_provider(decrypt(ctx.settings, config), client, ctx.settings)
            got = await provider.download_media(
                MediaRef(
                    media_id=media.get("media_id"),
                    url=media.get("url"),
                    mime_type=media.get("mime_type"),
                    filename=media.get("filename"),
                ),
                max_bytes=limit,
            )
    except MediaTooLarge:
        return await refuse(f"File larger than the limit of {limit // 1_048_576} MB.")
    except ProviderError as exc:
        if exc.transient and ctx.attempt < ctx.max_attempts:
            raise RetryLater(min(600.0, 10.0 * 2 ** (ctx.attempt - 1)), exc.message) from exc
        return await refuse(f"[{exc.code}] {exc.message}")
    mime = (got.mime_type or declared).split(";")[0].strip().lower()
    if mime not in allowed:
        return await refuse(f"File type {mime} is not allowed.")
    name = (got.filename or media.get("filename") or f"{msg.message_type or 'file'}").strip()
    ext = _extension(mime, name)
    if "." not in name:
        name += ext
    key = f"{ctx.organization_id}/attachments/{uuid.uuid4().hex}{ext}"
    await asyncio.to_thread(get_storage(ctx.settings).save, key, got.content, mime)
    attachment = MessageAttachment(
        organization_id=ctx.organization_id,
        message_id=msg.id,
        file_name=name[:255],
        file_type=mime,
        file_size=len(got.content),
        file_url=key,
        provider_media_id=media.get("media_id"),
    )
    session.add(attachment)
    meta["attachment_status"] = "stored"
    msg.metadata_ = meta
    msg.updated_at = clock.now()
    await session.flush()
    await notify_live(
        session, ctx.organization_id, "message.updated", message_id=msg.id, lead_id=msg.lead_id
    )
    return {"stored": len(got.content), "type": mime}
