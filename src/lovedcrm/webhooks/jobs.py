"""The ``webhook.deliver`` job: one signed HTTP POST per attempt, logged.

- The POST goes through the outbound guard (``core.outbound``): the host is resolved off
  the event loop, every address checked (link-local and metadata always refused; loopback
  and private ones unless ``outbound_allow`` lists them, or ``webhooks_allow_private_targets``)
  and the request pinned to the checked address (Host header and TLS SNI keep the name), so
  a second DNS answer cannot point it elsewhere. A refusal is a permanent failure.
- Signed per Standard Webhooks: ``webhook-id`` (the event id, the same on every retry and
  redelivery), ``webhook-timestamp``, ``webhook-signature`` (``v1,<base64 HMAC-SHA256>``).
- 2xx is success. Anything else (including redirects, which are not followed, and
  timeouts) counts a failure and retries after ``retry_backoff_seconds · 2^(attempt-1)``
  while ``attempt <= max_retries``.
- A failed attempt rolls back the job's transaction, so its log row and failure count are
  written in a short transaction of their own first.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import update
from standardwebhooks.webhooks import Webhook

from lovedcrm.config import Settings
from lovedcrm.core import outbound
from lovedcrm.core.http import read_at_most
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.jobs.queue import JobContext, PermanentFailure, RetryLater, job_handler
from lovedcrm.webhooks import service
from lovedcrm.webhooks.models import WebhookDelivery, WebhookSubscription
from lovedcrm.webhooks.schemas import DeliverPayload

USER_AGENT = "LovedCRM-Webhooks/1"
RESPONSE_LIMIT = 2048
MAX_DELAY_SECONDS = 7 * 86400
# DNS plus the request (webhook_timeout_seconds <= 20) stay within the job's 30 s.
DNS_TIMEOUT_SECONDS = 5.0


@dataclass
class Attempt:
    succeeded: bool
    status: int | None = None
    response_body: str | None = None
    latency_ms: int | None = None
    error: str | None = None
    permanent: bool = False  # retrying cannot help (refused target, undecryptable secret)


async def _read_some(response: httpx.Response) -> str:
    body = await read_at_most(response.aiter_raw(), RESPONSE_LIMIT)
    return body.decode("utf-8", errors="replace")


async def send(settings: Settings, url: str, secret: str, event_id: str, body: str) -> Attempt:
    """One signed POST. Never raises for the target's failures: they become the Attempt."""
    timeout = settings.webhook_timeout_seconds
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return Attempt(succeeded=False, error=f"invalid URL: {exc}", permanent=True)
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, now, body),
    }
    dns_timeout = min(timeout, DNS_TIMEOUT_SECONDS)
    started = time.perf_counter()

    def elapsed() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        async with (
            asyncio.timeout(timeout + dns_timeout),
            outbound.client(
                service.outbound_policy(settings),
                timeout=timeout,
                refuse_redirects=False,  # a 3xx is logged with its status, not followed
                dns_timeout=dns_timeout,
            ) as client,
        ):
            request = client.build_request("POST", target, content=body.encode(), headers=headers)
            response = await client.send(request, stream=True)
            latency = elapsed()
            try:
                text = await _read_some(response)
            finally:
                await response.aclose()
    except outbound.OutboundRefused as exc:
        return Attempt(succeeded=False, error=str(exc), permanent=True)
    except (TimeoutError, httpx.TimeoutException):
        return Attempt(
            succeeded=False,
            latency_ms=elapsed(),
            error=f"timeout: no response within {timeout:g}s",
        )
    except httpx.HTTPError as exc:
        return Attempt(
            succeeded=False,
            latency_ms=elapsed(),
            error=f"connection failed: {type(exc).__name__}: {exc}"[:1000],
        )
    status = response.status_code
    ok = 200 <= status < 300
    error = None
    if not ok:
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error += " (redirects are not followed)"
    return Attempt(succeeded=ok, status=status, response_body=text, latency_ms=latency, error=error)


def _log_row(
    sub: WebhookSubscription, payload: DeliverPayload, attempt: int, body: str, result: Attempt
) -> WebhookDelivery:
    return WebhookDelivery(
        organization_id=sub.organization_id,
        subscription_id=sub.id,
        event_id=payload.event_id,
        event_type=payload.event_type,
        attempt=attempt,
        request_body=body,
        response_status=result.status,
        response_body=result.response_body,
        latency_ms=result.latency_ms,
        succeeded=result.succeeded,
        error=result.error,
    )


def serialize(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


@job_handler("webhook.deliver", DeliverPayload, max_attempts=4, timeout_seconds=30)
async def deliver(ctx: JobContext, payload: DeliverPayload) -> dict[str, Any] | None:
    # Read in a short transaction of its own: the job's session takes no connection until
    # the answer is back, so deliveries waiting on slow or dead hosts hold none of the pool.
    async with tenant_transaction(ctx.database.sessionmaker, ctx.organization_id) as read:
        sub = await read.get(WebhookSubscription, payload.subscription_id)
        if sub is None:
            return {"skipped": "subscription deleted"}
        if not sub.is_active:
            return {"skipped": "subscription disabled"}
        read.expunge(sub)  # its loaded attributes stay readable once the transaction ends
    org = sub.organization_id
    body = serialize(payload.event)
    try:
        secret = service.open_secret(ctx.settings, sub)
    except Exception as exc:  # a changed encryption key: no retry can help
        result = Attempt(
            succeeded=False, error=f"cannot decrypt the signing secret: {exc!r}", permanent=True
        )
    else:
        result = await send(ctx.settings, sub.webhook_url, secret, payload.event_id, body)

    row = _log_row(sub, payload, ctx.attempt, body, result)
    if result.succeeded:
        ctx.session.add(row)
        if sub.failure_count:
            await ctx.session.execute(
                update(WebhookSubscription)
                .where(WebhookSubscription.id == sub.id)
                .values(failure_count=0)
            )
        return {"status": result.status, "latency_ms": result.latency_ms}

    reason = result.error or "delivery failed"
    # The job's transaction rolls back when we raise: log and count in one of our own.
    async with tenant_transaction(ctx.database.sessionmaker, org) as own:
        own.add(row)
        await own.flush()
        disabled = await service.record_failure(own, ctx.settings, org, sub.id, reason)
    if result.permanent:
        raise PermanentFailure(reason)
    if disabled:
        raise PermanentFailure(f"{reason}; subscription disabled after repeated failures")
    retries = sub.max_retries or 0
    if ctx.attempt <= retries and ctx.attempt < ctx.max_attempts:
        delay = (sub.retry_backoff_seconds or 0) * 2 ** (ctx.attempt - 1)
        raise RetryLater(min(delay, MAX_DELAY_SECONDS), reason)
    raise PermanentFailure(f"{reason} (gave up after {ctx.attempt} attempts)")
