"""The reports: one function per report, each reading the aggregates (``reports.aggregates``)
of the principal's organization under the filters. The JSON API and the pages both call these.

Scope: a member without ``leads:read_all`` (sales) counts only their own leads, their own
template sends and their own activities; managers, admins and viewers count everyone's.
Periods are whole days in the organization's time zone; every report also knows the period of
equal length just before. A ratio with nothing under it is ``None`` ("no data"), never NaN.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core import clock
from lovedcrm.core.principal import Principal
from lovedcrm.organizations.models import Organization
from lovedcrm.reports import aggregates
from lovedcrm.reports import schemas as s
from lovedcrm.reports.filters import DEFAULT_DAYS, MAX_DAYS, Filters, parse_filters
from lovedcrm.reports.home import zone_of

MIN_SENDS = 30  # sends each A/B variant needs before the test says anything
SIGNIFICANCE = 0.05
REPORTS = ("overview", "funnel", "stages", "owners", "sources", "templates", "whatsapp", "activity")


# --- shared pieces ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    org: uuid.UUID
    zone: ZoneInfo
    own: uuid.UUID | None  # the reader, when they count only their own


async def _ctx(session: AsyncSession, principal: Principal) -> _Ctx:
    principal.require("reports:read")
    org_id = principal.org()
    await aggregates.rebuild_if_missing(session, org_id)
    org = await session.get(Organization, org_id)
    own = None if principal.can("leads:read_all") else principal.user_id
    return _Ctx(org_id, zone_of(org), own)


def today_for(zone: ZoneInfo) -> date:
    return clock.now().astimezone(zone).date()


async def organization_today(session: AsyncSession, principal: Principal) -> date:
    org = await session.get(Organization, principal.org())
    return today_for(zone_of(org))


def _bounds(ctx: _Ctx, f: Filters) -> dict[str, datetime]:
    a = datetime.combine(f.start, time(), ctx.zone).astimezone(UTC)
    b = datetime.combine(f.end + timedelta(days=1), time(), ctx.zone).astimezone(UTC)
    return {"a": a, "b": b}


def _applied(ctx: _Ctx, f: Filters) -> s.AppliedFilters:
    p = f.previous()
    return s.AppliedFilters(
        period=s.Period(start=f.start, end=f.end, days=f.days),
        previous=s.Period(start=p.start, end=p.end, days=p.days),
        owner_id=f.owner_id,
        source=f.source,
        stage_id=f.stage_id,
        own_only=ctx.own is not None,
    )


def applied_filters(principal: Principal, f: Filters) -> s.AppliedFilters:
    own = None if principal.can("leads:read_all") else principal.user_id
    return _applied(_Ctx(principal.org(), ZoneInfo("UTC"), own), f)


def _fact_filters(ctx: _Ctx, f: Filters, alias: str = "f") -> tuple[str, dict[str, Any]]:
    """The WHERE of the lead facts under the scope and the filters (bound parameters)."""
    sql = [f"{alias}.organization_id = :org"]
    params: dict[str, Any] = {"org": ctx.org}
    if ctx.own is not None:
        sql.append(f"{alias}.owner_id = :own")
        params["own"] = ctx.own
    if f.owner_id is not None:
        sql.append(f"{alias}.owner_id = :owner")
        params["owner"] = f.owner_id
    if f.source is not None:
        sql.append(f"{alias}.source = :source")
        params["source"] = f.source
    if f.stage_id is not None:
        sql.append(f"{alias}.stage_id = :stage")
        params["stage"] = f.stage_id
    return " AND ".join(sql), params


def ratio(part: float | int | None, whole: float | int | None) -> float | None:
    if part is None or not whole:
        return None
    return float(part) / float(whole)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    out = float(value)
    return None if math.isnan(out) else round(out, 2)


def _money(value: Any) -> Decimal:
    return Decimal(value or 0).quantize(Decimal("0.01"))


async def _names(session: AsyncSession, org: uuid.UUID) -> dict[uuid.UUID, str]:
    rows = await session.execute(
        text(
            "SELECT u.id, u.full_name FROM organization_members m JOIN users u ON u.id = m.user_id"
            " WHERE m.organization_id = :org"
        ),
        {"org": org},
    )
    return {r[0]: r[1] for r in rows}


async def _stages(session: AsyncSession, org: uuid.UUID) -> list[Any]:
    rows = await session.execute(
        text(
            "SELECT id, name, stage_order FROM pipeline_stages WHERE organization_id = :org"
            " AND is_active ORDER BY stage_order, name"
        ),
        {"org": org},
    )
    return list(rows)


async def member_choices(session: AsyncSession, principal: Principal) -> list[tuple[str, str]]:
    """(user id, name) of the organization's members, for the owner filter."""
    names = await _names(session, principal.org())
    return sorted(((str(k), v) for k, v in names.items()), key=lambda kv: kv[1].lower())


async def stage_choices(session: AsyncSession, principal: Principal) -> list[tuple[str, str]]:
    """(stage id, name) of the active stages in order, for the stage filter."""
    return [(str(r[0]), r[1]) for r in await _stages(session, principal.org())]


# --- overview: win rate, deal size, sales cycle ---------------------------------------------


async def _kpis(session: AsyncSession, ctx: _Ctx, f: Filters) -> s.Kpis:
    where, params = _fact_filters(ctx, f)
    row = (
        await session.execute(
            text(
                f"""
                SELECT count(*) FILTER (WHERE created_at >= :a AND created_at < :b),
                       count(*) FILTER (WHERE won),
                       count(*) FILTER (WHERE f.status = 'lost' AND closed_in),
                       sum(value) FILTER (WHERE won),
                       avg(value) FILTER (WHERE won AND value IS NOT NULL),
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY cycle) FILTER (WHERE won),
                       avg(cycle) FILTER (WHERE won)
                  FROM (SELECT f.*, (f.closed_at >= :a AND f.closed_at < :b) AS closed_in,
                               (f.status = 'converted' AND f.closed_at >= :a
                                AND f.closed_at < :b) AS won,
                               EXTRACT(EPOCH FROM f.closed_at - f.created_at) / 86400 AS cycle
                          FROM report_lead_facts f
                         WHERE {where}
                           AND (f.created_at >= :a OR f.closed_at >= :a)) f
                """
            ),
            {**params, **_bounds(ctx, f)},
        )
    ).one()
    won, lost = int(row[1]), int(row[2])
    return s.Kpis(
        leads_created=int(row[0]),
        won=won,
        lost=lost,
        win_rate=ratio(won, won + lost),
        won_value=_money(row[3]),
        average_deal_size=None if row[4] is None else _money(row[4]),
        sales_cycle_median_days=_num(row[5]),
        sales_cycle_average_days=_num(row[6]),
    )


async def overview(session: AsyncSession, principal: Principal, f: Filters) -> s.OverviewReport:
    ctx = await _ctx(session, principal)
    return s.OverviewReport(
        filters=_applied(ctx, f),
        current=await _kpis(session, ctx, f),
        previous=await _kpis(session, ctx, f.previous()),
    )


# --- funnel ----------------------------------------------------------------------------------


WON_TOP = 2147483647  # a won lead reached every step


async def _reach(session: AsyncSession, ctx: _Ctx, f: Filters) -> dict[int, int]:
    """The cohort (leads created in the period) by the furthest stage order each reached
    (``WON_TOP`` for the won ones, -1 for a lead with no recorded stay): {order: leads}."""
    where, params = _fact_filters(ctx, f)
    rows = await session.execute(
        text(
            f"""
            SELECT top, count(*) FROM (
                SELECT CASE WHEN f.status = 'converted' THEN {WON_TOP}
                            ELSE COALESCE(max(ps.stage_order), -1) END AS top
                  FROM report_lead_facts f
                  LEFT JOIN report_stage_spans sp
                         ON sp.organization_id = f.organization_id AND sp.lead_id = f.lead_id
                  LEFT JOIN pipeline_stages ps
                         ON ps.organization_id = f.organization_id AND ps.id = sp.stage_id
                 WHERE {where} AND f.created_at >= :a AND f.created_at < :b
                 GROUP BY f.lead_id, f.status) t
             GROUP BY top
            """
        ),
        {**params, **_bounds(ctx, f)},
    )
    return {int(r[0]): int(r[1]) for r in rows}


async def funnel(
    session: AsyncSession, principal: Principal, f: Filters, *, compare: bool = True
) -> s.FunnelReport:
    """``compare=False``: without the previous period (its figures are 0 and None)."""
    ctx = await _ctx(session, principal)
    stages = await _stages(session, ctx.org)
    tops = await _reach(session, ctx, f)
    cohort, won = sum(tops.values()), tops.get(WON_TOP, 0)
    prev = await _reach(session, ctx, f.previous()) if compare else {}
    prev_cohort, prev_won = sum(prev.values()), prev.get(WON_TOP, 0)
    steps: list[s.FunnelStep] = []
    before: int | None = None
    for stage_id, name, order in stages:
        reached = sum(n for t, n in tops.items() if t >= order)
        steps.append(
            s.FunnelStep(
                stage_id=stage_id,
                name=name,
                reached=reached,
                conversion_from_previous=ratio(reached, before) if before is not None else None,
            )
        )
        before = reached
    steps.append(
        s.FunnelStep(
            stage_id=None,
            name="Won",
            reached=won,
            conversion_from_previous=ratio(won, before) if before is not None else None,
        )
    )
    return s.FunnelReport(
        filters=_applied(ctx, f),
        cohort=cohort,
        previous_cohort=prev_cohort,
        steps=steps,
        overall_conversion=ratio(won, cohort),
        previous_overall_conversion=ratio(prev_won, prev_cohort),
    )


# --- time in stage ---------------------------------------------------------------------------


async def _stage_times(
    session: AsyncSession, ctx: _Ctx, f: Filters | None, where: str, params: dict[str, Any]
) -> dict[uuid.UUID, tuple[int, float | None, float | None, float | None]]:
    """Per stage: (stays ended, median, p75, average days) in the period (all time: None)."""
    period = "AND sp.left_at >= :a AND sp.left_at < :b" if f is not None else ""
    rows = await session.execute(
        text(
            f"""
            SELECT sp.stage_id, count(*),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY d), percentile_cont(0.75)
                   WITHIN GROUP (ORDER BY d), avg(d)
              FROM (SELECT sp.stage_id, EXTRACT(EPOCH FROM sp.left_at - sp.entered_at) / 86400 d
                      FROM report_stage_spans sp
                      JOIN report_lead_facts f
                        ON f.organization_id = sp.organization_id AND f.lead_id = sp.lead_id
                     WHERE sp.organization_id = :org AND sp.left_at IS NOT NULL {period}
                       AND {where}) sp
             GROUP BY sp.stage_id
            """
        ),
        {**params, **(_bounds(ctx, f) if f is not None else {})},
    )
    return {r[0]: (int(r[1]), _num(r[2]), _num(r[3]), _num(r[4])) for r in rows}


async def stages(session: AsyncSession, principal: Principal, f: Filters) -> s.StagesReport:
    ctx = await _ctx(session, principal)
    where, params = _fact_filters(ctx, f)
    times = await _stage_times(session, ctx, f, where, params)
    open_rows = await session.execute(
        text(
            f"""
            SELECT f.stage_id, count(*) FROM report_lead_facts f
             WHERE {where} AND f.status = 'active' GROUP BY f.stage_id
            """
        ),
        params,
    )
    open_now = {r[0]: int(r[1]) for r in open_rows}
    out = []
    for stage_id, name, _ in await _stages(session, ctx.org):
        n, median, p75, avg = times.get(stage_id, (0, None, None, None))
        out.append(
            s.StageTime(
                stage_id=stage_id,
                name=name,
                stays=n,
                median_days=median,
                p75_days=p75,
                average_days=avg,
                open_now=open_now.get(stage_id, 0),
            )
        )
    return s.StagesReport(filters=_applied(ctx, f), stages=out)


@dataclass(frozen=True)
class StageNorms:
    """For the pipeline optimization, in one pass each: per stage the median days of the
    stays that ended in the period and of all stays ever (with their count), and the
    funnel's reach of the period's cohort and of every lead ever (``{top order: leads}``)."""

    names: list[tuple[uuid.UUID, str, int]]
    period_median: dict[uuid.UUID, float | None]
    history_median: dict[uuid.UUID, float | None]
    history_stays: dict[uuid.UUID, int]
    period_reach: dict[int, int]
    history_reach: dict[int, int]


async def stage_norms(session: AsyncSession, principal: Principal, f: Filters) -> StageNorms:
    ctx = await _ctx(session, principal)
    where, params = _fact_filters(ctx, f)
    bounds = _bounds(ctx, f)
    times = await session.execute(
        text(
            f"""
            SELECT sp.stage_id,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY d) FILTER (WHERE recent),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY d), count(*)
              FROM (SELECT sp.stage_id, EXTRACT(EPOCH FROM sp.left_at - sp.entered_at) / 86400 d,
                           sp.left_at >= :a AND sp.left_at < :b AS recent
                      FROM report_stage_spans sp
                      JOIN report_lead_facts f
                        ON f.organization_id = sp.organization_id AND f.lead_id = sp.lead_id
                     WHERE sp.organization_id = :org AND sp.left_at IS NOT NULL
                       AND sp.left_at < :b AND {where}) sp
             GROUP BY sp.stage_id
            """
        ),
        {**params, **bounds},
    )
    period_median: dict[uuid.UUID, float | None] = {}
    history_median: dict[uuid.UUID, float | None] = {}
    history_stays: dict[uuid.UUID, int] = {}
    for stage_id, recent, ever, n in times:
        period_median[stage_id], history_median[stage_id] = _num(recent), _num(ever)
        history_stays[stage_id] = int(n)
    reach = await session.execute(
        text(
            f"""
            SELECT top, recent, count(*) FROM (
                SELECT CASE WHEN f.status = 'converted' THEN {WON_TOP}
                            ELSE COALESCE(max(ps.stage_order), -1) END AS top,
                       f.created_at >= :a AS recent
                  FROM report_lead_facts f
                  LEFT JOIN report_stage_spans sp
                         ON sp.organization_id = f.organization_id AND sp.lead_id = f.lead_id
                  LEFT JOIN pipeline_stages ps
                         ON ps.organization_id = f.organization_id AND ps.id = sp.stage_id
                 WHERE {where} AND f.created_at < :b
                 GROUP BY f.lead_id, f.status, f.created_at) t
             GROUP BY top, recent
            """
        ),
        {**params, **bounds},
    )
    period_reach: dict[int, int] = {}
    history_reach: dict[int, int] = {}
    for top, recent, n in reach:
        history_reach[int(top)] = history_reach.get(int(top), 0) + int(n)
        if recent:
            period_reach[int(top)] = period_reach.get(int(top), 0) + int(n)
    return StageNorms(
        names=[(r[0], r[1], int(r[2])) for r in await _stages(session, ctx.org)],
        period_median=period_median,
        history_median=history_median,
        history_stays=history_stays,
        period_reach=period_reach,
        history_reach=history_reach,
    )


def conversions(
    stages: list[tuple[uuid.UUID, str, int]], tops: dict[int, int]
) -> dict[uuid.UUID, float | None]:
    """Each stage's conversion to the next funnel step (the last stage's: to won)."""
    reached = [sum(n for t, n in tops.items() if t >= order) for _, _, order in stages]
    reached.append(tops.get(WON_TOP, 0))
    return {
        stage_id: ratio(reached[i + 1], reached[i]) for i, (stage_id, _, _) in enumerate(stages)
    }


# --- owners ----------------------------------------------------------------------------------


async def _activity_per_member(
    session: AsyncSession, ctx: _Ctx, f: Filters
) -> dict[uuid.UUID, int]:
    sql, params = _activity_where(ctx, f)
    rows = await session.execute(
        text(
            f"SELECT user_id, sum(count) FROM report_activity_counts c WHERE {sql} GROUP BY user_id"
        ),
        params,
    )
    return {r[0]: int(r[1]) for r in rows}


async def owners(session: AsyncSession, principal: Principal, f: Filters) -> s.OwnersReport:
    ctx = await _ctx(session, principal)
    where, params = _fact_filters(ctx, f)
    rows = await session.execute(
        text(
            f"""
            SELECT f.owner_id,
                   count(*) FILTER (WHERE f.created_at >= :a AND f.created_at < :b),
                   count(*) FILTER (WHERE f.status = 'converted' AND f.closed_at >= :a
                                    AND f.closed_at < :b),
                   count(*) FILTER (WHERE f.status = 'lost' AND f.closed_at >= :a
                                    AND f.closed_at < :b),
                   sum(f.value) FILTER (WHERE f.status = 'converted' AND f.closed_at >= :a
                                        AND f.closed_at < :b),
                   count(*) FILTER (WHERE f.status = 'active'),
                   sum(f.value) FILTER (WHERE f.status = 'active')
              FROM report_lead_facts f WHERE {where}
             GROUP BY f.owner_id
            """
        ),
        {**params, **_bounds(ctx, f)},
    )
    names = await _names(session, ctx.org)
    activity = await _activity_per_member(session, ctx, f)
    out = []
    for r in rows:
        won, lost = int(r[2]), int(r[3])
        out.append(
            s.OwnerRow(
                owner_id=r[0],
                name=names.get(r[0]) if r[0] else None,
                leads_created=int(r[1]),
                won=won,
                lost=lost,
                win_rate=ratio(won, won + lost),
                won_value=_money(r[4]),
                open_leads=int(r[5]),
                open_value=_money(r[6]),
                activities=activity.get(r[0], 0) if r[0] else 0,
            )
        )
    out.sort(key=lambda o: (-o.won_value, -o.won, o.name or "~"))
    return s.OwnersReport(filters=_applied(ctx, f), owners=out)


# --- sources ---------------------------------------------------------------------------------


async def sources(session: AsyncSession, principal: Principal, f: Filters) -> s.SourcesReport:
    ctx = await _ctx(session, principal)
    where, params = _fact_filters(ctx, f)
    prev = _bounds(ctx, f.previous())
    rows = await session.execute(
        text(
            f"""
            SELECT f.source,
                   count(*) FILTER (WHERE f.created_at >= :a AND f.created_at < :b),
                   count(*) FILTER (WHERE f.created_at >= :a AND f.created_at < :b
                                    AND f.status = 'converted'),
                   sum(f.value) FILTER (WHERE f.created_at >= :a AND f.created_at < :b
                                        AND f.status = 'converted'),
                   count(*) FILTER (WHERE f.created_at >= :pa AND f.created_at < :pb)
              FROM report_lead_facts f
             WHERE {where} AND f.created_at >= :pa AND f.created_at < :b
             GROUP BY f.source
            """
        ),
        {**params, **_bounds(ctx, f), "pa": prev["a"], "pb": prev["b"]},
    )
    out = [
        s.SourceRow(
            source=r[0],
            leads=int(r[1]),
            won=int(r[2]),
            conversion=ratio(int(r[2]), int(r[1])),
            won_value=_money(r[3]),
            previous_leads=int(r[4]),
        )
        for r in rows
    ]
    out.sort(key=lambda x: (-x.leads, -x.previous_leads, x.source or "~"))
    return s.SourcesReport(filters=_applied(ctx, f), sources=out)


# --- message templates and their A/B variants ------------------------------------------------


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float | None, float | None]:
    """Two-sided two-proportion z-test with the pooled proportion: (z, p-value); None when
    it cannot be computed (an empty group, or every or no send answered in both)."""
    if n1 <= 0 or n2 <= 0:
        return None, None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None, None
    z = (x1 / n1 - x2 / n2) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


async def templates(session: AsyncSession, principal: Principal, f: Filters) -> s.TemplatesReport:
    ctx = await _ctx(session, principal)
    where, params = _fact_filters(ctx, f)
    user_filter = ""
    if ctx.own is not None:
        user_filter += " AND t.user_id = :own"
    if f.owner_id is not None:
        user_filter += " AND t.user_id = :owner"
    lead_filter = ""
    if f.source is not None or f.stage_id is not None:
        lead_filter = f" AND EXISTS (SELECT 1 FROM report_lead_facts f WHERE {where}"
        lead_filter += " AND f.lead_id = t.lead_id)"
    rows = await session.execute(
        text(
            f"""
            SELECT m.id, COALESCE(m.parent_template_id, m.id), m.name,
                   m.parent_template_id IS NOT NULL, u.sends, u.answered, u.converted, u.rt
              FROM (SELECT t.template_id, count(*) sends,
                           count(*) FILTER (WHERE t.response_received) answered,
                           count(*) FILTER (WHERE t.led_to_conversion) converted,
                           percentile_cont(0.5) WITHIN GROUP (ORDER BY t.response_time_minutes)
                               FILTER (WHERE t.response_received) rt
                      FROM template_usage_stats t
                     WHERE t.organization_id = :org AND t.created_at >= :a
                       AND t.created_at < :b {user_filter} {lead_filter}
                     GROUP BY t.template_id) u
              JOIN message_templates m ON m.organization_id = :org AND m.id = u.template_id
             ORDER BY COALESCE(m.parent_template_id, m.id), m.parent_template_id NULLS FIRST,
                      m.name
            """
        ),
        {**params, **_bounds(ctx, f)},
    )
    out = [
        s.TemplateRow(
            template_id=r[0],
            family_id=r[1],
            name=r[2],
            is_variant=bool(r[3]),
            sends=int(r[4]),
            answered=int(r[5]),
            answer_rate=ratio(int(r[5]), int(r[4])),
            converted=int(r[6]),
            conversion=ratio(int(r[6]), int(r[4])),
            median_response_minutes=_num(r[7]),
        )
        for r in rows
    ]
    families: dict[uuid.UUID, list[s.TemplateRow]] = {}
    for row in out:
        families.setdefault(row.family_id, []).append(row)
    comparisons = []
    for family_id, members in families.items():
        if len(members) < 2:
            continue
        leader = max(members, key=lambda m: (m.answer_rate or 0, m.sends))
        for other in members:
            if other is leader:
                continue
            z, p = two_proportion_z(leader.answered, leader.sends, other.answered, other.sends)
            enough = min(leader.sends, other.sends) >= MIN_SENDS
            comparisons.append(
                s.VariantComparison(
                    family_id=family_id,
                    leader_id=leader.template_id,
                    leader_name=leader.name,
                    other_id=other.template_id,
                    other_name=other.name,
                    leader_sends=leader.sends,
                    other_sends=other.sends,
                    leader_rate=leader.answer_rate,
                    other_rate=other.answer_rate,
                    z=None if z is None else round(z, 3),
                    p_value=None if p is None else round(p, 4),
                    enough_data=enough,
                    minimum_sends=MIN_SENDS,
                    significant=bool(enough and p is not None and p < SIGNIFICANCE),
                )
            )
    return s.TemplatesReport(filters=_applied(ctx, f), templates=out, comparisons=comparisons)


# --- WhatsApp first response -----------------------------------------------------------------


async def whatsapp(session: AsyncSession, principal: Principal, f: Filters) -> s.WhatsappReport:
    ctx = await _ctx(session, principal)
    where, params = _fact_filters(ctx, f)
    rows = await session.execute(
        text(
            f"""
            SELECT f.owner_id, count(*), count(f.first_reply_at),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY m),
                   percentile_cont(0.75) WITHIN GROUP (ORDER BY m),
                   GROUPING(f.owner_id)
              FROM (SELECT f.*, EXTRACT(EPOCH FROM f.first_reply_at - f.first_inbound_at) / 60 m
                      FROM report_lead_facts f
                     WHERE {where} AND f.first_inbound_at >= :a AND f.first_inbound_at < :b) f
             GROUP BY ROLLUP (f.owner_id)
            """
        ),
        {**params, **_bounds(ctx, f)},
    )
    names = await _names(session, ctx.org)
    total = s.WhatsappRow(
        owner_id=None,
        name=None,
        conversations=0,
        answered=0,
        answer_rate=None,
        median_first_response_minutes=None,
        p75_first_response_minutes=None,
    )
    out = []
    for r in rows:
        row = s.WhatsappRow(
            owner_id=None if r[5] else r[0],
            name=names.get(r[0]) if r[0] and not r[5] else None,
            conversations=int(r[1]),
            answered=int(r[2]),
            answer_rate=ratio(int(r[2]), int(r[1])),
            median_first_response_minutes=_num(r[3]),
            p75_first_response_minutes=_num(r[4]),
        )
        if r[5]:
            total = row
        else:
            out.append(row)
    out.sort(key=lambda x: (-x.conversations, x.name or "~"))
    return s.WhatsappReport(filters=_applied(ctx, f), owners=out, total=total)


# --- activity volume -------------------------------------------------------------------------


def _activity_where(ctx: _Ctx, f: Filters) -> tuple[str, dict[str, Any]]:
    sql = "c.organization_id = :org AND c.bucket >= :a AND c.bucket < :b"
    params: dict[str, Any] = {"org": ctx.org, **_bounds(ctx, f)}
    if ctx.own is not None:
        sql += " AND c.user_id = :own"
        params["own"] = ctx.own
    if f.owner_id is not None:
        sql += " AND c.user_id = :owner"
        params["owner"] = f.owner_id
    return sql, params


async def activity(session: AsyncSession, principal: Principal, f: Filters) -> s.ActivityReport:
    """Activities members logged (notes, calls, messages sent, stage changes…); the owner
    filter is the member who logged them; source and stage do not apply."""
    ctx = await _ctx(session, principal)
    sql, params = _activity_where(ctx, f)
    psql, pparams = _activity_where(ctx, f.previous())
    kinds: dict[str, list[int]] = {}
    for which, (w, p) in enumerate(((sql, params), (psql, pparams))):
        rows = await session.execute(
            text(
                f"SELECT activity_type, sum(count) FROM report_activity_counts c WHERE {w}"
                " GROUP BY activity_type"
            ),
            p,
        )
        for kind, n in rows:
            kinds.setdefault(kind, [0, 0])[which] = int(n)
    day_rows = await session.execute(
        text(
            f"SELECT (c.bucket AT TIME ZONE :tz)::date, sum(count)"
            f" FROM report_activity_counts c WHERE {sql} GROUP BY 1 ORDER BY 1"
        ),
        {**params, "tz": ctx.zone.key},
    )
    per_day = {r[0]: int(r[1]) for r in day_rows}
    names = await _names(session, ctx.org)
    members = await _activity_per_member(session, ctx, f)
    return s.ActivityReport(
        filters=_applied(ctx, f),
        total=sum(v[0] for v in kinds.values()),
        previous_total=sum(v[1] for v in kinds.values()),
        kinds=sorted(
            (s.ActivityKind(activity_type=k, count=v[0], previous=v[1]) for k, v in kinds.items()),
            key=lambda k: (-k.count, k.activity_type),
        ),
        days=[
            s.ActivityDay(
                day=f.start + timedelta(days=i), count=per_day.get(f.start + timedelta(days=i), 0)
            )
            for i in range(f.days)
        ],
        members=sorted(
            (s.ActivityMember(user_id=u, name=names.get(u), count=n) for u, n in members.items()),
            key=lambda m: (-m.count, m.name or "~"),
        ),
    )


# --- recompute -------------------------------------------------------------------------------


async def recompute(session: AsyncSession, principal: Principal) -> s.Recomputed:
    """Rebuild the organization's aggregates from its history (admins)."""
    principal.require("settings:manage")
    done = await aggregates.recompute(session, principal.org())
    return s.Recomputed(leads=done.leads, spans=done.spans, activity_buckets=done.activity_buckets)


__all__ = [
    "DEFAULT_DAYS",
    "MAX_DAYS",
    "REPORTS",
    "Filters",
    "activity",
    "funnel",
    "organization_today",
    "overview",
    "owners",
    "parse_filters",
    "recompute",
    "sources",
    "stages",
    "templates",
    "two_proportion_z",
    "whatsapp",
]
