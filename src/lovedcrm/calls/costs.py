"""What calls and WhatsApp messages cost: per-call pricing and the costs report."""

from __future__ import annotations

import csv
import io
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import String, and_, case, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.auth.models import User
from lovedcrm.calls.models import CallLog, VoipConfig
from lovedcrm.core import clock
from lovedcrm.core.errors import NotFound, ValidationFailed
from lovedcrm.core.principal import Principal
from lovedcrm.leads.models import Lead
from lovedcrm.messaging.models import Message, MessageTemplate
from lovedcrm.organizations.models import Organization


def billed_minutes(duration_seconds: int) -> int:
    """Minutes billed for a call: every started minute counts (0 s → 0; 61 s → 2)."""
    if duration_seconds <= 0:
        return 0
    return (duration_seconds + 59) // 60


def call_cost(
    reported_price: Decimal | None,
    reported_unit: str | None,
    duration_seconds: int,
    cost_per_minute: Decimal | None,
    currency: str,
) -> tuple[Decimal | None, str]:
    """A call's cost and its currency.

    The provider's reported price wins when present (its absolute value: Twilio reports a
    negative price) in the provider's unit; otherwise the configuration's cost per minute
    times the billed minutes, in the configuration's currency; ``None`` when neither is known.
    """
    if reported_price is not None:
        unit = (reported_unit or currency).strip().upper() or currency.upper()
        return abs(Decimal(reported_price)), unit
    if cost_per_minute is None:
        return None, currency.upper()
    amount = Decimal(cost_per_minute) * billed_minutes(duration_seconds)
    return amount.quantize(Decimal("0.00001"), rounding=ROUND_HALF_UP), currency.upper()


# --- WhatsApp rates -----------------------------------------------------------------------------

WHATSAPP_CATEGORIES = ("marketing", "utility", "authentication", "service")
# A sensible starting table for Brazil in BRL per billed message (Meta's per-message pricing,
# rounded); each organization edits its own (Settings → Custos or the API).
DEFAULT_WHATSAPP_CURRENCY = "BRL"
DEFAULT_WHATSAPP_RATES: dict[str, Decimal] = {
    "marketing": Decimal("0.3500"),
    "utility": Decimal("0.0450"),
    "authentication": Decimal("0.1750"),
    "service": Decimal("0.0000"),
}
# The WhatsApp providers whose messages are billed per category (WhatsApp Web is not billed
# by Meta; the sandbox is priced as the Business API would be, so the demo shows the money).
BILLED_MESSAGE_PROVIDERS = ("whatsapp_business", "whatsapp_sandbox")
VOICE_PROVIDERS = ("twilio", "telnyx")
CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class WhatsappRates:
    currency: str
    rates: dict[str, Decimal]  # category → price of one billed message
    # A message template's own category (follow_up, greeting…) → the WhatsApp category it is
    # billed as; a template category that is not listed is billed as marketing.
    template_categories: dict[str, str] = field(default_factory=dict)
    customized: bool = False


def whatsapp_rates_of(org_settings: dict[str, Any] | None) -> WhatsappRates:
    """The organization's WhatsApp rate table (the default where nothing valid is stored)."""
    stored = ((org_settings or {}).get("costs") or {}).get("whatsapp")
    if not isinstance(stored, dict):
        return WhatsappRates(DEFAULT_WHATSAPP_CURRENCY, dict(DEFAULT_WHATSAPP_RATES))
    rates = dict(DEFAULT_WHATSAPP_RATES)
    for category, value in (stored.get("rates") or {}).items():
        if category in rates:
            try:
                rates[category] = Decimal(str(value))
            except ArithmeticError:
                continue
    currency = stored.get("currency")
    mapping = stored.get("template_categories") or {}
    return WhatsappRates(
        currency=currency if isinstance(currency, str) and CURRENCY.match(currency) else "BRL",
        rates=rates,
        template_categories={str(k): v for k, v in mapping.items() if v in WHATSAPP_CATEGORIES},
        customized=True,
    )


async def get_whatsapp_rates(session: AsyncSession, principal: Principal) -> WhatsappRates:
    principal.require("reports:read")
    org = await session.get(Organization, principal.org())
    return whatsapp_rates_of(org.settings if org is not None else None)


async def set_whatsapp_rates(
    session: AsyncSession,
    principal: Principal,
    *,
    currency: str,
    rates: dict[str, Decimal],
    template_categories: dict[str, str] | None = None,
) -> WhatsappRates:
    """Replace the organization's WhatsApp rate table (``settings:manage``; audited)."""
    principal.require("settings:manage")
    errors: list[dict[str, str]] = []
    if not CURRENCY.match(currency):
        errors.append({"field": "currency", "message": "a three-letter currency code (BRL)"})
    for category, value in rates.items():
        if category not in WHATSAPP_CATEGORIES:
            errors.append({"field": f"rates.{category}", "message": "unknown category"})
        elif value < 0:
            errors.append({"field": f"rates.{category}", "message": "must not be negative"})
    for name, category in (template_categories or {}).items():
        if category not in WHATSAPP_CATEGORIES:
            errors.append(
                {"field": f"template_categories.{name}", "message": "unknown WhatsApp category"}
            )
    if errors:
        raise ValidationFailed("The WhatsApp rate table is not valid.", extra={"errors": errors})
    org = await session.get(Organization, principal.org())
    if org is None:
        raise NotFound("Organization not found.")
    before = whatsapp_rates_of(org.settings)
    full = dict(before.rates)
    full.update(rates)
    stored = {
        "currency": currency,
        "rates": {k: str(v) for k, v in full.items()},
        "template_categories": dict(template_categories or {}),
    }
    settings = dict(org.settings or {})
    costs = dict(settings.get("costs") or {})
    costs["whatsapp"] = stored
    settings["costs"] = costs
    org.settings = settings
    await session.flush()
    await audit.record(
        session,
        action="update",
        resource_type="whatsapp_rates",
        resource_id=org.id,
        organization_id=org.id,
        user_id=principal.user_id,
        changes={
            "before": {
                "currency": before.currency,
                "rates": {k: str(v) for k, v in before.rates.items()},
            },
            "after": stored,
        },
    )
    return whatsapp_rates_of(org.settings)


# --- the costs report ----------------------------------------------------------------------------

GROUPS = ("user", "provider", "source", "month")
PERIOD = re.compile(r"^[12]\d{3}(-(0[1-9]|1[0-2]))?$")


@dataclass
class Money:
    """Amounts per currency: never added across currencies."""

    amounts: dict[str, Decimal] = field(default_factory=dict)

    def add(self, currency: str, amount: Decimal) -> None:
        self.amounts[currency] = self.amounts.get(currency, Decimal(0)) + amount

    def merge(self, other: Money) -> None:
        for currency, amount in other.amounts.items():
            self.add(currency, amount)

    def items(self) -> list[tuple[str, Decimal]]:
        return sorted(self.amounts.items())


@dataclass
class CostRow:
    key: str | None
    label: str | None
    calls: int = 0
    minutes: int = 0
    unpriced_calls: int = 0  # calls with no known cost (no reported price and no rate)
    voice: Money = field(default_factory=Money)
    messages: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    whatsapp: Money = field(default_factory=Money)

    @property
    def total(self) -> Money:
        both = Money()
        both.merge(self.voice)
        both.merge(self.whatsapp)
        return both


@dataclass
class Alternative:
    provider: str
    configured: bool  # False: that provider has no configuration (or no cost per minute)
    currency: str | None = None
    cost_per_minute: Decimal | None = None
    amount: Decimal | None = None  # the same billed minutes at its rate


@dataclass
class Comparison:
    """Calls made through ``provider``: what they cost, and what the same billed minutes would
    have cost on each other provider, at the configured rates."""

    provider: str
    calls: int
    minutes: int
    actual: Money
    own_rate: Alternative  # the same minutes at this provider's own configured rate
    alternatives: list[Alternative]


@dataclass
class CostReport:
    period: str
    start: datetime
    end: datetime
    group_by: str
    scope: str  # "organization" or "own"
    rows: list[CostRow]
    totals: CostRow
    comparisons: list[Comparison]
    whatsapp_rates: WhatsappRates


def period_bounds(period: str | None) -> tuple[str, datetime, datetime]:
    """``2026-03`` → that month; ``2026`` → that year; none → the current month (UTC)."""
    if period is None or period == "":
        today = clock.now()
        period = f"{today.year:04d}-{today.month:02d}"
    if not PERIOD.match(period):
        raise ValidationFailed(
            "The period must be a month (YYYY-MM) or a year (YYYY).",
            code="invalid_period",
            extra={"errors": [{"field": "period", "message": "YYYY-MM or YYYY"}]},
        )
    if len(period) == 4:
        year = int(period)
        return period, datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    year, month = int(period[:4]), int(period[5:])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return period, start, end


def _sees_all(principal: Principal) -> bool:
    return principal.via == "api_key" or principal.can("leads:read_all")


def _call_key(group_by: str) -> Any:
    if group_by == "user":
        return cast(CallLog.user_id, String)
    if group_by == "provider":
        return CallLog.provider_type
    if group_by == "source":
        return Lead.source
    return func.to_char(func.timezone("UTC", CallLog.created_at), "YYYY-MM")


def _message_key(group_by: str) -> Any:
    if group_by == "user":
        return Message.metadata_["sent_by"].astext
    if group_by == "provider":
        return Message.provider_type
    if group_by == "source":
        return Lead.source
    return func.to_char(func.timezone("UTC", Message.created_at), "YYYY-MM")


def _category(rates: WhatsappRates) -> Any:
    """A message's billed WhatsApp category: the provider's reported pricing category when
    recorded; a template's category (mapped); otherwise a service message (a reply inside the
    customer's 24-hour window)."""
    reported = Message.metadata_["pricing"]["category"].astext
    own = MessageTemplate.category
    mapped = [(own == k, v) for k, v in sorted(rates.template_categories.items())]
    template_category = case(
        (own.in_(WHATSAPP_CATEGORIES), own), *mapped, else_=literal("marketing")
    )
    return case(
        (reported.in_(WHATSAPP_CATEGORIES), reported),
        (Message.message_type == "template", template_category),
        else_=literal("service"),
    )


async def _voice_rates(session: AsyncSession, org_id: uuid.UUID) -> dict[str, Alternative]:
    """Each provider's configured rate (the active configuration first)."""
    rows = await session.execute(
        select(VoipConfig)
        .where(VoipConfig.organization_id == org_id)
        .order_by(VoipConfig.is_active.desc().nulls_last(), VoipConfig.created_at.asc())
    )
    found: dict[str, Alternative] = {}
    for config in rows.scalars():
        if config.provider_type in found and found[config.provider_type].configured:
            continue
        rate = config.cost_per_minute
        found[config.provider_type] = Alternative(
            provider=config.provider_type,
            configured=rate is not None,
            currency=voice_currency(config.config_data),
            cost_per_minute=rate,
        )
    return found


def voice_currency(config_data: dict[str, Any] | None) -> str:
    """A telephony configuration's currency (``config_data.currency``; USD by default: Twilio
    and Telnyx bill in dollars)."""
    value = (config_data or {}).get("currency")
    return value.upper() if isinstance(value, str) and CURRENCY.match(value.upper()) else "USD"


def _at_rate(provider: str, minutes: int, known: dict[str, Alternative]) -> Alternative:
    rate = known.get(provider)
    if rate is None or not rate.configured or rate.cost_per_minute is None:
        return Alternative(provider=provider, configured=False)
    return Alternative(
        provider=provider,
        configured=True,
        currency=rate.currency,
        cost_per_minute=rate.cost_per_minute,
        amount=rate.cost_per_minute * minutes,
    )


async def cost_report(
    session: AsyncSession,
    principal: Principal,
    *,
    period: str | None = None,
    group_by: str = "user",
) -> CostReport:
    """What calls and WhatsApp messages cost in ``period``, grouped by user, provider, lead
    source or month, per currency. Managers and admins see the organization; a sales member
    sees their own calls and messages."""
    principal.require("reports:read")
    if group_by not in GROUPS:
        raise ValidationFailed(
            "group_by must be one of: user, provider, source, month.",
            code="invalid_group_by",
            extra={"errors": [{"field": "group_by", "message": "user|provider|source|month"}]},
        )
    period, start, end = period_bounds(period)
    org_id = principal.org()
    sees_all = _sees_all(principal)
    rates = await get_whatsapp_rates(session, principal)
    rows: dict[str | None, CostRow] = {}

    def row(key: str | None) -> CostRow:
        if key not in rows:
            rows[key] = CostRow(key=key, label=key)
        return rows[key]

    # Voice: per group, provider and currency.
    minutes = func.sum(
        func.ceil(func.greatest(func.coalesce(CallLog.duration_seconds, 0), 0) / 60.0)
    )
    ckey = _call_key(group_by).label("k")
    voice_q = (
        select(
            ckey,
            CallLog.provider_type,
            CallLog.cost_currency,
            func.count().label("calls"),
            minutes.label("minutes"),
            func.sum(CallLog.cost_amount).label("amount"),
            func.count().filter(CallLog.cost_amount.is_(None)).label("unpriced"),
        )
        .select_from(CallLog)
        .outerjoin(Lead, Lead.id == CallLog.lead_id)
        .where(
            CallLog.organization_id == org_id,
            CallLog.created_at >= start,
            CallLog.created_at < end,
        )
        .group_by(ckey, CallLog.provider_type, CallLog.cost_currency)
    )
    if not sees_all:
        voice_q = voice_q.where(CallLog.user_id == principal.user_id)
    per_provider: dict[str, Comparison] = {}
    for k, provider, currency, calls, mins, amount, unpriced in (
        await session.execute(voice_q)
    ).all():
        r = row(k)
        r.calls += calls
        r.minutes += int(mins or 0)
        r.unpriced_calls += unpriced
        if amount is not None:
            r.voice.add((currency or "USD").upper(), Decimal(amount))
        c = per_provider.setdefault(
            provider,
            Comparison(provider, 0, 0, Money(), Alternative(provider, False), []),
        )
        c.calls += calls
        c.minutes += int(mins or 0)
        if amount is not None:
            c.actual.add((currency or "USD").upper(), Decimal(amount))

    # WhatsApp: outbound billed messages per group and category.
    mkey = _message_key(group_by).label("k")
    category = _category(rates).label("category")
    template_id = Message.metadata_["template"]["id"].astext
    message_q = (
        select(mkey, category, func.count().label("n"))
        .select_from(Message)
        .outerjoin(Lead, Lead.id == Message.lead_id)
        .outerjoin(
            MessageTemplate,
            and_(
                Message.message_type == "template",
                cast(MessageTemplate.id, String) == template_id,
            ),
        )
        .where(
            Message.organization_id == org_id,
            Message.direction == "outbound",
            Message.provider_type.in_(BILLED_MESSAGE_PROVIDERS),
            Message.status != "failed",
            Message.created_at >= start,
            Message.created_at < end,
        )
        .group_by(mkey, category)
    )
    if not sees_all:
        message_q = message_q.where(Message.metadata_["sent_by"].astext == str(principal.user_id))
    for k, cat, n in (await session.execute(message_q)).all():
        r = row(k)
        r.messages += n
        r.by_category[cat] = r.by_category.get(cat, 0) + n
        r.whatsapp.add(rates.currency, rates.rates.get(cat, Decimal(0)) * n)

    if group_by == "user":
        ids = [uuid.UUID(k) for k in rows if k and _is_uuid(k)]
        if ids:
            names = dict(
                (
                    await session.execute(select(User.id, User.full_name).where(User.id.in_(ids)))
                ).all()
            )
            for k, r in rows.items():
                if k and _is_uuid(k):
                    r.label = names.get(uuid.UUID(k), k)

    totals = CostRow(key=None, label=None)
    for r in rows.values():
        totals.calls += r.calls
        totals.minutes += r.minutes
        totals.unpriced_calls += r.unpriced_calls
        totals.voice.merge(r.voice)
        totals.messages += r.messages
        for cat, n in r.by_category.items():
            totals.by_category[cat] = totals.by_category.get(cat, 0) + n
        totals.whatsapp.merge(r.whatsapp)

    known = await _voice_rates(session, org_id)
    for provider, c in per_provider.items():
        c.own_rate = _at_rate(provider, c.minutes, known)
        c.alternatives = [_at_rate(p, c.minutes, known) for p in VOICE_PROVIDERS if p != provider]

    ordered = sorted(
        rows.values(),
        key=lambda r: (r.key is None, r.key if group_by == "month" else (r.label or "").lower()),
    )
    return CostReport(
        period=period,
        start=start,
        end=end,
        group_by=group_by,
        scope="organization" if sees_all else "own",
        rows=ordered,
        totals=totals,
        comparisons=sorted(per_provider.values(), key=lambda c: c.provider),
        whatsapp_rates=rates,
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def report_csv(report: CostReport) -> str:
    """The report's table: one line per group and currency (amounts never added across
    currencies), then the totals."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "period",
            report.group_by,
            "label",
            "currency",
            "voice_cost",
            "whatsapp_cost",
            "total_cost",
            "calls",
            "billed_minutes",
            "unpriced_calls",
            "messages",
            *(f"messages_{c}" for c in WHATSAPP_CATEGORIES),
        ]
    )
    for r in [*report.rows, report.totals]:
        key = "total" if r is report.totals else (r.key or "")
        label = "" if r is report.totals else (r.label or "")
        currencies = sorted(r.total.amounts) or [""]
        for i, currency in enumerate(currencies):
            counts = i == 0  # counts once per row, on its first currency line
            writer.writerow(
                [
                    report.period,
                    key,
                    label,
                    currency,
                    _plain(r.voice.amounts.get(currency)),
                    _plain(r.whatsapp.amounts.get(currency)),
                    _plain(r.total.amounts.get(currency)),
                    r.calls if counts else "",
                    r.minutes if counts else "",
                    r.unpriced_calls if counts else "",
                    r.messages if counts else "",
                    *((r.by_category.get(c, 0) if counts else "") for c in WHATSAPP_CATEGORIES),
                ]
            )
    return buffer.getvalue()


def _plain(value: Decimal | None) -> str:
    return "" if value is None else f"{value.quantize(Decimal('0.00001')):f}"
