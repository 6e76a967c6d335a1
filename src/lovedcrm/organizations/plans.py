"""Plans, their limits and features, and the ONE place they are enforced (issue 18).

Low on purpose (the organizations layer): leads, auth, messaging, calls and the assistant sit
below billing and still have to ask "may this organization do that?". Billing (the top band)
changes what is read here (the organization's ``plan_tier`` and ``features_enabled``, the
subscription's status); this module only reads.

- ``PLANS``: starter, pro, enterprise, with prices (BRL and USD, monthly and yearly, in
  cents), limits (``None``: unlimited) and features.
- :func:`entitlements`: the organization's billing state, read through one cache (a few
  seconds per process, dropped at once in the process that changes it), so an operator's
  change (another process: ``lovedcrm org set-plan``) takes effect without a restart.
- :func:`require_feature` (403 ``feature_not_in_plan``), :func:`check_limit` (402
  ``plan_limit_reached``) and :func:`gate` (what the authenticator calls for every
  request: feature gating of the API by path and the read-only mode of a subscription
  past due beyond its grace period, 402 ``subscription_read_only``).
- Enforcement is off unless the installation turns it on (``LOVEDCRM_BILLING_ENABLED``) or
  the organization's ``features_enabled["billing"]`` is true (an operator flag, also how the
  tests turn it on for one organization); ``false`` there turns it off for one organization.
  Off: every feature on, no limit, never read-only (self-hosted).

``features_enabled`` holds the per-organization overrides: a feature name → true/false, and
``"limits": {name: number | null}``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.config import Settings, get_settings
from lovedcrm.core import clock
from lovedcrm.core.errors import AppError
from lovedcrm.core.events import DomainEvent, emit
from lovedcrm.core.principal import Principal
from lovedcrm.web.i18n import N_

PLAN_ORDER = ("starter", "pro", "enterprise")
CURRENCIES = ("BRL", "USD")
CYCLES = ("monthly", "yearly")
LIMITS = (
    "seats",
    "leads",
    "whatsapp_numbers",
    "ai_tokens_month",
    "call_minutes_month",
    "api_calls_month",
)
FEATURES = (
    "ai_agent",
    "scoring",
    "calls",
    "marketing",
    "api",
    "webhooks",
    "reports",
    "custom_branding",
)
# Words for people (catalog msgids): the limits and features as the pages and problems name
# them.
LIMIT_LABELS = {
    "seats": N_("Members"),
    "leads": N_("Leads"),
    "whatsapp_numbers": N_("WhatsApp numbers"),
    "ai_tokens_month": N_("AI tokens this month"),
    "call_minutes_month": N_("Call minutes this month"),
    "api_calls_month": N_("API calls this month"),
}
FEATURE_LABELS = {
    "ai_agent": N_("AI agent"),
    "scoring": N_("Lead scoring"),
    "calls": N_("Calls"),
    "marketing": N_("Marketing"),
    "api": N_("API and integrations"),
    "webhooks": N_("Webhooks"),
    "reports": N_("Reports"),
    "custom_branding": N_("Custom branding"),
}
# A share of a limit past which admins are warned (a banner and an audit row).
SOFT_LIMIT = 0.8
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Plan:
    key: str
    name: str
    # (currency, cycle) -> cents
    prices: Mapping[tuple[str, str], int]
    limits: Mapping[str, int | None]
    features: frozenset[str]

    def price(self, currency: str, cycle: str) -> int:
        return self.prices[(currency, cycle)]


def _prices(brl: int, usd: int) -> dict[tuple[str, str], int]:
    """Monthly prices in cents; a year costs ten months."""
    return {
        ("BRL", "monthly"): brl,
        ("BRL", "yearly"): brl * 10,
        ("USD", "monthly"): usd,
        ("USD", "yearly"): usd * 10,
    }


PLANS: dict[str, Plan] = {
    "starter": Plan(
        key="starter",
        name="Starter",
        prices=_prices(9_900, 1_900),
        limits={
            "seats": 3,
            "leads": 1_000,
            "whatsapp_numbers": 1,
            "ai_tokens_month": 0,
            "call_minutes_month": 0,
            "api_calls_month": 0,
        },
        features=frozenset({"reports"}),
    ),
    "pro": Plan(
        key="pro",
        name="Pro",
        prices=_prices(24_900, 4_900),
        limits={
            "seats": 15,
            "leads": 25_000,
            "whatsapp_numbers": 3,
            "ai_tokens_month": 500_000,
            "call_minutes_month": 2_000,
            "api_calls_month": 100_000,
        },
        features=frozenset({"reports", "ai_agent", "scoring", "calls", "api", "webhooks"}),
    ),
    "enterprise": Plan(
        key="enterprise",
        name="Enterprise",
        prices=_prices(59_900, 11_900),
        limits=dict.fromkeys(LIMITS),
        features=frozenset(FEATURES),
    ),
}

# API paths and pages (regular expressions on the path) → the feature they need. First match
# wins.
FEATURE_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), feature)
    for pattern, feature in (
        (r"^/api/v1/(calls|costs)(/|$)", "calls"),
        (r"^/api/v1/leads/[^/]+/(calls|call)(/|$)", "calls"),
        (r"^/api/v1/(ai|assistant)(/|$)", "ai_agent"),
        (r"^/api/v1/leads/[^/]+/(agent|suggested-replies)(/|$)", "ai_agent"),
        (r"^/api/v1/messages/[^/]+/sentiment(/|$)", "ai_agent"),
        (r"^/api/v1/scoring(/|$)", "scoring"),
        (r"^/api/v1/leads/[^/]+/score(/|$)", "scoring"),
        (r"^/api/v1/marketing(/|$)", "marketing"),
        (r"^/api/v1/reports(/|$)", "reports"),
        (r"^/api/v1/webhooks(/|$)", "webhooks"),
        (r"^/api/v1/organizations/current/logo(/|$)", "custom_branding"),
        # The pages of the same features (and their fragments and forms).
        (r"^/(settings/telephony|reports/costs|calls)(/|$)", "calls"),
        (r"^/leads/[^/]+/(call|calls-panel)(/|$)", "calls"),
        (r"^/settings/ai(/|$)", "ai_agent"),
        (r"^/inbox/[^/]+/(agent|suggestions/ai)(/|$)", "ai_agent"),
        (r"^/inbox/messages/[^/]+/sentiment(/|$)", "ai_agent"),
        (r"^/settings/scoring(/|$)", "scoring"),
        (r"^/leads/[^/]+/score-panel(/|$)", "scoring"),
        (r"^/marketing(/|$)", "marketing"),
        (r"^/reports(/|$)", "reports"),
        (r"^/settings/webhooks(/|$)", "webhooks"),
    )
)
# Never gated: how to pay, and how to sign in or out. Writes stay allowed when read-only.
UNGATED_PREFIXES = ("/api/v1/billing", "/api/v1/auth", "/settings/billing", "/billing/")
READ_ONLY_EXEMPT = (*UNGATED_PREFIXES, "/login", "/logout", "/preferences")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class PlanLimitReached(AppError):
    status, code, title = 402, "plan_limit_reached", "Plan limit reached"


class FeatureNotInPlan(AppError):
    status, code, title = 403, "feature_not_in_plan", "Not in your plan"


class SubscriptionReadOnly(AppError):
    status, code, title = 402, "subscription_read_only", "Subscription past due"


@dataclass(frozen=True)
class BillingState:
    """What the database says about an organization's plan (cached)."""

    organization_id: uuid.UUID
    plan_tier: str
    overrides: Mapping[str, Any]
    status: str | None
    past_due_since: datetime | None
    trial_end: datetime | None
    enforced: bool
    api_calls_month: int = 0


@dataclass(frozen=True)
class Entitlements:
    state: BillingState
    plan: Plan
    features: frozenset[str]
    limits: Mapping[str, int | None]
    grace: timedelta = field(default=timedelta(days=7))

    @property
    def enforced(self) -> bool:
        return self.state.enforced

    def has(self, feature: str) -> bool:
        return not self.enforced or feature in self.features

    def limit(self, name: str) -> int | None:
        return self.limits.get(name) if self.enforced else None

    def read_only(self, now: datetime | None = None) -> bool:
        """Past due beyond the grace period (or unpaid): reads only."""
        if not self.enforced:
            return False
        if self.state.status == "unpaid":
            return True
        since = self.state.past_due_since
        if self.state.status != "past_due" or since is None:
            return False
        return (now or clock.now()) >= since + self.grace


_CACHE: dict[uuid.UUID, tuple[float, BillingState]] = {}

# The API calls of this month are the metering job's (hourly) figure: counted without a
# write per request, so the API limit is enforced with up to an hour's delay.
_STATE = text(
    "SELECT o.plan_tier, o.features_enabled, s.status, s.past_due_since, s.trial_end,"
    " (SELECT u.metric_value FROM usage_metrics AS u WHERE u.organization_id = o.id"
    "   AND u.metric_type = 'api_calls' AND u.period_start <= :now AND u.period_end > :now"
    "   ORDER BY u.period_start DESC LIMIT 1) AS api_calls"
    " FROM organizations AS o LEFT JOIN subscriptions AS s ON s.organization_id = o.id"
    " WHERE o.id = :org"
)


def invalidate(organization_id: uuid.UUID | None = None) -> None:
    """Forget the cached state (of one organization, or of all)."""
    if organization_id is None:
        _CACHE.clear()
    else:
        _CACHE.pop(organization_id, None)


def _enforced(settings: Settings, overrides: Mapping[str, Any]) -> bool:
    flag = overrides.get("billing")
    return flag if isinstance(flag, bool) else settings.billing_enabled


async def billing_state(
    session: AsyncSession, organization_id: uuid.UUID, settings: Settings | None = None
) -> BillingState:
    cached = _CACHE.get(organization_id)
    if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    row = (await session.execute(_STATE, {"org": organization_id, "now": clock.now()})).first()
    overrides: Mapping[str, Any] = dict(row.features_enabled or {}) if row is not None else {}
    state = BillingState(
        organization_id=organization_id,
        plan_tier=row.plan_tier if row is not None else "starter",
        overrides=overrides,
        status=row.status if row is not None else None,
        past_due_since=row.past_due_since if row is not None else None,
        trial_end=row.trial_end if row is not None else None,
        enforced=_enforced(settings or get_settings(), overrides),
        api_calls_month=int(row.api_calls or 0) if row is not None else 0,
    )
    _CACHE[organization_id] = (time.monotonic(), state)
    return state


def entitlements_of(state: BillingState, settings: Settings | None = None) -> Entitlements:
    plan = PLANS.get(state.plan_tier, PLANS["starter"])
    features = set(plan.features)
    for name in FEATURES:
        flag = state.overrides.get(name)
        if flag is True:
            features.add(name)
        elif flag is False:
            features.discard(name)
    limits: dict[str, int | None] = dict(plan.limits)
    extra = state.overrides.get("limits")
    if isinstance(extra, Mapping):
        for name, value in extra.items():
            if name in LIMITS and (value is None or isinstance(value, int)):
                limits[name] = value
    grace = timedelta(days=(settings or get_settings()).billing_grace_days)
    return Entitlements(state, plan, frozenset(features), limits, grace)


async def entitlements(
    session: AsyncSession, organization_id: uuid.UUID, settings: Settings | None = None
) -> Entitlements:
    """The organization's plan, features and limits (cached; see the module's doc)."""
    state = await billing_state(session, organization_id, settings)
    return entitlements_of(state, settings)


async def require_feature(
    session: AsyncSession,
    organization_id: uuid.UUID,
    feature: str,
    settings: Settings | None = None,
) -> None:
    """403 ``feature_not_in_plan`` when the organization's plan leaves ``feature`` out."""
    ent = await entitlements(session, organization_id, settings)
    if not ent.has(feature):
        raise FeatureNotInPlan(
            "Your plan does not include this feature. Upgrade in Settings → Billing.",
            extra={"plan": ent.plan.key, "feature": feature, "upgrade_url": "/settings/billing"},
        )


Usage = int | Callable[[], Awaitable[int]]


async def check_limit(
    session: AsyncSession,
    organization_id: uuid.UUID,
    name: str,
    usage: Usage,
    *,
    adding: int = 1,
    settings: Settings | None = None,
    warn: bool = True,
) -> None:
    """402 ``plan_limit_reached`` when ``adding`` more would pass the plan's ``name`` limit.
    ``usage``: the current count, or a coroutine function counting it (only called when a
    limit applies). Past the soft limit, admins are warned (an audit row, once a month)."""
    if name not in LIMITS:
        raise ValueError(f"unknown limit {name!r}")
    ent = await entitlements(session, organization_id, settings)
    limit = ent.limit(name)
    if limit is None:
        return
    current = usage if isinstance(usage, int) else await usage()
    if current + adding > limit:
        raise PlanLimitReached(
            "Your plan's limit is reached. Upgrade in Settings → Billing to go further.",
            extra={
                "plan": ent.plan.key,
                "limit": name,
                "allowed": limit,
                "usage": current,
                "upgrade_url": "/settings/billing",
            },
        )
    if warn and limit > 0 and current + adding >= limit * SOFT_LIMIT:
        await _warn_soft_limit(session, organization_id, name, current + adding, limit)


_WARNED = text(
    "SELECT 1 FROM audit_logs WHERE organization_id = :org AND action = 'plan.soft_limit'"
    " AND resource_type = :name AND created_at >= :since LIMIT 1"
)
_WARN = text(
    "INSERT INTO audit_logs (organization_id, action, resource_type, changes, success)"
    " VALUES (:org, 'plan.soft_limit', :name, CAST(:changes AS jsonb), true)"
)


async def _warn_soft_limit(
    session: AsyncSession, organization_id: uuid.UUID, name: str, usage: int, limit: int
) -> None:
    now = clock.now()
    since = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    found = await session.execute(_WARNED, {"org": organization_id, "name": name, "since": since})
    if found.first() is not None:
        return
    await session.execute(
        _WARN,
        {
            "org": organization_id,
            "name": name,
            "changes": json.dumps({"usage": usage, "allowed": limit}),
        },
    )
    # The admins are told (the notification centre reacts to it).
    await emit(
        session,
        DomainEvent(
            type="plan.soft_limit",
            organization_id=organization_id,
            data={"limit": name, "usage": usage, "allowed": limit, "month": f"{since:%Y-%m}"},
        ),
    )


def feature_for(path: str) -> str | None:
    """The feature an API path or a page needs (None: none in particular)."""
    for pattern, feature in FEATURE_ROUTES:
        if pattern.search(path):
            return feature
    return None


async def gate(
    session: AsyncSession, settings: Settings, principal: Principal, method: str, path: str
) -> None:
    """Every authenticated request, where the principal is resolved: a subscription past due
    beyond its grace period leaves reads only; an API route or a page whose feature the plan
    leaves out (or any API route for an API key, when ``api`` is left out) is refused."""
    org_id = principal.organization_id
    if org_id is None or path.startswith(UNGATED_PREFIXES):
        return
    ent = await entitlements(session, org_id, settings)
    if not ent.enforced:
        return
    if method not in SAFE_METHODS and not path.startswith(READ_ONLY_EXEMPT) and ent.read_only():
        raise SubscriptionReadOnly(
            "Your subscription is past due: the account is read-only until the payment is "
            "made. Update your card in Settings → Billing.",
            extra={
                "plan": ent.plan.key,
                "subscription_status": ent.state.status,
                "upgrade_url": "/settings/billing",
            },
        )
    if principal.via == "api_key" and path.startswith("/api/v1/"):
        if not ent.has("api"):
            await require_feature(session, org_id, "api", settings)
        await check_limit(
            session, org_id, "api_calls_month", ent.state.api_calls_month,
            settings=settings, warn=False,
        )  # fmt: skip
    feature = feature_for(path)
    if feature is not None:
        await require_feature(session, org_id, feature, settings)
