"""Campaign ROI: ad spend per campaign per day (a CSV upload, bounded and parsed off the event
loop, or the Graph API's insights) against the leads the campaign brought (``ad_lead_receipts``)
and the deals they became → cost per lead, cost per won deal, return."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.core import clock
from lovedcrm.core.errors import ValidationFailed
from lovedcrm.core.principal import Principal
from lovedcrm.leads.models import Lead
from lovedcrm.marketing.models import AdLeadReceipt, AdSpend

PERMISSION = "settings:manage"
MAX_CSV_BYTES = 2_000_000
MAX_ROWS = 20_000
PROVIDER_NAMES = ("facebook", "google", "other")


@dataclass
class SpendRow:
    provider: str
    campaign_id: str
    campaign_name: str | None
    day: date
    amount: Decimal
    currency: str


def parse_amount(raw: str) -> Decimal:
    text = raw.strip().replace("R$", "").replace(" ", "")
    if "," in text and "." in text:
        text = text.replace(".", "").replace(",", ".")
    elif "," in text:
        text = text.replace(",", ".")
    value = Decimal(text)
    if value < 0 or value > Decimal("999999999999"):
        raise InvalidOperation
    return value.quantize(Decimal("0.01"))


def parse_csv(data: bytes) -> tuple[list[SpendRow], list[dict[str, str]]]:
    """``date,campaign_id,amount`` (+ optional ``campaign_name``, ``provider``, ``currency``);
    ``,`` or ``;`` separated; dates ISO (YYYY-MM-DD) or DD/MM/YYYY."""
    text = data.decode("utf-8-sig", errors="replace")
    dialect = ";" if text.split("\n", 1)[0].count(";") > text.split("\n", 1)[0].count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=dialect)
    rows: list[SpendRow] = []
    errors: list[dict[str, str]] = []
    fields = {(f or "").strip().lower() for f in reader.fieldnames or []}
    missing = {"date", "campaign_id", "amount"} - fields
    if missing:
        return [], [{"field": "file", "message": f"missing columns: {', '.join(sorted(missing))}"}]
    for n, raw in enumerate(reader, start=2):
        if n > MAX_ROWS + 1:
            errors.append({"field": "file", "message": f"more than {MAX_ROWS} rows"})
            break
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        try:
            day_text = row["date"]
            if "/" in day_text:
                d, m, y = day_text.split("/")
                day = date(int(y), int(m), int(d))
            else:
                day = date.fromisoformat(day_text)
            amount = parse_amount(row["amount"])
        except (ValueError, InvalidOperation):
            errors.append({"field": f"line {n}", "message": "invalid date or amount"})
            continue
        if not row["campaign_id"]:
            errors.append({"field": f"line {n}", "message": "campaign_id is empty"})
            continue
        provider = (row.get("provider") or "facebook").lower()
        rows.append(
            SpendRow(
                provider=provider if provider in PROVIDER_NAMES else "other",
                campaign_id=row["campaign_id"][:255],
                campaign_name=(row.get("campaign_name") or None) and row["campaign_name"][:255],
                day=day,
                amount=amount,
                currency=(row.get("currency") or "BRL").upper()[:3],
            )
        )
    return rows, errors


async def store_spend(
    session: AsyncSession, organization_id: uuid.UUID, rows: list[SpendRow]
) -> int:
    """Upsert each (provider, campaign, day): the latest figure wins."""
    for start in range(0, len(rows), 1000):
        chunk = rows[start : start + 1000]
        statement = insert(AdSpend).values(
            [
                {
                    "organization_id": organization_id,
                    "provider": r.provider,
                    "campaign_id": r.campaign_id,
                    "campaign_name": r.campaign_name,
                    "day": r.day,
                    "amount": r.amount,
                    "currency": r.currency,
                    "created_at": clock.now(),
                }
                for r in chunk
            ]
        )
        await session.execute(
            statement.on_conflict_do_update(
                constraint="uq_ad_spend_campaign_day",
                set_={
                    "amount": statement.excluded.amount,
                    "campaign_name": func.coalesce(
                        statement.excluded.campaign_name, AdSpend.campaign_name
                    ),
                    "currency": statement.excluded.currency,
                },
            )
        )
    return len(rows)


async def upload_spend(session: AsyncSession, principal: Principal, data: bytes) -> dict[str, Any]:
    principal.require(PERMISSION)
    if len(data) > MAX_CSV_BYTES:
        raise ValidationFailed(
            "The file is too large.",
            code="spend_file_too_large",
            extra={"errors": [{"field": "file", "message": f"at most {MAX_CSV_BYTES} bytes"}]},
        )
    rows, errors = await asyncio.to_thread(parse_csv, data)
    if errors:
        raise ValidationFailed(
            "The spend file has errors.", code="spend_file_invalid", extra={"errors": errors[:50]}
        )
    stored = await store_spend(session, principal.org(), rows)
    await audit.record_by(
        session,
        principal,
        action="import",
        resource_type="ad_spend",
        resource_id=None,
        changes={"rows": stored},
    )
    return {"rows": stored}


def _ratio(a: Decimal, b: int | Decimal) -> Decimal | None:
    return (a / Decimal(b)).quantize(Decimal("0.01")) if b else None


async def report(
    session: AsyncSession,
    principal: Principal,
    *,
    since: date | None = None,
    until: date | None = None,
) -> list[dict[str, Any]]:
    """One row per campaign: spend, leads, won deals, revenue (the won leads' estimated
    value), cost per lead, cost per won deal, return (revenue / spend)."""
    principal.require("reports:read")
    org = principal.org()
    spend_q = select(
        AdSpend.provider,
        AdSpend.campaign_id,
        func.max(AdSpend.campaign_name),
        func.sum(AdSpend.amount),
        func.max(AdSpend.currency),
    ).where(AdSpend.organization_id == org)
    if since:
        spend_q = spend_q.where(AdSpend.day >= since)
    if until:
        spend_q = spend_q.where(AdSpend.day <= until)
    spend_q = spend_q.group_by(AdSpend.provider, AdSpend.campaign_id)
    won = Lead.status == "converted"
    leads_q = (
        select(
            AdLeadReceipt.provider,
            AdLeadReceipt.campaign_id,
            func.max(AdLeadReceipt.campaign_name),
            func.count(func.distinct(AdLeadReceipt.lead_id)),
            func.count(func.distinct(Lead.id)).filter(won),
            func.coalesce(func.sum(Lead.estimated_value).filter(won), 0),
        )
        .select_from(AdLeadReceipt)
        .join(Lead, (Lead.id == AdLeadReceipt.lead_id) & (Lead.organization_id == org))
        .where(
            AdLeadReceipt.organization_id == org,
            AdLeadReceipt.is_test.is_(False),
            AdLeadReceipt.campaign_id.is_not(None),
        )
        .group_by(AdLeadReceipt.provider, AdLeadReceipt.campaign_id)
    )
    if since:
        leads_q = leads_q.where(func.date(AdLeadReceipt.created_at) >= since)
    if until:
        leads_q = leads_q.where(func.date(AdLeadReceipt.created_at) <= until)
    rows: dict[tuple[Any, Any], dict[str, Any]] = {}
    for provider, campaign, name, amount, currency in (await session.execute(spend_q)).all():
        rows[(provider, campaign)] = {
            "provider": provider,
            "campaign_id": campaign,
            "campaign_name": name,
            "spend": Decimal(amount or 0),
            "currency": currency,
            "leads": 0,
            "won": 0,
            "revenue": Decimal(0),
        }
    for kind, campaign_id, label, leads, won_n, revenue in (await session.execute(leads_q)).all():
        entry = rows.setdefault(
            (kind, campaign_id),
            {
                "provider": kind,
                "campaign_id": campaign_id,
                "campaign_name": label,
                "spend": Decimal(0),
                "currency": "BRL",
                "leads": 0,
                "won": 0,
                "revenue": Decimal(0),
            },
        )
        entry["campaign_name"] = entry["campaign_name"] or label
        entry["leads"], entry["won"] = int(leads), int(won_n)
        entry["revenue"] = Decimal(revenue or 0)
    out = []
    for entry in sorted(rows.values(), key=lambda e: (-e["spend"], e["campaign_id"])):
        spend = entry["spend"]
        entry["cost_per_lead"] = _ratio(spend, entry["leads"])
        entry["cost_per_won"] = _ratio(spend, entry["won"])
        entry["return"] = _ratio(entry["revenue"], spend) if spend else None
        out.append(entry)
    return out
