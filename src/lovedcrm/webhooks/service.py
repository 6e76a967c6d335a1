"""Outgoing webhooks: subscriptions, their secrets, the delivery log and the fan-out of
domain events into ``webhook.deliver`` jobs (sent by ``lovedcrm.webhooks.jobs``).

A subscription belongs to an API key (``api_key_id`` is NOT NULL in the spec). Its signing
secret follows the Standard Webhooks format (``whsec_`` + base64 of 24 random bytes), is
stored encrypted (AES-256-GCM, ``SecretBox``, bound to the subscription id) and is shown
once: on create and on rotation.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import structlog
from sqlalchemy import func, inspect, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.auth.models import ApiKey, OrganizationMember, User
from lovedcrm.auth.permissions import Role
from lovedcrm.config import Settings
from lovedcrm.core import outbound
from lovedcrm.core.errors import Conflict, NotFound, ValidationFailed
from lovedcrm.core.events import EVENT_TYPES, DomainEvent, emit
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.mail import get_mailer
from lovedcrm.core.pagination import keyset_after, page_of
from lovedcrm.core.principal import Principal
from lovedcrm.core.security import SecretBox
from lovedcrm.db.tenant import after_commit, save_new
from lovedcrm.jobs.queue import enqueue
from lovedcrm.organizations.models import Organization
from lovedcrm.webhooks.models import WebhookDelivery, WebhookSubscription
from lovedcrm.webhooks.schemas import DeliverPayload

log = structlog.stdlib.get_logger("lovedcrm.webhooks")

PERMISSION = "webhooks:manage"
JOB_TYPE = "webhook.deliver"
TEST_EVENT = "webhook.test"
ALL_EVENTS = "*"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret
AUDITED_FIELDS = (
    "webhook_url",
    "events",
    "api_key_id",
    "max_retries",
    "retry_backoff_seconds",
    "is_active",
)
RESOURCE = "webhook_subscription"


# --- secrets ----------------------------------------------------------------------------


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 24 random bytes (192 bits)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _box(settings: Settings) -> SecretBox:
    return SecretBox(settings.encryption_key.get_secret_value())


def _context(subscription_id: uuid.UUID) -> str:
    # Binds the ciphertext to its row: a secret copied onto another subscription won't open.
    return f"webhook_subscription:{subscription_id}"


def seal_secret(settings: Settings, subscription_id: uuid.UUID, secret: str) -> str:
    return _box(settings).encrypt(secret, context=_context(subscription_id))


def open_secret(settings: Settings, subscription: WebhookSubscription) -> str:
    """Raises ``ValueError`` (or ``cryptography``'s ``InvalidTag``) if it cannot be opened."""
    return _box(settings).decrypt(subscription.secret_token, context=_context(subscription.id))


# --- validation -------------------------------------------------------------------------

IPAddress = outbound.IPAddress


def outbound_policy(settings: Settings) -> outbound.Policy:
    """Where deliveries may go: the installation's outbound policy, plus every loopback and
    private network when ``webhooks_allow_private_targets`` (link-local stays refused)."""
    rules = outbound.policy(settings)
    return rules.with_private_networks() if settings.webhooks_allow_private_targets else rules


def address_refusal(ip: IPAddress) -> str | None:
    """Why a delivery must not go to ``ip`` under the strictest policy (None: it may)."""
    return outbound.never_allowed(ip) or outbound.restricted(ip)


def _url_error(detail: str, code: str) -> ValidationFailed:
    return ValidationFailed(
        detail, code=code, extra={"errors": [{"field": "url", "message": detail}]}
    )


def validate_url(settings: Settings, raw: str) -> str:
    """An absolute http(s) URL without credentials, whose host the outbound guard does not
    refuse on its face (``core.outbound.check_url``; every address is checked again after
    DNS resolution at delivery time). Plain http needs ``webhooks_allow_http``, or a
    loopback host that the policy allows."""
    rules = outbound_policy(settings)
    try:
        url = outbound.check_url(rules, raw)
    except outbound.UrlProblem as exc:
        code = "webhook_url_invalid" if exc.kind == "invalid" else "webhook_url_private"
        raise _url_error(exc.message, code) from exc
    parts = urlsplit(url)
    if (
        parts.scheme == "http"
        and not settings.webhooks_allow_http
        and not outbound.loopback_allowed(rules, parts.hostname or "")
    ):
        raise _url_error("The URL must use https.", "webhook_url_insecure")
    return url


def validate_events(events: list[str]) -> list[str]:
    unique = list(dict.fromkeys(e.strip() for e in events))
    if ALL_EVENTS in unique:
        if len(unique) > 1:
            raise ValidationFailed(
                '"*" subscribes to every event and cannot be combined with others.',
                code="webhook_events_invalid",
                extra={"errors": [{"field": "events", "message": '"*" must be alone'}]},
            )
        return unique
    unknown = [e for e in unique if e not in EVENT_TYPES]
    if unknown:
        detail = f"Unknown event types: {', '.join(unknown)}. Known: {', '.join(EVENT_TYPES)}."
        raise ValidationFailed(
            detail,
            code="webhook_events_invalid",
            extra={"errors": [{"field": "events", "message": detail}], "known": EVENT_TYPES},
        )
    return unique


async def _owner_key(
    session: AsyncSession, principal: Principal, api_key_id: uuid.UUID | None
) -> uuid.UUID:
    """The API key that owns a subscription: the caller's own key, or (signed in as a user)
    an active, unexpired key of the organization named in the body."""
    if principal.via == "api_key" and principal.api_key_id is not None:
        if api_key_id is not None and api_key_id != principal.api_key_id:
            raise ValidationFailed(
                "Called with an API key, a subscription belongs to that key.",
                code="webhook_api_key_invalid",
                extra={"errors": [{"field": "api_key_id", "message": "must be your own key"}]},
            )
        return principal.api_key_id
    if api_key_id is None:
        raise ValidationFailed(
            "api_key_id is required: a subscription belongs to an API key of the organization.",
            code="webhook_api_key_required",
            extra={"errors": [{"field": "api_key_id", "message": "required"}]},
        )
    found = await session.execute(
        select(ApiKey.id).where(
            ApiKey.id == api_key_id,
            ApiKey.organization_id == principal.org(),
            ApiKey.is_active.is_(True),
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > func.now()),
        )
    )
    if found.first() is None:
        raise ValidationFailed(
            "No active API key with that id in this organization.",
            code="webhook_api_key_invalid",
            extra={"errors": [{"field": "api_key_id", "message": "not an active key"}]},
        )
    return api_key_id


# --- subscriptions ----------------------------------------------------------------------


def snapshot(sub: WebhookSubscription) -> dict[str, Any]:
    return {f: getattr(sub, f) for f in AUDITED_FIELDS}


async def _audit(
    session: AsyncSession,
    principal: Principal,
    action: str,
    sub_id: uuid.UUID,
    changes: dict[str, Any],
) -> None:
    await audit.record_by(session, principal, action, RESOURCE, sub_id, changes)


async def create_subscription(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    *,
    url: str,
    events: list[str],
    api_key_id: uuid.UUID | None,
    max_retries: int = 3,
    retry_backoff_seconds: int = 300,
) -> tuple[WebhookSubscription, str]:
    """The new subscription and its secret (shown to the caller once)."""
    principal.require(PERMISSION)
    url = validate_url(settings, url)
    events = validate_events(events)
    owner = await _owner_key(session, principal, api_key_id)
    secret = new_secret()
    sub_id = uuid.uuid4()
    session.info[_ACTIVATED] = True
    sub = WebhookSubscription(
        id=sub_id,
        organization_id=principal.org(),
        api_key_id=owner,
        webhook_url=url,
        events=events,
        secret_token=seal_secret(settings, sub_id, secret),
        max_retries=max_retries,
        retry_backoff_seconds=retry_backoff_seconds,
        is_active=True,
        failure_count=0,
    )
    await save_new(session, sub)
    await _audit(session, principal, "create", sub.id, audit.diff(None, snapshot(sub)))
    return sub, secret


async def list_subscriptions(
    session: AsyncSession, principal: Principal
) -> list[WebhookSubscription]:
    principal.require(PERMISSION)
    result = await session.execute(
        select(WebhookSubscription)
        .where(WebhookSubscription.organization_id == principal.org())
        .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
    )
    return list(result.scalars())


async def get_subscription(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID
) -> WebhookSubscription:
    principal.require(PERMISSION)
    return await get_in_org(
        session,
        WebhookSubscription,
        subscription_id,
        principal,
        NotFound("No webhook subscription with that id.", code="webhook_not_found"),
    )


async def update_subscription(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    subscription_id: uuid.UUID,
    changes: dict[str, Any],
) -> WebhookSubscription:
    sub = await get_subscription(session, principal, subscription_id)
    before = snapshot(sub)
    if changes.get("url") is not None:
        sub.webhook_url = validate_url(settings, changes["url"])
    if changes.get("events") is not None:
        sub.events = validate_events(changes["events"])
    if changes.get("api_key_id") is not None:
        sub.api_key_id = await _owner_key(session, principal, changes["api_key_id"])
    if changes.get("max_retries") is not None:
        sub.max_retries = changes["max_retries"]
    if changes.get("retry_backoff_seconds") is not None:
        sub.retry_backoff_seconds = changes["retry_backoff_seconds"]
    if changes.get("is_active") is not None:
        if changes["is_active"] and not sub.is_active:
            sub.failure_count = 0  # re-enabled: count afresh
            session.info[_ACTIVATED] = True
        sub.is_active = changes["is_active"]
    sub.updated_at = func.now()
    await session.flush()
    await session.refresh(sub)
    await _audit(session, principal, "update", sub.id, audit.diff(before, snapshot(sub)))
    return sub


async def rotate_secret(
    session: AsyncSession, settings: Settings, principal: Principal, subscription_id: uuid.UUID
) -> str:
    """A new secret, effective immediately (the old one stops verifying)."""
    sub = await get_subscription(session, principal, subscription_id)
    secret = new_secret()
    sub.secret_token = seal_secret(settings, sub.id, secret)
    sub.updated_at = func.now()
    await session.flush()
    await _audit(session, principal, "rotate_secret", sub.id, {"after": {"secret": "rotated"}})
    return secret


async def delete_subscription(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID
) -> None:
    sub = await get_subscription(session, principal, subscription_id)
    before = snapshot(sub)
    await session.delete(sub)  # the delivery log goes with it (ON DELETE CASCADE)
    await session.flush()
    await _audit(session, principal, "delete", subscription_id, audit.diff(before, None))


# --- delivery log -----------------------------------------------------------------------


@dataclass
class DeliveryPage:
    items: list[WebhookDelivery]
    next_cursor: str | None


async def list_deliveries(
    session: AsyncSession,
    principal: Principal,
    subscription_id: uuid.UUID,
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> DeliveryPage:
    """Newest first, one row per attempt."""
    sub = await get_subscription(session, principal, subscription_id)
    query = select(WebhookDelivery).where(
        WebhookDelivery.organization_id == sub.organization_id,
        WebhookDelivery.subscription_id == sub.id,
    )
    query = keyset_after(query, cursor, key=WebhookDelivery.created_at, id_col=WebhookDelivery.id)
    rows = list((await session.execute(query.limit(limit + 1))).scalars())
    items, next_cursor = page_of(rows, limit, key_of=lambda delivery: delivery.created_at)
    return DeliveryPage(items=items, next_cursor=next_cursor)


def _require_active(sub: WebhookSubscription) -> None:
    if not sub.is_active:
        raise Conflict(
            "The subscription is disabled; re-enable it (is_active: true) first.",
            code="webhook_inactive",
        )


async def redeliver(
    session: AsyncSession,
    principal: Principal,
    subscription_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> tuple[uuid.UUID | None, str]:
    """Queue the same message again (same body and ``webhook-id``, a fresh signature)."""
    sub = await get_subscription(session, principal, subscription_id)
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.subscription_id != sub.id:
        raise NotFound("No delivery with that id for this subscription.", code="delivery_not_found")
    _require_active(sub)
    body = json.loads(delivery.request_body)
    job_id = await _enqueue(session, sub, body, delivery.event_id, delivery.event_type)
    await _audit(
        session,
        principal,
        "redeliver",
        sub.id,
        {"after": {"delivery_id": str(delivery.id), "event_id": delivery.event_id}},
    )
    return job_id, delivery.event_id


async def send_test(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID
) -> tuple[uuid.UUID | None, str]:
    """Queue a ``webhook.test`` ping to this subscription only."""
    sub = await get_subscription(session, principal, subscription_id)
    _require_active(sub)
    event_id = f"evt_{uuid.uuid4().hex}"
    envelope = {
        "id": event_id,
        "type": TEST_EVENT,
        "timestamp": datetime.now(UTC).isoformat(),
        "organization_id": str(sub.organization_id),
        "data": {"subscription_id": str(sub.id), "message": "Test delivery from Loved CRM"},
    }
    return await _enqueue(session, sub, envelope, event_id, TEST_EVENT), event_id


# --- fan-out ----------------------------------------------------------------------------


async def _enqueue(
    session: AsyncSession,
    sub: WebhookSubscription,
    envelope: dict[str, Any],
    event_id: str,
    event_type: str,
) -> uuid.UUID | None:
    payload = DeliverPayload(
        subscription_id=sub.id, event_id=event_id, event_type=event_type, event=envelope
    )
    return await enqueue(
        session,
        JOB_TYPE,
        payload,
        organization_id=sub.organization_id,
        max_attempts=(sub.max_retries or 0) + 1,
    )


# session.info: this unit of work made a subscription active (the organization's row it read
# before may count one too few).
_ACTIVATED = "lovedcrm.webhooks.activated"


def _has_no_webhooks(session: AsyncSession, organization_id: uuid.UUID) -> bool:
    """Whether the organization's row, when the unit of work has read it already, says it has
    no active subscription (``active_webhooks``, kept by a trigger): no look-up then."""
    if session.info.get(_ACTIVATED):
        return False
    org = session.identity_map.get(session.sync_session.identity_key(Organization, organization_id))
    if not isinstance(org, Organization) or "active_webhooks" in inspect(org).unloaded:
        return False
    return org.active_webhooks == 0


async def enqueue_deliveries(session: AsyncSession, event: DomainEvent) -> None:
    """One ``webhook.deliver`` job per active subscription of the event's organization that
    wants its type, in the caller's transaction (no job if the change rolls back)."""
    # The organization's active subscriptions are read once per unit of work: a message or
    # an import emits several events in one transaction.
    cache: dict[uuid.UUID, list[WebhookSubscription]] = session.info.setdefault(
        "webhook_subscriptions", {}
    )
    active = cache.get(event.organization_id)
    if active is None and _has_no_webhooks(session, event.organization_id):
        active = cache[event.organization_id] = []
    if active is None:
        result = await session.execute(
            select(WebhookSubscription).where(
                WebhookSubscription.organization_id == event.organization_id,
                WebhookSubscription.is_active.is_(True),
            )
        )
        active = cache[event.organization_id] = list(result.scalars())
    subs = [s for s in active if event.type in (s.events or []) or ALL_EVENTS in (s.events or [])]
    if not subs:
        return
    envelope = json.loads(json.dumps(event.envelope(), default=str))
    for sub in subs:
        await _enqueue(session, sub, envelope, event.id, event.type)
    await session.execute(
        update(WebhookSubscription)
        .where(WebhookSubscription.id.in_([s.id for s in subs]))
        .values(last_triggered_at=func.now())
        .execution_options(synchronize_session=False)
    )


# --- failures and automatic disabling ---------------------------------------------------


async def record_failure(
    session: AsyncSession,
    settings: Settings,
    organization_id: uuid.UUID,
    subscription_id: uuid.UUID,
    reason: str,
) -> bool:
    """Count a failed attempt; at ``webhook_disable_after_failures`` consecutive failures
    disable the subscription, audit it and mail the organization's admins (after commit).
    Returns True when this call disabled it."""
    row = (
        await session.execute(
            update(WebhookSubscription)
            .where(WebhookSubscription.id == subscription_id)
            .values(failure_count=func.coalesce(WebhookSubscription.failure_count, 0) + 1)
            .returning(WebhookSubscription.failure_count, WebhookSubscription.is_active)
            .execution_options(synchronize_session=False)
        )
    ).first()
    if row is None or not row.is_active:
        return False
    limit = settings.webhook_disable_after_failures
    if row.failure_count < limit:
        return False
    disabled = (
        await session.execute(
            update(WebhookSubscription)
            .where(
                WebhookSubscription.id == subscription_id,
                WebhookSubscription.is_active.is_(True),
            )
            .values(is_active=False, updated_at=func.now())
            .returning(WebhookSubscription.webhook_url)
            .execution_options(synchronize_session=False)
        )
    ).first()
    if disabled is None:
        return False  # another attempt disabled it first
    await audit.record(
        session,
        action="webhook_disabled",
        resource_type=RESOURCE,
        resource_id=subscription_id,
        organization_id=organization_id,
        changes={
            "before": {"is_active": True},
            "after": {"is_active": False},
            "failure_count": row.failure_count,
            "reason": reason,
        },
    )
    await _mail_admins(
        session, settings, organization_id, subscription_id, disabled.webhook_url, row, reason
    )
    await emit(
        session,
        DomainEvent(
            type="webhook.disabled",
            organization_id=organization_id,
            data={
                "subscription_id": str(subscription_id),
                "url": disabled.webhook_url,
                "failure_count": row.failure_count,
            },
        ),
    )
    log.warning(
        "webhook subscription disabled",
        subscription_id=str(subscription_id),
        failures=row.failure_count,
        reason=reason,
    )
    return True


async def _mail_admins(
    session: AsyncSession,
    settings: Settings,
    organization_id: uuid.UUID,
    subscription_id: uuid.UUID,
    url: str,
    row: Any,
    reason: str,
) -> None:
    org = await session.get(Organization, organization_id)
    admins = (
        await session.execute(
            select(User.email)
            .join(OrganizationMember, OrganizationMember.user_id == User.id)
            .where(
                OrganizationMember.organization_id == organization_id,
                OrganizationMember.role == Role.ADMIN.value,
                OrganizationMember.is_active.is_(True),
                User.is_active.is_(True),
            )
        )
    ).scalars()
    org_name = org.name if org else str(organization_id)
    subject = f"Webhook disabled: {url}"
    body = (
        f"The webhook subscription {subscription_id} of {org_name} was disabled after "
        f"{row.failure_count} consecutive failed deliveries.\n\n"
        f"URL: {url}\nLast error: {reason}\n\n"
        "Fix the receiving endpoint, check the delivery log "
        f"({settings.base_url}/api/v1/webhooks/{subscription_id}/deliveries), then re-enable "
        'the subscription with PATCH {"is_active": true}.\n'
    )
    mailer = get_mailer(settings)
    for email in admins:

        async def send(to: str = email) -> None:
            await mailer.send(to, subject, body)

        after_commit(session, send)
