"""Each report as one table (header, rows) and as CSV: what the ``.csv`` links download and
what a chart's numbers are."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from lovedcrm.reports import schemas as s

Table = tuple[list[str], list[list[Any]]]


def _overview(r: s.OverviewReport) -> Table:
    rows = [
        [name, getattr(r.current, name), getattr(r.previous, name)] for name in s.Kpis.model_fields
    ]
    return ["measure", "period", "previous_period"], rows


def _funnel(r: s.FunnelReport) -> Table:
    return (
        ["step", "reached", "conversion_from_previous"],
        [[x.name, x.reached, x.conversion_from_previous] for x in r.steps],
    )


def _stages(r: s.StagesReport) -> Table:
    return (
        ["stage", "stays_ended", "median_days", "p75_days", "average_days", "open_now"],
        [
            [x.name, x.stays, x.median_days, x.p75_days, x.average_days, x.open_now]
            for x in r.stages
        ],
    )


def _owners(r: s.OwnersReport) -> Table:
    return (
        [
            "owner",
            "leads_created",
            "won",
            "lost",
            "win_rate",
            "won_value",
            "open_leads",
            "open_value",
            "activities",
        ],
        [
            [
                x.name or "",
                x.leads_created,
                x.won,
                x.lost,
                x.win_rate,
                x.won_value,
                x.open_leads,
                x.open_value,
                x.activities,
            ]
            for x in r.owners
        ],
    )


def _sources(r: s.SourcesReport) -> Table:
    return (
        ["source", "leads", "won", "conversion", "won_value", "previous_leads"],
        [
            [x.source or "", x.leads, x.won, x.conversion, x.won_value, x.previous_leads]
            for x in r.sources
        ],
    )


def _templates(r: s.TemplatesReport) -> Table:
    return (
        [
            "template",
            "variant",
            "sends",
            "answered",
            "answer_rate",
            "converted",
            "conversion",
            "median_response_minutes",
        ],
        [
            [
                x.name,
                x.is_variant,
                x.sends,
                x.answered,
                x.answer_rate,
                x.converted,
                x.conversion,
                x.median_response_minutes,
            ]
            for x in r.templates
        ],
    )


def _whatsapp(r: s.WhatsappReport) -> Table:
    rows = [
        [
            x.name or "",
            x.conversations,
            x.answered,
            x.answer_rate,
            x.median_first_response_minutes,
            x.p75_first_response_minutes,
        ]
        for x in [*r.owners, r.total]
    ]
    rows[-1][0] = "total"
    return (
        [
            "owner",
            "conversations",
            "answered",
            "answer_rate",
            "median_first_response_minutes",
            "p75_first_response_minutes",
        ],
        rows,
    )


def _activity(r: s.ActivityReport) -> Table:
    return ["day", "activities"], [[d.day.isoformat(), d.count] for d in r.days]


def _optimization(r: s.OptimizationReport) -> Table:
    return (
        ["stage", "threshold_days", "stalled_leads", "leads_named"],
        [
            [g.name, g.threshold_days, g.count, "; ".join(x.full_name for x in g.leads)]
            for g in r.stalled
        ],
    )


TABLES: dict[str, Callable[[Any], Table]] = {
    "overview": _overview,
    "funnel": _funnel,
    "stages": _stages,
    "owners": _owners,
    "sources": _sources,
    "templates": _templates,
    "whatsapp": _whatsapp,
    "activity": _activity,
    "optimization": _optimization,
}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def to_csv(name: str, report: BaseModel) -> str:
    header, rows = TABLES[name](report)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        # A cell that a spreadsheet would run as a formula is quoted as text.
        writer.writerow(
            [
                "'" + c if c[:1] in ("=", "+", "-", "@") and not _numeric(c) else c
                for c in map(_cell, row)
            ]
        )
    return out.getvalue()


def _numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
