"""Subscriptions: the trial, checkout, the portal, invoices, and the state machine Stripe's
events drive.

States (Stripe's ``status``): ``trialing`` (14 days from sign-up, the Pro plan) →
``active`` → ``past_due`` (a payment failed: a grace period of ``billing_grace_days``, then
read-only, see ``organizations.plans``) → ``active`` again once paid, or ``canceled``
(the organization falls back to Starter; nothing is ever deleted). A trial that ends
without a subscription is ``canceled`` the same way (``expire_trials``).

An event changes the subscription only when it is newer than the last one applied
(``stripe_event_at``): Stripe does not promise order. Duplicates never reach here
(``billing_events`` in ``webhook``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.billing import usage as metering
from lovedcrm.billing.models import Subscription
from lovedcrm.billing.providers.base import (
    BillingProvider,
    CheckoutRequest,
    CheckoutSession,
    Invoice,
    ProviderError,
)
from lovedcrm.billing.providers.sandbox import SandboxProvider
from lovedcrm.billing.providers.stripe import StripeProvider
from lovedcrm.config import Settings
from lovedcrm.core import clock, outbound
from lovedcrm.core.errors import AppError, Conflict, ValidationFailed
from lovedcrm.core.events import DomainEvent, emit
from lovedcrm.core.principal import Principal
from lovedcrm.db.tenant import after_commit
from lovedcrm.organizations import plans
from lovedcrm.organizations.models import Organization

LIVE_STATUSES = ("trialing", "active", "past_due", "unpaid")
ENDED_STATUSES = ("canceled", "incomplete_expired")


class BillingUnavailable(AppError):
    status, code, title = 502, "billing_provider_error", "Billing provider error"


def http_client(settings: Settings) -> httpx.AsyncClient:
    return outbound.client(outbound.policy(settings), timeout=20.0)


def provider_for(settings: Settings, client: httpx.AsyncClient | None = None) -> BillingProvider:
    if settings.billing_provider == "stripe" and settings.stripe_secret_key is not None:
        assert client is not None, "the Stripe adapter needs an outbound client"
        return StripeProvider(
            client, settings.stripe_secret_key.get_secret_value(), settings.stripe_api_url
        )
    return SandboxProvider(settings.base_url)


def _forget(session: AsyncSession, org_id: uuid.UUID) -> None:
    plans.invalidate(org_id)

    async def _again() -> None:
        plans.invalidate(org_id)

    after_commit(session, _again)


async def subscription_of(session: AsyncSession, org_id: uuid.UUID) -> Subscription | None:
    return (
        await session.execute(select(Subscription).where(Subscription.organization_id == org_id))
    ).scalar_one_or_none()


async def _organization(session: AsyncSession, org_id: uuid.UUID) -> Organization:
    org = await session.get(Organization, org_id)
    assert org is not None
    return org


# --- the trial -------------------------------------------------------------------------------


async def start_trial(session: AsyncSession, settings: Settings, org_id: uuid.UUID) -> None:
    """A new organization: the Pro plan for ``billing_trial_days`` (sign-up)."""
    if await subscription_of(session, org_id) is not None:
        return
    now = clock.now()
    end = now + timedelta(days=settings.billing_trial_days)
    plan = plans.PLANS["pro"]
    session.add(
        Subscription(
            organization_id=org_id,
            plan_tier="pro",
            billing_cycle="monthly",
            amount_cents=plan.price(settings.billing_currency, "monthly"),
            currency=settings.billing_currency,
            status="trialing",
            current_period_start=now,
            current_period_end=end,
            trial_end=end,
        )
    )
    org = await _organization(session, org_id)
    org.plan_tier = "pro"
    await session.flush()
    _forget(session, org_id)


async def expire_trial(session: AsyncSession, org_id: uuid.UUID) -> bool:
    """A trial that ended without a paid subscription: back to Starter (data kept)."""
    sub = await subscription_of(session, org_id)
    now = clock.now()
    if (
        sub is None
        or sub.status != "trialing"
        or sub.stripe_subscription_id is not None
        or sub.trial_end is None
        or sub.trial_end > now
    ):
        return False
    await _end(session, sub, now, reason="trial_ended")
    return True


async def _end(session: AsyncSession, sub: Subscription, now: datetime, *, reason: str) -> None:
    before = sub.status
    sub.status = "canceled"
    sub.canceled_at = sub.canceled_at or now
    sub.past_due_since = None
    org = await _organization(session, sub.organization_id)
    old_plan = org.plan_tier
    org.plan_tier = "starter"
    await audit.record(
        session,
        action="subscription.canceled",
        resource_type="subscription",
        resource_id=sub.id,
        organization_id=sub.organization_id,
        changes={
            "status": {"old": before, "new": "canceled"},
            "plan_tier": {"old": old_plan, "new": "starter"},
            "reason": reason,
        },
    )
    await session.flush()
    _forget(session, sub.organization_id)


# --- what the billing page shows ----------------------------------------------------------------


@dataclass(frozen=True)
class UsageLine:
    limit: str
    used: int
    allowed: int | None

    @property
    def percent(self) -> int:
        if self.allowed is None:
            return 0
        if self.allowed == 0:
            return 100 if self.used > 0 else 0
        return min(100, round(100 * self.used / self.allowed))

    @property
    def warning(self) -> bool:
        return self.allowed is not None and self.used >= self.allowed * plans.SOFT_LIMIT

    def as_dict(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "used": self.used,
            "allowed": self.allowed,
            "percent": self.percent,
            "warning": self.warning,
        }


@dataclass(frozen=True)
class Overview:
    plan: plans.Plan
    enforced: bool
    subscription: Subscription | None
    usage: list[UsageLine]
    read_only: bool
    trial_days_left: int | None


async def usage_lines(
    session: AsyncSession, org_id: uuid.UUID, limits: dict[str, int | None]
) -> list[UsageLine]:
    snap = await metering.measure(session, org_id)
    return [
        UsageLine(name, snap.values[metering.LIMIT_METRIC[name]], limits.get(name))
        for name in plans.LIMITS
    ]


async def overview(session: AsyncSession, principal: Principal, settings: Settings) -> Overview:
    principal.require("billing:manage")
    org_id = principal.org()
    plans.invalidate(org_id)
    ent = await plans.entitlements(session, org_id, settings)
    sub = await subscription_of(session, org_id)
    days_left = None
    if sub is not None and sub.status == "trialing" and sub.trial_end is not None:
        days_left = max(0, (sub.trial_end - clock.now()).days + 1)
    return Overview(
        plan=ent.plan,
        enforced=ent.enforced,
        subscription=sub,
        usage=await usage_lines(session, org_id, dict(ent.limits)),
        read_only=ent.read_only(),
        trial_days_left=days_left,
    )


# --- checkout, the portal, invoices ------------------------------------------------------------


def _plan(key: str) -> plans.Plan:
    plan = plans.PLANS.get(key)
    if plan is None:
        raise ValidationFailed(
            "This plan does not exist.",
            code="unknown_plan",
            extra={"plans": list(plans.PLAN_ORDER)},
        )
    return plan


async def downgrade_blockers(
    session: AsyncSession, org_id: uuid.UUID, plan: plans.Plan
) -> list[dict[str, Any]]:
    """What the organization uses beyond ``plan``'s limits (what to remove first)."""
    lines = await usage_lines(session, org_id, dict(plan.limits))
    return [
        {"limit": line.limit, "used": line.used, "allowed": line.allowed,
         "remove": line.used - line.allowed}
        for line in lines
        if line.allowed is not None
        and line.limit in ("seats", "leads", "whatsapp_numbers")
        and line.used > line.allowed
    ]  # fmt: skip


async def refuse_downgrade_below_usage(
    session: AsyncSession, org_id: uuid.UUID, plan: plans.Plan
) -> None:
    blockers = await downgrade_blockers(session, org_id, plan)
    if blockers:
        raise Conflict(
            "This plan allows less than you use now. Remove the excess first.",
            code="downgrade_below_usage",
            extra={"plan": plan.key, "blockers": blockers},
        )


def _billing_url(settings: Settings, suffix: str = "") -> str:
    return settings.base_url.rstrip("/") + "/settings/billing" + suffix


async def start_checkout(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    plan_key: str,
    cycle: str,
    currency: str | None = None,
) -> CheckoutSession:
    principal.require("billing:manage")
    org_id = principal.org()
    plan = _plan(plan_key)
    if cycle not in plans.CYCLES:
        raise ValidationFailed("The billing cycle must be monthly or yearly.", code="unknown_cycle")
    currency = currency or settings.billing_currency
    await refuse_downgrade_below_usage(session, org_id, plan)
    sub = await subscription_of(session, org_id)
    if (
        settings.billing_provider == "stripe"
        and sub is not None
        and sub.stripe_subscription_id is not None
        and sub.status in LIVE_STATUSES
    ):
        # A second Checkout would start a second subscription, charged beside the first.
        raise Conflict(
            "The organization already has a subscription: change its plan in the billing portal.",
            code="subscription_exists",
            extra={"plan": sub.plan_tier, "subscription_status": sub.status},
        )
    request = CheckoutRequest(
        organization_id=str(org_id),
        plan=plan.key,
        plan_name=plan.name,
        cycle=cycle,
        currency=currency,
        amount_cents=plan.price(currency, cycle),
        success_url=_billing_url(settings, "?checkout=done"),
        cancel_url=_billing_url(settings, "?checkout=canceled"),
        customer_id=sub.stripe_customer_id if sub is not None else None,
        customer_email=principal.user.email,
    )
    async with http_client(settings) as client:
        try:
            result = await provider_for(settings, client).create_checkout(request)
        except ProviderError as exc:
            raise BillingUnavailable(
                "The payment provider could not start the checkout. Try again in a moment.",
                extra={"provider_code": exc.code},
            ) from exc
    await audit.record_by(
        session, principal, "subscription.checkout", "subscription", sub.id if sub else None,
        {"plan": plan.key, "cycle": cycle, "currency": currency},
    )  # fmt: skip
    return result


async def portal_url(session: AsyncSession, principal: Principal, settings: Settings) -> str:
    principal.require("billing:manage")
    sub = await subscription_of(session, principal.org())
    if settings.billing_provider == "sandbox":
        return "/settings/billing"
    if sub is None or not sub.stripe_customer_id:
        raise Conflict(
            "There is no paid subscription yet. Choose a plan first.", code="no_customer"
        )
    async with http_client(settings) as client:
        try:
            return await provider_for(settings, client).create_portal(
                sub.stripe_customer_id, _billing_url(settings)
            )
        except ProviderError as exc:
            raise BillingUnavailable(
                "The payment provider could not open the portal. Try again in a moment.",
                extra={"provider_code": exc.code},
            ) from exc


async def invoices(
    session: AsyncSession, principal: Principal, settings: Settings
) -> list[Invoice]:
    principal.require("billing:manage")
    sub = await subscription_of(session, principal.org())
    if sub is None or not sub.stripe_customer_id or settings.billing_provider == "sandbox":
        return []
    async with http_client(settings) as client:
        try:
            return await provider_for(settings, client).list_invoices(sub.stripe_customer_id)
        except ProviderError as exc:
            raise BillingUnavailable(
                "The payment provider did not list the invoices. Try again in a moment.",
                extra={"provider_code": exc.code},
            ) from exc


def sandbox_checkout_open(settings: Settings) -> bool:
    """The demo's checkout that "pays" with no money: the sandbox provider, never in
    production (where it would give plans away)."""
    return settings.billing_provider == "sandbox" and settings.env != "production"


async def sandbox_pay(
    session: AsyncSession, principal: Principal, settings: Settings, plan_key: str, cycle: str
) -> Subscription:
    """The demo's checkout "paid": the plan is active for a period (sandbox provider only)."""
    principal.require("billing:manage")
    if not sandbox_checkout_open(settings):
        raise Conflict("The sandbox checkout is off on this installation.", code="not_sandbox")
    org_id = principal.org()
    plan = _plan(plan_key)
    if cycle not in plans.CYCLES:
        raise ValidationFailed("The billing cycle must be monthly or yearly.", code="unknown_cycle")
    await refuse_downgrade_below_usage(session, org_id, plan)
    now = clock.now()
    end = now + (timedelta(days=365) if cycle == "yearly" else timedelta(days=30))
    sub = await subscription_of(session, org_id)
    before = sub.status if sub is not None else None
    if sub is None:
        sub = Subscription(organization_id=org_id, current_period_start=now)
        session.add(sub)
    sub.plan_tier = plan.key
    sub.billing_cycle = cycle
    sub.currency = settings.billing_currency
    sub.amount_cents = plan.price(settings.billing_currency, cycle)
    sub.status = "active"
    sub.current_period_start = now
    sub.current_period_end = end
    sub.past_due_since = None
    sub.canceled_at = None
    sub.stripe_customer_id = sub.stripe_customer_id or f"cus_sandbox_{org_id.hex[:12]}"
    org = await _organization(session, org_id)
    old_plan = org.plan_tier
    org.plan_tier = plan.key
    await session.flush()
    await audit.record_by(
        session, principal, "subscription.activated", "subscription", sub.id,
        {"status": {"old": before, "new": "active"},
         "plan_tier": {"old": old_plan, "new": plan.key}, "provider": "sandbox"},
    )  # fmt: skip
    _forget(session, org_id)
    return sub


# --- Stripe's events -----------------------------------------------------------------------------


def _ts(value: Any) -> datetime | None:
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    return None


def _plan_of(obj: dict[str, Any], fallback: str) -> str:
    """The plan a Stripe subscription is for: its price's ``lookup_key`` (``pro_monthly_brl``)
    or ``metadata.plan``, else the subscription's ``metadata.plan``."""
    items = (obj.get("items") or {}).get("data") or []
    price = (items[0].get("price") or {}) if items and isinstance(items[0], dict) else {}
    candidates = [
        str(price.get("lookup_key") or "").split("_")[0],
        (price.get("metadata") or {}).get("plan"),
        (obj.get("metadata") or {}).get("plan"),
    ]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate in plans.PLANS:
            return candidate
    return fallback


def _price_of(obj: dict[str, Any]) -> tuple[int | None, str | None, str | None]:
    items = (obj.get("items") or {}).get("data") or []
    price = (items[0].get("price") or {}) if items and isinstance(items[0], dict) else {}
    amount = price.get("unit_amount")
    currency = price.get("currency")
    interval = (price.get("recurring") or {}).get("interval")
    return (
        amount if isinstance(amount, int) else None,
        currency.upper() if isinstance(currency, str) else None,
        {"year": "yearly", "month": "monthly"}.get(str(interval)),
    )


def _period(obj: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    start, end = _ts(obj.get("current_period_start")), _ts(obj.get("current_period_end"))
    if start is None or end is None:  # newer API versions keep them on the items
        items = (obj.get("items") or {}).get("data") or []
        if items and isinstance(items[0], dict):
            start = start or _ts(items[0].get("current_period_start"))
            end = end or _ts(items[0].get("current_period_end"))
    return start, end


async def apply_subscription(
    session: AsyncSession, org_id: uuid.UUID, obj: dict[str, Any], event_at: datetime
) -> bool:
    """Apply a Stripe subscription object when it is newer than the last applied one.
    Answers whether anything changed."""
    sub = await subscription_of(session, org_id)
    if sub is not None and sub.stripe_event_at is not None and event_at < sub.stripe_event_at:
        return False  # an older state, arrived late
    status = str(obj.get("status") or "")
    if not status:
        return False
    now = clock.now()
    if sub is None:
        sub = Subscription(
            organization_id=org_id,
            plan_tier="starter",
            billing_cycle="monthly",
            amount_cents=0,
            status=status,
            current_period_start=now,
            current_period_end=now,
        )
        session.add(sub)
    before = {"status": sub.status, "plan_tier": sub.plan_tier}
    sub.stripe_event_at = event_at
    if isinstance(obj.get("id"), str):
        sub.stripe_subscription_id = obj["id"]
    if isinstance(obj.get("customer"), str):
        sub.stripe_customer_id = obj["customer"]
    sub.plan_tier = _plan_of(obj, sub.plan_tier)
    amount, currency, cycle = _price_of(obj)
    sub.amount_cents = amount if amount is not None else sub.amount_cents
    sub.currency = currency or sub.currency
    sub.billing_cycle = cycle or sub.billing_cycle
    start, end = _period(obj)
    sub.current_period_start = start or sub.current_period_start
    sub.current_period_end = end or sub.current_period_end
    sub.trial_end = _ts(obj.get("trial_end")) or sub.trial_end
    org = await _organization(session, org_id)
    if status in ENDED_STATUSES:
        sub.status = status
        sub.canceled_at = _ts(obj.get("canceled_at")) or _ts(obj.get("ended_at")) or now
        sub.past_due_since = None
        org.plan_tier = "starter"
    else:
        if status in ("past_due", "unpaid"):
            sub.past_due_since = sub.past_due_since or now
        else:
            sub.past_due_since = None
        sub.status = status
        sub.canceled_at = None
        org.plan_tier = sub.plan_tier if status in LIVE_STATUSES else "starter"
    await session.flush()
    after = {"status": sub.status, "plan_tier": org.plan_tier}
    if after != before:
        await audit.record(
            session,
            action="subscription.updated",
            resource_type="subscription",
            resource_id=sub.id,
            organization_id=org_id,
            changes={k: {"old": before.get(k), "new": v} for k, v in after.items()},
        )
    _forget(session, org_id)
    return True


async def link_checkout(session: AsyncSession, org_id: uuid.UUID, obj: dict[str, Any]) -> None:
    """``checkout.session.completed``: remember the customer and subscription ids (the
    subscription's own events carry its state)."""
    sub = await subscription_of(session, org_id)
    if sub is None:
        return
    if isinstance(obj.get("customer"), str):
        sub.stripe_customer_id = obj["customer"]
    if isinstance(obj.get("subscription"), str):
        sub.stripe_subscription_id = obj["subscription"]
    await session.flush()


async def _invoice_moves(
    session: AsyncSession,
    org_id: uuid.UUID,
    obj: dict[str, Any],
    event_at: datetime,
    *,
    from_statuses: tuple[str, ...],
    to_status: str,
    action: str,
) -> bool:
    """An invoice event moves the subscription ``from_statuses`` → ``to_status`` (unless a
    newer state was applied already). Whether it moved."""
    sub = await subscription_of(session, org_id)
    if sub is None or (sub.stripe_event_at is not None and event_at < sub.stripe_event_at):
        return False
    if sub.status not in from_statuses:
        return False
    sub.status = to_status
    sub.past_due_since = clock.now() if to_status == "past_due" else None
    sub.stripe_event_at = event_at
    if to_status == "active":
        (await _organization(session, org_id)).plan_tier = sub.plan_tier
    await audit.record(
        session,
        action=action,
        resource_type="subscription",
        resource_id=sub.id,
        organization_id=org_id,
        changes={"invoice": str(obj.get("id") or "")},
    )
    await session.flush()
    _forget(session, org_id)
    return True


async def payment_failed(
    session: AsyncSession, org_id: uuid.UUID, obj: dict[str, Any], event_at: datetime
) -> None:
    """``invoice.payment_failed``: past due from now on (the admins are told: the
    notification centre reacts to ``billing.payment_failed``)."""
    moved = await _invoice_moves(
        session, org_id, obj, event_at,
        from_statuses=("active", "trialing"), to_status="past_due",
        action="subscription.payment_failed",
    )  # fmt: skip
    if moved:
        await emit(
            session,
            DomainEvent(
                type="billing.payment_failed",
                organization_id=org_id,
                data={"invoice": str(obj.get("id") or "")},
            ),
        )


async def invoice_paid(
    session: AsyncSession, org_id: uuid.UUID, obj: dict[str, Any], event_at: datetime
) -> None:
    """``invoice.paid``: a past-due subscription is active again."""
    await _invoice_moves(
        session, org_id, obj, event_at,
        from_statuses=("past_due", "unpaid"), to_status="active",
        action="subscription.recovered",
    )  # fmt: skip


# --- the operator (command line) -----------------------------------------------------------------


async def set_plan(
    session: AsyncSession, org_id: uuid.UUID, plan_key: str, *, force: bool = False
) -> dict[str, Any]:
    plan = _plan(plan_key)
    if not force:
        await refuse_downgrade_below_usage(session, org_id, plan)
    org = await _organization(session, org_id)
    old = org.plan_tier
    org.plan_tier = plan.key
    sub = await subscription_of(session, org_id)
    if sub is not None:
        sub.plan_tier = plan.key
    await audit.record(
        session,
        action="plan.set_by_operator",
        resource_type="organization",
        resource_id=org_id,
        organization_id=org_id,
        changes={"plan_tier": {"old": old, "new": plan.key}, "force": force},
    )
    await session.flush()
    _forget(session, org_id)
    return {"plan_tier": {"old": old, "new": plan.key}}


def parse_flag(name: str, value: str) -> Any:
    """``on``/``off``/``default`` for a feature or ``billing``; a number or ``unlimited``
    (or ``default``) for ``limit.<name>``."""
    if name.startswith("limit."):
        if name[6:] not in plans.LIMITS:
            raise ValidationFailed(f"Unknown limit: {name[6:]}", code="unknown_flag")
        if value in ("default", "unlimited"):
            return value
        if not value.isdigit():
            raise ValidationFailed("A limit is a whole number, unlimited or default.")
        return int(value)
    if name not in (*plans.FEATURES, "billing"):
        raise ValidationFailed(f"Unknown flag: {name}", code="unknown_flag")
    if value not in ("on", "off", "default"):
        raise ValidationFailed("A flag is on, off or default.")
    return value


async def set_flag(
    session: AsyncSession, org_id: uuid.UUID, name: str, value: str
) -> dict[str, Any]:
    parsed = parse_flag(name, value)
    org = await _organization(session, org_id)
    flags = dict(org.features_enabled or {})
    before = dict(flags)
    if name.startswith("limit."):
        limits = dict(flags.get("limits") or {})
        if parsed == "default":
            limits.pop(name[6:], None)
        else:
            limits[name[6:]] = None if parsed == "unlimited" else parsed
        flags["limits"] = limits
    elif parsed == "default":
        flags.pop(name, None)
    else:
        flags[name] = parsed == "on"
    org.features_enabled = flags
    await audit.record(
        session,
        action="plan.flag_set_by_operator",
        resource_type="organization",
        resource_id=org_id,
        organization_id=org_id,
        changes={"features_enabled": {"old": before, "new": flags}},
    )
    await session.flush()
    _forget(session, org_id)
    return flags


async def describe(session: AsyncSession, settings: Settings, org_id: uuid.UUID) -> dict[str, Any]:
    plans.invalidate(org_id)
    ent = await plans.entitlements(session, org_id, settings)
    sub = await subscription_of(session, org_id)
    lines = await usage_lines(session, org_id, dict(ent.limits))
    return {
        "organization_id": str(org_id),
        "plan": ent.plan.key,
        "enforced": ent.enforced,
        "read_only": ent.read_only(),
        "features": sorted(ent.features),
        "overrides": dict(ent.state.overrides),
        "subscription": None
        if sub is None
        else {
            "status": sub.status,
            "trial_end": sub.trial_end.isoformat() if sub.trial_end else None,
            "past_due_since": sub.past_due_since.isoformat() if sub.past_due_since else None,
            "stripe_customer_id": sub.stripe_customer_id,
        },
        "usage": [line.as_dict() for line in lines],
    }
