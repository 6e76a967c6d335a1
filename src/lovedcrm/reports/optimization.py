"""Pipeline optimization: where deals get stuck and what to do about it.

- Bottlenecks: each stage's median time and its conversion to the next step in the period,
  beside the organization's own history (all time); the slowest stage and the one that
  converts least are marked, and so is a stage slower or converting less than usual.
- Stalled deals: active leads in a stage for longer than that stage's p75 time (from the
  organization's finished stays, once a stage has ``MIN_STAYS`` of them), with no activity for
  as long.
- Actions: short sentences naming counts and leads, each linking to the leads list filtered
  to them (stage, active, oldest activity first) or to the inbox.
"""

from __future__ import annotations

import math
import uuid
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core import clock
from lovedcrm.core.principal import Principal
from lovedcrm.reports import schemas as s
from lovedcrm.reports import service
from lovedcrm.reports.service import Filters

MIN_STAYS = 5  # finished stays a stage needs before its p75 means anything
SHOWN = 5  # leads named per stalled stage
SLOWER = 1.2  # "slower than usual": the period's median above 1.2 x the history's
LESS = 0.10  # "converting less than usual": ten points under the history's
HISTORY_START = date(2000, 1, 1)


def _list_url(stage_id: uuid.UUID, assignee: str | None) -> str:
    params = {"stage": str(stage_id), "status": "active", "sort": "activity"}
    if assignee:
        params["assignee"] = assignee
    return "/leads?" + urlencode(params)


async def _stalled(
    session: AsyncSession, principal: Principal, f: Filters, names: dict[uuid.UUID, str]
) -> list[s.StalledStage]:
    org = principal.org()
    own = None if principal.can("leads:read_all") else principal.user_id
    where = ["f.organization_id = :org", "f.status = 'active'"]
    params: dict[str, Any] = {"org": org, "now": clock.now(), "min": MIN_STAYS}
    for column, key, value in (
        ("owner_id", "own", own),
        ("owner_id", "owner", f.owner_id),
        ("source", "source", f.source),
        ("stage_id", "stage", f.stage_id),
    ):
        if value is not None:
            where.append(f"f.{column} = :{key}")
            params[key] = value
    rows = await session.execute(
        text(
            f"""
            WITH norm AS (
                SELECT stage_id, GREATEST(1, round(percentile_cont(0.75) WITHIN GROUP
                       (ORDER BY EXTRACT(EPOCH FROM left_at - entered_at) / 86400)))::int AS d
                  FROM report_stage_spans
                 WHERE organization_id = :org AND left_at IS NOT NULL
                 GROUP BY stage_id HAVING count(*) >= :min
            )
            SELECT sp.stage_id, norm.d, l.id, l.full_name,
                   EXTRACT(EPOCH FROM CAST(:now AS timestamptz) - sp.entered_at) / 86400
              FROM report_stage_spans sp
              JOIN norm ON norm.stage_id = sp.stage_id
              JOIN report_lead_facts f
                ON f.organization_id = sp.organization_id AND f.lead_id = sp.lead_id
              JOIN leads l ON l.organization_id = sp.organization_id AND l.id = sp.lead_id
             WHERE sp.organization_id = :org AND sp.left_at IS NULL AND {" AND ".join(where)}
               AND sp.entered_at < CAST(:now AS timestamptz) - make_interval(days => norm.d)
               AND COALESCE(l.last_activity_at, l.created_at)
                   < CAST(:now AS timestamptz) - make_interval(days => norm.d)
             ORDER BY sp.stage_id, sp.entered_at, l.id
            """
        ),
        params,
    )
    assignee = str(own) if own else (str(f.owner_id) if f.owner_id else None)
    by_stage: dict[uuid.UUID, s.StalledStage] = {}
    for stage_id, days, lead_id, name, in_stage in rows:
        group = by_stage.get(stage_id)
        if group is None:
            group = by_stage[stage_id] = s.StalledStage(
                stage_id=stage_id,
                name=names.get(stage_id, "?"),
                threshold_days=int(days),
                count=0,
                leads=[],
                url=_list_url(stage_id, assignee),
            )
        group.count += 1
        if len(group.leads) < SHOWN:
            group.leads.append(
                s.StalledLead(lead_id=lead_id, full_name=name, days_in_stage=round(in_stage, 1))
            )
    return sorted(by_stage.values(), key=lambda g: (-g.count, g.name))


async def _unanswered(session: AsyncSession, principal: Principal, f: Filters) -> int:
    own = None if principal.can("leads:read_all") else principal.user_id
    sql = (
        "SELECT count(*) FROM report_lead_facts f WHERE f.organization_id = :org"
        " AND f.status = 'active' AND f.first_inbound_at IS NOT NULL AND f.first_reply_at IS NULL"
    )
    params: dict[str, Any] = {"org": principal.org()}
    for column, key, value in (("owner_id", "own", own), ("owner_id", "owner", f.owner_id)):
        if value is not None:
            sql += f" AND f.{column} = :{key}"
            params[key] = value
    return int((await session.execute(text(sql), params)).scalar_one())


def _alone_at(value: float | None, values: list[float], extreme: float) -> bool:
    """``value`` is the extreme of several values, and the only one there."""
    return value is not None and len(values) > 1 and value == extreme and values.count(extreme) == 1


async def optimization(
    session: AsyncSession, principal: Principal, f: Filters
) -> s.OptimizationReport:
    principal.require("reports:read")
    norms = await service.stage_norms(session, principal, f)
    conv = service.conversions(norms.names, norms.period_reach)
    hist_conv = service.conversions(norms.names, norms.history_reach)
    medians = [m for stage_id, _, _ in norms.names if (m := norms.period_median.get(stage_id))]
    convs = [c for stage_id, _, _ in norms.names if (c := conv.get(stage_id)) is not None]
    bottlenecks = []
    for stage_id, name, _ in norms.names:
        median = norms.period_median.get(stage_id)
        c, hc, hm = conv.get(stage_id), hist_conv.get(stage_id), norms.history_median.get(stage_id)
        bottlenecks.append(
            s.Bottleneck(
                stage_id=stage_id,
                name=name,
                median_days=median,
                history_median_days=hm,
                conversion=c,
                history_conversion=hc,
                slowest=_alone_at(median, medians, max(medians, default=0.0)) and bool(median),
                lowest_conversion=_alone_at(c, convs, min(convs, default=1.0)) and (c or 0) < 1,
                slower_than_usual=bool(median is not None and hm and median > SLOWER * hm),
                converting_less_than_usual=bool(c is not None and hc is not None and c < hc - LESS),
            )
        )
    names = {stage_id: name for stage_id, name, _ in norms.names}
    stalled = await _stalled(session, principal, f, names)
    actions = [
        s.Action(
            kind="stalled",
            text=(
                f"{g.count} lead{'s' if g.count != 1 else ''} in {g.name} for more than "
                f"{g.threshold_days} day{'s' if g.threshold_days != 1 else ''} with no activity"
            ),
            count=g.count,
            stage=g.name,
            days=g.threshold_days,
            names=[lead.full_name for lead in g.leads[:3]],
            url=g.url,
        )
        for g in stalled
    ]
    unanswered = await _unanswered(session, principal, f)
    if unanswered:
        actions.append(
            s.Action(
                kind="unanswered",
                text=f"{unanswered} WhatsApp conversation{'s' if unanswered != 1 else ''}"
                " still waiting for a first answer",
                count=unanswered,
                url="/inbox",
            )
        )
    for b in bottlenecks:
        if b.slower_than_usual and b.median_days is not None and b.history_median_days:
            days = math.ceil(b.median_days)
            actions.append(
                s.Action(
                    kind="bottleneck",
                    text=f"{b.name} is slower than usual: {b.median_days:g} days (median), "
                    f"against {b.history_median_days:g}",
                    count=0,
                    stage=b.name,
                    days=days,
                    url=_list_url(b.stage_id, None),
                )
            )
    enough = any(n >= MIN_STAYS for n in norms.history_stays.values())
    return s.OptimizationReport(
        filters=service.applied_filters(principal, f),
        bottlenecks=bottlenecks,
        stalled=stalled,
        actions=actions[:6],
        enough_history=enough,
    )


def default_filters(today: date) -> Filters:
    return Filters(today - timedelta(days=service.DEFAULT_DAYS - 1), today)
