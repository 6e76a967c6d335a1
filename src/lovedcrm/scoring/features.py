"""What the CRM knew about a lead at a moment: the features a score is computed from.

A lead is described as a *record* (feature name → plain value) as of a *cutoff*:

- an open lead: now — everything recorded so far;
- a closed lead (a training outcome): the moment it was closed — marked won or lost (the
  latest status change to its current outcome in the audit trail, else ``converted_at``),
  or, when the last move before that put it in a stage of type ``closed``, that move.

**No leakage.** Nothing recorded at or after the cutoff is a feature:

- activities, WhatsApp messages, template uses and stage changes count only when created
  before the cutoff (the closing stage move, made with the outcome, is excluded with it);
- the lead's own fields (source, value, company, e-mail, phone, owner, stage, custom fields)
  are taken as they were at the cutoff: every audited change made at or after it is undone
  from the audit trail (``audit_logs.changes.before``), so a field filled in after the
  outcome — a contract number, a value typed in when the deal was won — reads as it was;
- fields that *are* the outcome or derive from a score (``status``, ``lost_reason``,
  ``converted_at``, ``lead_score``, ``probability_percentage``) are never features;
- times are measured up to the cutoff (days in stage, days since the last activity, age).

``docs/decisions/0006-lead-scoring.md`` explains the choice. The evaluation command feeds a
CSV row in as custom fields (:func:`custom_record`): the same encoding and model follow.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import phonenumbers
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.scoring.encoding import AUTO, CATEGORY, NUMBER

CUSTOM_PREFIX = "custom:"
OPEN_STATUSES = ("active", "inactive")
ACTIVITY_TYPES = ("note", "call", "email", "meeting", "task")
FREE_EMAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "hotmail.com",
        "hotmail.com.br",
        "outlook.com",
        "outlook.com.br",
        "live.com",
        "msn.com",
        "yahoo.com",
        "yahoo.com.br",
        "ymail.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "uol.com.br",
        "bol.com.br",
        "terra.com.br",
        "ig.com.br",
        "globo.com",
        "protonmail.com",
        "proton.me",
        "zoho.com",
        "gmx.com",
        "mail.com",
    }
)

# The product's own features and how each is encoded (custom fields are added per org).
PRODUCT_FEATURES: dict[str, str] = {
    "source": CATEGORY,
    "value": NUMBER,
    "has_company": NUMBER,
    "has_job_title": NUMBER,
    "email_kind": CATEGORY,
    "phone_area": CATEGORY,
    "owner": CATEGORY,
    "stage": CATEGORY,
    "stage_changes": NUMBER,
    "days_in_stage": NUMBER,
    "days_since_activity": NUMBER,
    "age_days": NUMBER,
    **{f"activities:{kind}": NUMBER for kind in ACTIVITY_TYPES},
    "messages_in": NUMBER,
    "messages_out": NUMBER,
    "reply_minutes": NUMBER,
    "templates_sent": NUMBER,
    "templates_answered": NUMBER,
}

_CUSTOM_KINDS = {"number": NUMBER, "checkbox": NUMBER, "date": NUMBER, "select": CATEGORY}


def custom_key(name: str) -> str:
    return CUSTOM_PREFIX + name


def feature_label(name: str) -> str:
    """A feature's name without the custom-field prefix (a CSV column's name)."""
    return name.removeprefix(CUSTOM_PREFIX)


def custom_record(values: dict[str, Any]) -> dict[str, Any]:
    """Custom field values as features (what ``scoring evaluate`` makes of a CSV row)."""
    return {custom_key(k): v for k, v in values.items()}


def feature_kinds(definitions: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Every feature of an organization's leads with its encoding."""
    kinds = dict(PRODUCT_FEATURES)
    for d in definitions:
        kinds[custom_key(str(d["key"]))] = _CUSTOM_KINDS.get(str(d.get("type")), AUTO)
    return kinds


# --- reading what was known ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A lead to describe as of ``cutoff`` (None: now, everything recorded so far)."""

    lead_id: uuid.UUID
    cutoff: datetime | None = None


@dataclass
class Known:
    """The raw facts gathered for one lead (before they become a record)."""

    fields: dict[str, Any]
    created_at: datetime | None
    status: str | None = None  # as it is now (never a feature: it may be the outcome)
    activities: dict[str, int] = field(default_factory=dict)
    last_activity: datetime | None = None
    last_stage_change: datetime | None = None
    messages_in: int = 0
    messages_out: int = 0
    reply_minutes: float | None = None
    templates_sent: int = 0
    templates_answered: int = 0


_CUTOFFS = (
    "WITH c(lead_id, cutoff) AS ("
    " SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:cutoffs AS timestamptz[])))"
)
# One round trip: the leads' fields, and what happened before each one's cutoff (activities
# by type, WhatsApp messages each way with the lead's median answer time, template uses).
_FACTS = text(
    _CUTOFFS
    + """,
    acts AS (
        SELECT a.lead_id, a.activity_type, count(*) AS n, max(a.created_at) AS last
          FROM lead_activities a JOIN c ON a.lead_id = c.lead_id
         WHERE a.organization_id = :org AND (c.cutoff IS NULL OR a.created_at < c.cutoff)
         GROUP BY a.lead_id, a.activity_type
    ), activity AS (
        SELECT lead_id, jsonb_object_agg(activity_type, n) AS counts, max(last) AS last,
               max(last) FILTER (WHERE activity_type = 'stage_change') AS last_stage_change
          FROM acts GROUP BY lead_id
    ), m AS (
        SELECT m.lead_id, m.direction, m.created_at,
               lag(m.direction) OVER w AS previous_direction,
               lag(m.created_at) OVER w AS previous_at
          FROM messages m JOIN c ON m.lead_id = c.lead_id
         WHERE m.organization_id = :org AND (c.cutoff IS NULL OR m.created_at < c.cutoff)
        WINDOW w AS (PARTITION BY m.lead_id ORDER BY m.created_at, m.id)
    ), message AS (
        SELECT lead_id,
               count(*) FILTER (WHERE direction = 'inbound') AS inbound,
               count(*) FILTER (WHERE direction = 'outbound') AS outbound,
               percentile_cont(0.5) WITHIN GROUP (
                   ORDER BY EXTRACT(EPOCH FROM created_at - previous_at) / 60.0
               ) FILTER (WHERE direction = 'inbound' AND previous_direction = 'outbound')
                   AS reply_minutes
          FROM m GROUP BY lead_id
    ), template AS (
        SELECT t.lead_id, count(*) AS sent,
               count(*) FILTER (WHERE t.response_received AND (c.cutoff IS NULL
                   OR t.created_at + make_interval(mins => coalesce(t.response_time_minutes, 0))
                      < c.cutoff)) AS answered
          FROM template_usage_stats t JOIN c ON t.lead_id = c.lead_id
         WHERE t.organization_id = :org AND (c.cutoff IS NULL OR t.created_at < c.cutoff)
         GROUP BY t.lead_id
    )
    SELECT l.id, l.status, l.source, l.estimated_value, l.company, l.job_title, l.email,
           l.phone, l.assigned_to, l.stage_id, l.custom_fields, l.created_at,
           activity.counts, activity.last, activity.last_stage_change,
           message.inbound, message.outbound, message.reply_minutes,
           template.sent, template.answered
      FROM leads l JOIN c ON l.id = c.lead_id
      LEFT JOIN activity ON activity.lead_id = l.id
      LEFT JOIN message ON message.lead_id = l.id
      LEFT JOIN template ON template.lead_id = l.id
     WHERE l.organization_id = :org
    """
)
# Every audited change made at or after the cutoff, oldest first: its "before" is the value
# the field had at the cutoff (the first change of a field after the cutoff wins).
_UNDO = text(
    _CUTOFFS + " SELECT a.resource_id, a.changes FROM audit_logs a"
    " JOIN c ON a.resource_id = c.lead_id AND c.cutoff IS NOT NULL AND a.created_at >= c.cutoff"
    " WHERE a.organization_id = :org AND a.resource_type = 'lead' AND a.action = 'update'"
    " ORDER BY a.created_at, a.id"
)
_FIELDS = (
    "source",
    "estimated_value",
    "company",
    "job_title",
    "email",
    "phone",
    "assigned_to",
    "stage_id",
    "custom_fields",
)


async def gather(
    session: AsyncSession, organization_id: uuid.UUID, targets: Sequence[Target]
) -> dict[uuid.UUID, Known]:
    """The facts of each target lead as of its cutoff (leads not found are left out)."""
    params = {
        "org": organization_id,
        "ids": [t.lead_id for t in targets],
        "cutoffs": [t.cutoff for t in targets],
    }
    known: dict[uuid.UUID, Known] = {}
    for row in (await session.execute(_FACTS, params)).mappings():
        minutes = row["reply_minutes"]
        known[row["id"]] = Known(
            fields={f: row[f] for f in _FIELDS},
            created_at=row["created_at"],
            status=row["status"],
            activities={k: int(v) for k, v in (row["counts"] or {}).items()},
            last_activity=row["last"],
            last_stage_change=row["last_stage_change"],
            messages_in=int(row["inbound"] or 0),
            messages_out=int(row["outbound"] or 0),
            reply_minutes=None if minutes is None else max(0.0, float(minutes)),
            templates_sent=int(row["sent"] or 0),
            templates_answered=int(row["answered"] or 0),
        )
    if not known or all(t.cutoff is None for t in targets):
        return known  # nothing recorded after "now" to undo
    undone: dict[uuid.UUID, set[str]] = {}
    for row in (await session.execute(_UNDO, params)).mappings():
        lead = known.get(row["resource_id"])
        before = (row["changes"] or {}).get("before") or {}
        if lead is None or not isinstance(before, dict):
            continue
        done = undone.setdefault(row["resource_id"], set())
        for name, value in before.items():
            if name in lead.fields and name not in done:
                lead.fields[name] = value
                done.add(name)
    return known


# --- facts → a record --------------------------------------------------------------------------


def email_kind(email: Any) -> str | None:
    if not isinstance(email, str) or "@" not in email:
        return None
    domain = email.rsplit("@", 1)[1].strip().lower()
    return "free" if domain in FREE_EMAIL_DOMAINS else "corporate"


def phone_area(phone: Any) -> str | None:
    """``BR-11`` for a Brazilian number (its area code), ``+351`` for another country's."""
    if not isinstance(phone, str) or not phone.strip():
        return None
    try:
        number = phonenumbers.parse(phone, "BR")
    except phonenumbers.NumberParseException:
        return None
    national = str(number.national_number)
    if number.country_code == 55 and len(national) >= 10:
        return f"BR-{national[:2]}"
    return f"+{number.country_code}"


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


def _days(later: datetime, earlier: datetime | None) -> float | None:
    if earlier is None:
        return None
    return max(0.0, (later - earlier).total_seconds() / 86400.0)


def _custom_value(definition: dict[str, Any], value: Any, as_of: datetime) -> Any:
    kind = definition.get("type")
    if value is None or value == "":
        return None
    if kind == "checkbox":
        return bool(value) if isinstance(value, bool) else None
    if kind == "number":
        return _number(value)
    if kind == "date":
        try:
            day = date.fromisoformat(str(value))
        except ValueError:
            return None
        return float((day - as_of.date()).days)
    return str(value)


def record_of(
    known: Known, as_of: datetime, definitions: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The lead's record as of ``as_of`` (its cutoff, or now for an open lead)."""
    f = known.fields
    record: dict[str, Any] = {
        "source": (str(f["source"]).strip().lower() or None) if f["source"] else None,
        "value": _number(f["estimated_value"]),
        "has_company": 1.0 if f["company"] else 0.0,
        "has_job_title": 1.0 if f["job_title"] else 0.0,
        "email_kind": email_kind(f["email"]),
        "phone_area": phone_area(f["phone"]),
        "owner": str(f["assigned_to"]) if f["assigned_to"] else None,
        "stage": str(f["stage_id"]) if f["stage_id"] else None,
        "stage_changes": float(known.activities.get("stage_change", 0)),
        "days_in_stage": _days(as_of, known.last_stage_change or known.created_at),
        "days_since_activity": _days(as_of, known.last_activity or known.created_at),
        "age_days": _days(as_of, known.created_at),
        "messages_in": float(known.messages_in),
        "messages_out": float(known.messages_out),
        "reply_minutes": known.reply_minutes,
        "templates_sent": float(known.templates_sent),
        "templates_answered": float(known.templates_answered),
    }
    for kind in ACTIVITY_TYPES:
        record[f"activities:{kind}"] = float(known.activities.get(kind, 0))
    custom = f["custom_fields"] if isinstance(f["custom_fields"], dict) else {}
    for d in definitions:
        key = str(d["key"])
        record[custom_key(key)] = _custom_value(d, custom.get(key), as_of)
    return record


async def records_for(
    session: AsyncSession,
    organization_id: uuid.UUID,
    targets: Sequence[Target],
    definitions: Sequence[dict[str, Any]],
    now: datetime,
    *,
    only_open: bool = False,
) -> dict[uuid.UUID, dict[str, Any]]:
    """Each target's record: as of its cutoff, or as of ``now`` for an open lead
    (``only_open``: leads that are closed now are left out)."""
    known = await gather(session, organization_id, targets)
    return {
        t.lead_id: record_of(known[t.lead_id], t.cutoff or now, definitions)
        for t in targets
        if t.lead_id in known and (not only_open or known[t.lead_id].status in OPEN_STATUSES)
    }


# --- outcomes: the closed leads and when they closed -----------------------------------------

_OUTCOMES = text(
    """
    WITH closed AS (
        SELECT l.id, l.status, l.converted_at, l.updated_at, l.created_at
          FROM leads l
         WHERE l.organization_id = :org AND l.status IN ('converted', 'lost')
    ), decided AS (
        SELECT DISTINCT ON (a.resource_id) a.resource_id, a.created_at
          FROM audit_logs a JOIN closed ON a.resource_id = closed.id
         WHERE a.organization_id = :org AND a.resource_type = 'lead'
           AND a.changes -> 'after' ->> 'status' = closed.status
         ORDER BY a.resource_id, a.created_at DESC
    ), outcome AS (
        SELECT closed.id, closed.status,
               COALESCE(decided.created_at, closed.converted_at, closed.updated_at,
                        closed.created_at) AS decided_at
          FROM closed LEFT JOIN decided ON decided.resource_id = closed.id
    ), last_move AS (
        SELECT DISTINCT ON (a.lead_id) a.lead_id, a.created_at,
               a.metadata ->> 'to_stage_id' AS to_stage
          FROM lead_activities a JOIN outcome o ON a.lead_id = o.id
         WHERE a.organization_id = :org AND a.activity_type = 'stage_change'
           AND a.created_at <= o.decided_at
         ORDER BY a.lead_id, a.created_at DESC
    )
    SELECT o.id, o.status,
           CASE WHEN s.stage_type = 'closed' THEN LEAST(o.decided_at, m.created_at)
                ELSE o.decided_at END AS cutoff
      FROM outcome o
      LEFT JOIN last_move m ON m.lead_id = o.id
      LEFT JOIN pipeline_stages s
             ON s.organization_id = :org AND s.id::text = m.to_stage
     ORDER BY cutoff, o.id
    """
)


@dataclass(frozen=True)
class Outcome:
    lead_id: uuid.UUID
    won: bool
    cutoff: datetime


async def outcomes(session: AsyncSession, organization_id: uuid.UUID) -> list[Outcome]:
    """Every closed lead of the organization with the moment it closed, oldest first."""
    rows = (await session.execute(_OUTCOMES, {"org": organization_id})).all()
    return [Outcome(r.id, r.status == "converted", r.cutoff) for r in rows if r.cutoff]


async def outcome_counts(session: AsyncSession, organization_id: uuid.UUID) -> tuple[int, int]:
    """(won, lost) leads of the organization."""
    row = (
        await session.execute(
            text(
                "SELECT count(*) FILTER (WHERE status = 'converted') AS won,"
                " count(*) FILTER (WHERE status = 'lost') AS lost"
                " FROM leads WHERE organization_id = :org"
            ),
            {"org": organization_id},
        )
    ).one()
    return int(row.won), int(row.lost)
