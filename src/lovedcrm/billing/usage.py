"""What an organization uses, measured against its plan's limits, and the metering job's
aggregation into ``usage_metrics`` (one row per organization, metric and month).

Everything is read from what the other domains already keep (members, leads, WhatsApp
numbers, the assistant's turns, call logs, messages, attachments, API keys' request
counters): nothing is written per request. The statements read other domains' tables by
SQL on purpose (billing may not import the assistant or calls, its siblings); they are all
here, in one place.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core import clock

# Metric names of usage_metrics (the spec's metric_type).
METRICS = (
    "seats",
    "leads",
    "whatsapp_numbers",
    "ai_tokens",
    "call_minutes",
    "api_calls",
    "messages_sent",
    "storage_bytes",
)
# A plan limit → the metric it is measured by.
LIMIT_METRIC = {
    "seats": "seats",
    "leads": "leads",
    "whatsapp_numbers": "whatsapp_numbers",
    "ai_tokens_month": "ai_tokens",
    "call_minutes_month": "call_minutes",
    "api_calls_month": "api_calls",
}

_COUNTS = text(
    """
    SELECT
      (SELECT count(*) FROM organization_members
        WHERE organization_id = :org AND is_active IS NOT FALSE) AS seats,
      (SELECT count(*) FROM leads WHERE organization_id = :org) AS leads,
      (SELECT count(*) FROM whatsapp_configs WHERE organization_id = :org) AS whatsapp_numbers,
      (SELECT coalesce(sum(usage_count), 0) FROM ai_training_data
        WHERE organization_id = :org AND data_type = 'agent_turn'
          AND created_at >= :start AND created_at < :end) AS ai_tokens,
      (SELECT coalesce(sum(ceil(coalesce(duration_seconds, 0) / 60.0)), 0) FROM call_logs
        WHERE organization_id = :org AND created_at >= :start AND created_at < :end)
        AS call_minutes,
      (SELECT count(*) FROM messages
        WHERE organization_id = :org AND direction = 'outbound'
          AND created_at >= :start AND created_at < :end) AS messages_sent,
      (SELECT coalesce(sum(file_size), 0) FROM message_attachments
        WHERE organization_id = :org) AS storage_bytes,
      (SELECT coalesce(sum(total_requests), 0) FROM api_keys
        WHERE organization_id = :org) AS api_requests_total
    """
)


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


@dataclass(frozen=True)
class Snapshot:
    period_start: datetime
    period_end: datetime
    values: dict[str, int]


async def _api_calls(session: AsyncSession, org_id: uuid.UUID, start: datetime, total: int) -> int:
    """API calls this month: the keys' request counters now, less what they were when the
    month's row was first written (its ``baseline``)."""
    row = (
        await session.execute(
            text(
                "SELECT metadata FROM usage_metrics WHERE organization_id = :org"
                " AND metric_type = 'api_calls' AND period_start = :start"
            ),
            {"org": org_id, "start": start},
        )
    ).first()
    baseline = (row.metadata or {}).get("baseline") if row is not None else None
    return max(0, total - int(baseline)) if isinstance(baseline, int) else 0


async def measure(session: AsyncSession, org_id: uuid.UUID) -> Snapshot:
    """This month's usage of the organization (its tenant is the session's)."""
    start, end = month_bounds(clock.now())
    row = (await session.execute(_COUNTS, {"org": org_id, "start": start, "end": end})).one()
    values = {name: int(getattr(row, name) or 0) for name in METRICS if name != "api_calls"}
    values["api_calls"] = await _api_calls(session, org_id, start, int(row.api_requests_total))
    values["_api_requests_total"] = int(row.api_requests_total)
    return Snapshot(start, end, values)


_UPSERT = text(
    """
    INSERT INTO usage_metrics
        (organization_id, metric_type, metric_value, period_start, period_end, metadata)
    VALUES (:org, :metric, :value, :start, :end, CAST(:meta AS jsonb))
    ON CONFLICT (organization_id, metric_type, period_start)
    DO UPDATE SET metric_value = EXCLUDED.metric_value,
                  metadata = usage_metrics.metadata
                             || jsonb_build_object('measured_at', CAST(:at AS text))
    """
)


async def record(session: AsyncSession, org_id: uuid.UUID) -> Snapshot:
    """Measure and store this month's usage (the metering job)."""
    snap = await measure(session, org_id)
    at = clock.now().isoformat()
    for metric in METRICS:
        meta: dict[str, Any] = {"measured_at": at}
        if metric == "api_calls":
            meta["baseline"] = snap.values["_api_requests_total"]
        await session.execute(
            _UPSERT,
            {
                "org": org_id,
                "metric": metric,
                "value": min(snap.values[metric], 2_147_483_647),
                "start": snap.period_start,
                "end": snap.period_end,
                "meta": json.dumps(meta),
                "at": at,
            },
        )
    return snap


async def stored(session: AsyncSession, org_id: uuid.UUID, metric: str, start: datetime) -> Any:
    return (
        await session.execute(
            text(
                "SELECT id, metric_value, metadata FROM usage_metrics WHERE organization_id = :org"
                " AND metric_type = :metric AND period_start = :start"
            ),
            {"org": org_id, "metric": metric, "start": start},
        )
    ).first()


async def mark_reported(session: AsyncSession, row_id: uuid.UUID, value: int) -> None:
    await session.execute(
        text(
            "UPDATE usage_metrics"
            " SET metadata = metadata || jsonb_build_object('reported', CAST(:v AS integer))"
            " WHERE id = :id"
        ),
        {"id": row_id, "v": value},
    )
