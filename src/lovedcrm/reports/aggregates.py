"""The reports' aggregates (migration 0012): per lead its facts (``report_lead_facts``), its
stays in each stage (``report_stage_spans``), and per member and hour the activities they
logged (``report_activity_counts``).

One definition, two ways to apply it:

- incrementally, in the transaction of each change (``reports.events``): a lead's rows are
  rebuilt from its own history when it changes (a few indexed statements, whatever the size of
  the organization), a stage change closes the open stay and opens the next, an activity adds
  one to its hour;
- from scratch, :func:`recompute` (an organization's rows rebuilt set-based): after this
  migration for the organizations that existed before it, or after a change that emits no
  event (an activity deleted or edited is counted until then).

The stage history is the ``analytics_events`` of the lead (``lead_created`` with the lead's
first stage, then each ``pipeline_conversion``), at the moment each event occurred; a lead that
has no ``lead_created`` event (made before analytics existed) starts at its ``created_at`` in
the stage its first recorded change left, or its current stage.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Table, event, insert, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from lovedcrm.core import clock
from lovedcrm.jobs.periodic import period_start
from lovedcrm.jobs.queue import BULK_PRIORITY, enqueue
from lovedcrm.reports.models import AnalyticsEvent, ReportLeadFact, ReportStageSpan

# --- lead facts ----------------------------------------------------------------------------

_FACT_COLUMNS = (
    "owner_id, source, stage_id, status, value, created_at, closed_at, first_inbound_at,"
    " first_reply_at"
)

# The facts of the organization's leads (all, or those in :ids), as one SELECT.
_FACTS_SELECT = """
SELECT l.organization_id, l.id, l.assigned_to, l.source, l.stage_id,
       COALESCE(l.status, 'active'), l.estimated_value, COALESCE(l.created_at, now()),
       CASE WHEN l.status = 'converted' THEN COALESCE(l.converted_at, l.updated_at, l.created_at)
            WHEN l.status = 'lost' THEN COALESCE(lost.at, l.updated_at, l.created_at)
       END,
       m.first_in,
       (SELECT min(o.created_at) FROM messages o
         WHERE o.organization_id = l.organization_id AND o.lead_id = l.id
           AND o.direction = 'outbound' AND o.created_at >= m.first_in)
  FROM leads l
  -- Each lead's last loss, read once for all (under row-level security a condition on
  -- event_data cannot use an index, so not one look-up per lead).
  LEFT JOIN (SELECT e.event_data ->> 'lead_id' AS lead_key, max(e.occurred_at) AS at
               FROM analytics_events e
              WHERE e.organization_id = :org AND e.event_type = 'lead_lost'
              GROUP BY 1) lost ON lost.lead_key = l.id::text
  LEFT JOIN LATERAL (
        SELECT min(i.created_at) AS first_in FROM messages i
         WHERE i.organization_id = l.organization_id AND i.lead_id = l.id
           AND i.direction = 'inbound') m ON true
 WHERE l.organization_id = :org
   AND (CAST(:ids AS uuid[]) IS NULL OR l.id = ANY(CAST(:ids AS uuid[])))
"""

_UPSERT_FACTS = text(
    f"""
    INSERT INTO report_lead_facts AS f (organization_id, lead_id, {_FACT_COLUMNS})
    {_FACTS_SELECT}
    ON CONFLICT (organization_id, lead_id) DO UPDATE SET
        owner_id = excluded.owner_id, source = excluded.source, stage_id = excluded.stage_id,
        status = excluded.status, value = excluded.value, created_at = excluded.created_at,
        closed_at = excluded.closed_at, first_inbound_at = excluded.first_inbound_at,
        first_reply_at = excluded.first_reply_at
    """
)

# Messages came or went: the leads' facts again, except those whose first answer is already
# known (later messages cannot change the first inbound one nor the first answer after it).
_UPSERT_UNANSWERED = text(
    f"""
    INSERT INTO report_lead_facts AS f (organization_id, lead_id, {_FACT_COLUMNS})
    SELECT * FROM ({_FACTS_SELECT}) s
     WHERE NOT EXISTS (SELECT 1 FROM report_lead_facts x
                        WHERE x.organization_id = :org AND x.lead_id = s.id
                          AND x.first_reply_at IS NOT NULL)
    ON CONFLICT (organization_id, lead_id) DO UPDATE SET
        first_inbound_at = excluded.first_inbound_at, first_reply_at = excluded.first_reply_at
    """
)

# --- stage spans ---------------------------------------------------------------------------

_SPANS_INSERT = text(
    """
    WITH hist AS (
        SELECT CAST(e.event_data ->> 'lead_id' AS uuid) AS lead_id, e.occurred_at AS at,
               CAST(CASE WHEN e.event_type = 'lead_created'
                         THEN e.event_data -> 'lead' ->> 'stage_id'
                         ELSE e.event_data ->> 'to_stage_id' END AS uuid) AS stage_id,
               CASE WHEN e.event_type = 'lead_created' THEN 0 ELSE 1 END AS kind,
               CAST(e.event_data ->> 'from_stage_id' AS uuid) AS from_stage
          FROM analytics_events e
         WHERE e.organization_id = :org
           AND e.event_type IN ('lead_created', 'pipeline_conversion')
           AND (CAST(:ids AS text[]) IS NULL
                OR (e.event_data ->> 'lead_id') = ANY(CAST(:ids AS text[])))
    ),
    first_change AS (
        SELECT DISTINCT ON (lead_id) lead_id, from_stage FROM hist WHERE kind = 1
         ORDER BY lead_id, at
    ),
    created AS (SELECT DISTINCT lead_id FROM hist WHERE kind = 0),
    starts AS (
        SELECT l.id AS lead_id, COALESCE(l.created_at, now()) AS at,
               COALESCE(fc.from_stage, l.stage_id) AS stage_id, 0 AS kind
          FROM leads l
          LEFT JOIN first_change fc ON fc.lead_id = l.id
          LEFT JOIN created c ON c.lead_id = l.id
         WHERE l.organization_id = :org AND c.lead_id IS NULL
           AND (CAST(:ids AS text[]) IS NULL OR l.id::text = ANY(CAST(:ids AS text[])))
    ),
    steps AS (
        SELECT lead_id, at, stage_id, kind FROM hist WHERE stage_id IS NOT NULL
        UNION ALL SELECT lead_id, at, stage_id, kind FROM starts
    )
    INSERT INTO report_stage_spans (organization_id, lead_id, stage_id, entered_at, left_at)
    SELECT :org, s.lead_id, s.stage_id, s.at,
           lead(s.at) OVER (PARTITION BY s.lead_id ORDER BY s.at, s.kind)
      FROM steps s
      JOIN leads l ON l.organization_id = :org AND l.id = s.lead_id
    """
)


def _ids(lead_ids: list[uuid.UUID] | None, as_text: bool = False) -> list[Any] | None:
    if lead_ids is None:
        return None
    return [str(i) for i in lead_ids] if as_text else list(lead_ids)


async def refresh_leads(
    session: AsyncSession,
    organization_id: uuid.UUID,
    lead_ids: list[uuid.UUID],
    *,
    spans: bool = True,
) -> None:
    """Rebuild these leads' facts (and, with ``spans``, their stage stays) from their
    history."""
    await session.flush()  # the history rows this transaction added (analytics events)
    await _write_new_leads(session)
    await session.execute(_UPSERT_FACTS, {"org": organization_id, "ids": _ids(lead_ids)})
    if not spans:
        return
    await session.execute(
        text(
            "DELETE FROM report_stage_spans WHERE organization_id = :org"
            " AND lead_id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"org": organization_id, "ids": _ids(lead_ids)},
    )
    await session.execute(
        _SPANS_INSERT, {"org": organization_id, "ids": _ids(lead_ids, as_text=True)}
    )


_PENDING = "reports.message_leads"  # session.info: {organization id: {lead id}}


def refresh_messages(session: AsyncSession, organization_id: uuid.UUID, lead_id: uuid.UUID) -> None:
    """A WhatsApp message of this lead came or went: its first-message and first-answer
    moments are brought up to date once, just before the transaction commits, for every
    lead that had messages in it (a batch of inbound messages costs one statement, not one
    per message). A rollback forgets them."""
    pending: dict[uuid.UUID, set[uuid.UUID]] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = {}
        sync = session.sync_session
        event.listen(sync, "before_commit", _apply_pending, once=True)
        event.listen(sync, "after_rollback", _drop_pending, once=True)
    pending.setdefault(organization_id, set()).add(lead_id)


def _apply_pending(sync: Session) -> None:
    pending = sync.info.pop(_PENDING, None) or {}
    if pending:
        sync.flush()
        _write_new_leads_sync(sync)  # the facts these moments update
    for organization_id, lead_ids in pending.items():
        sync.execute(_UPSERT_UNANSWERED, {"org": organization_id, "ids": sorted(lead_ids)})


def _drop_pending(sync: Session) -> None:
    sync.info.pop(_PENDING, None)


def _moment(raw: Any) -> datetime | None:
    if isinstance(raw, datetime):
        return raw
    return datetime.fromisoformat(raw) if isinstance(raw, str) and raw else None


def _uuid(raw: Any) -> uuid.UUID | None:
    return uuid.UUID(str(raw)) if raw else None


_NEW = "reports.new_leads"  # session.info: [(fact row, first stay row)]


def add_new_lead(
    session: AsyncSession,
    organization_id: uuid.UUID,
    lead: dict[str, Any],
    at: datetime,
    history: dict[str, Any],
) -> None:
    """A lead just created (its API shape, as ``lead.created`` carries it): its facts, its
    first stay and its ``history`` row (the ``lead_created`` analytics event, its columns),
    written with every other new lead of the unit of work in one statement (a multi-row
    INSERT per table) -- before this module next reads them, or just before the commit."""
    lead_id = uuid.UUID(str(lead["id"]))
    stage_id = uuid.UUID(str(lead["stage_id"]))
    created = _moment(lead.get("created_at")) or at
    updated = _moment(lead.get("updated_at"))
    status = str(lead.get("status") or "active")
    closed: datetime | None = None
    if status == "converted":
        closed = _moment(lead.get("converted_at")) or updated or created
    elif status == "lost":
        closed = updated or created
    value = lead.get("estimated_value")
    fact = {
        "id": uuid.uuid4(),
        "organization_id": organization_id,
        "lead_id": lead_id,
        "owner_id": _uuid(lead.get("assigned_to")),
        "source": lead.get("source"),
        "stage_id": stage_id,
        "status": status,
        "value": None if value is None else Decimal(str(value)),
        "created_at": created,
        "closed_at": closed,
    }
    stay = {
        "id": uuid.uuid4(),
        "organization_id": organization_id,
        "lead_id": lead_id,
        "stage_id": stage_id,
        "entered_at": at,
    }
    pending: list[tuple[dict[str, Any], ...]] | None = session.info.get(_NEW)
    if pending is None:
        pending = session.info[_NEW] = []
        sync = session.sync_session
        event.listen(sync, "before_commit", _write_new_leads_sync, once=True)
        event.listen(sync, "after_rollback", _drop_new_leads, once=True)
    pending.append((fact, stay, history))


# Core INSERTs on the tables: no RETURNING, none of the ORM's bulk-insert work.
_FACTS = cast(Table, ReportLeadFact.__table__)
_HISTORY = cast(Table, AnalyticsEvent.__table__)
_SPANS = cast(Table, ReportStageSpan.__table__)


def _new_lead_inserts(info: dict[Any, Any]) -> list[Any]:
    pending: list[tuple[dict[str, Any], ...]] = info.pop(_NEW, None) or []
    if not pending:
        return []
    # One round trip for the three tables: the facts' and the history's INSERTs as
    # data-modifying CTEs. One lead (made by hand or through the API) gives each INSERT one
    # set of values, a statement SQLAlchemy compiles once and caches; several give multi-row
    # VALUES, which it compiles each time.
    facts, stays, history = ([row[n] for row in pending] for n in range(3))
    one = len(pending) == 1
    new_facts = insert(_FACTS).values(facts[0] if one else facts).cte("new_facts")
    new_history = insert(_HISTORY).values(history[0] if one else history).cte("new_history")
    spans = insert(_SPANS).values(stays[0] if one else stays)
    return [spans.add_cte(new_facts, new_history)]


async def _write_new_leads(session: AsyncSession) -> None:
    for statement in _new_lead_inserts(session.info):
        await session.execute(statement)


def _write_new_leads_sync(sync: Session) -> None:
    for statement in _new_lead_inserts(sync.info):
        sync.execute(statement)


def _drop_new_leads(sync: Session) -> None:
    sync.info.pop(_NEW, None)


async def move_stage(
    session: AsyncSession,
    organization_id: uuid.UUID,
    lead_id: uuid.UUID,
    to_stage_id: uuid.UUID,
    at: datetime,
) -> None:
    """The lead left its stage for ``to_stage_id`` at ``at``: close the open stay, open the
    next. A lead with no stay yet (made before the aggregates) is rebuilt whole."""
    await session.flush()
    await _write_new_leads(session)
    closed = await session.execute(
        text(
            "UPDATE report_stage_spans SET left_at = :at WHERE organization_id = :org"
            " AND lead_id = :lead AND left_at IS NULL RETURNING id"
        ),
        {"org": organization_id, "lead": lead_id, "at": at},
    )
    if closed.first() is None:
        await refresh_leads(session, organization_id, [lead_id])
        return
    session.add(
        ReportStageSpan(
            id=uuid.uuid4(),
            organization_id=organization_id,
            lead_id=lead_id,
            stage_id=to_stage_id,
            entered_at=at,
        )
    )


_COUNT_ACTIVITY = text(
    """
    INSERT INTO report_activity_counts AS c
           (organization_id, bucket, user_id, activity_type, count)
    SELECT a.organization_id, date_trunc('hour', a.created_at), a.user_id, a.activity_type, 1
      FROM lead_activities a
     WHERE a.organization_id = :org AND a.id = :id AND a.user_id IS NOT NULL
    ON CONFLICT (organization_id, bucket, user_id, activity_type)
    DO UPDATE SET count = c.count + 1
    """
)


async def count_activity(
    session: AsyncSession, organization_id: uuid.UUID, activity_id: uuid.UUID
) -> None:
    """One more activity in its member's hour (activities without a member -- system
    entries, messages that came in -- are not anyone's work and are not counted)."""
    await session.execute(_COUNT_ACTIVITY, {"org": organization_id, "id": activity_id})


# --- from scratch --------------------------------------------------------------------------


@dataclass(frozen=True)
class Recomputed:
    leads: int
    spans: int
    activity_buckets: int


async def recompute(session: AsyncSession, organization_id: uuid.UUID) -> Recomputed:
    """Rebuild every aggregate of the organization from its history (set-based)."""
    await session.flush()
    await _write_new_leads(session)  # rebuilt below like the rest
    params: dict[str, Any] = {"org": organization_id, "ids": None}
    for table in ("report_lead_facts", "report_stage_spans", "report_activity_counts"):
        await session.execute(
            text(f"DELETE FROM {table} WHERE organization_id = :org"),
            params,
        )
    facts = await session.execute(_UPSERT_FACTS, params)
    spans = await session.execute(_SPANS_INSERT, params)
    counts = await session.execute(
        text(
            """
            INSERT INTO report_activity_counts
                   (organization_id, bucket, user_id, activity_type, count)
            SELECT organization_id, date_trunc('hour', created_at), user_id, activity_type,
                   count(*)
              FROM lead_activities
             WHERE organization_id = :org AND user_id IS NOT NULL
             GROUP BY organization_id, date_trunc('hour', created_at), user_id, activity_type
            """
        ),
        params,
    )
    return Recomputed(
        leads=int(getattr(facts, "rowcount", 0) or 0),
        spans=int(getattr(spans, "rowcount", 0) or 0),
        activity_buckets=int(getattr(counts, "rowcount", 0) or 0),
    )


# --- organizations whose history predates the aggregates -------------------------------------

RECOMPUTE = "reports.recompute"


class RecomputePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = "missing"


# The organization's first lead has no facts: its history predates the aggregates. Two
# index probes, cheap enough for every report.
_MISSING = text(
    """
    SELECT NOT EXISTS (
             SELECT 1 FROM report_lead_facts f
              WHERE f.organization_id = :org AND f.lead_id = first.id)
      FROM (SELECT id FROM leads WHERE organization_id = :org
             ORDER BY created_at, id LIMIT 1) AS first
    """
)


async def rebuild_if_missing(session: AsyncSession, organization_id: Any) -> bool:
    """Queue a rebuild (at most one an hour) when the aggregates miss the organization's
    first leads; True when one is queued or pending."""
    missing = (await session.execute(_MISSING, {"org": organization_id})).scalar()
    if not missing:
        return False
    hour = period_start(clock.now(), timedelta(hours=1)).isoformat()
    await enqueue(
        session,
        RECOMPUTE,
        RecomputePayload(),
        organization_id=organization_id,
        dedupe_key=f"{RECOMPUTE}:{organization_id}:{hour}",
        priority=BULK_PRIORITY,
    )
    return True
