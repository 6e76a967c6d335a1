"""benchmarks/results/summary.md: every figure the benchmarks measured beside its target.

Issue 11's targets are listed whether or not a benchmark measured them ("not measured" says
which are missing). A figure comes from a benchmark's JSON in one of two ways:

- a ``figures`` list in the JSON, each ``{"target", "name", "value", "op", "goal", "unit"}``
  (``op`` one of ``>=``, ``>``, ``<=``, ``<``, ``==``; ``value`` null when the figure could
  not be measured): the way for a benchmark to put its own figures in the summary. An entry
  whose ``name`` is one of the catalogue's (``ISSUE_11``) fills that row;
- or, for the JSON shapes written before that convention (api, board, inbox, jobs), a reader
  here that knows where the figure is.

Also: each run (exit status, seconds, the machine's load average before and after), the
commit, and whether it was a quick (smoke) run, whose figures are not measurements.

``python benchmarks/summary.py [--quick]`` rewrites the summary from the JSON files present;
``benchmarks/run_all.py`` (``make bench``) writes it after running every benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda v, g: v >= g,
    ">": lambda v, g: v > g,
    "<=": lambda v, g: v <= g,
    "<": lambda v, g: v < g,
    "==": lambda v, g: v == g,
}

# Issue 11, target 1: at least 3x Frappe CRM's requests/s (as the issue rounds them) with a
# lower p95 than Frappe's (ms), at concurrency 8 and 32.
FRAPPE = {
    "list 50 leads": (450, 71),
    "search by name": (390, 87),
    "one lead": (445, 75),
    "create a lead": (225, 151),
    "board, 5 columns x 50 cards": (6, 7136),
}


@dataclass(frozen=True)
class Row:
    """One target of issue 11: its number there, what is measured, and the goal."""

    target: str
    name: str
    op: str
    goal: float
    unit: str


def _issue_11() -> list[Row]:
    rows: list[Row] = []
    for concurrency in (8, 32):
        for endpoint, (rps, p95) in FRAPPE.items():
            rows.append(Row("1", f"API c{concurrency}: {endpoint}, requests/s", ">=", rps, "/s"))
            rows.append(Row("1", f"API c{concurrency}: {endpoint}, p95", "<", p95, "ms"))
    rows += [
        Row("1", "Database CPU per list request", "<=", 2, "ms"),
        Row("1", "Database CPU per search request", "<=", 5, "ms"),
        Row("2", "API list throughput / bare endpoint's", ">=", 0.5, ""),
        Row("3", "WhatsApp: webhooks per second sent", ">=", 500, "/s"),
        Row("3", "WhatsApp: run length", ">=", 60, "s"),
        Row("3", "WhatsApp: acknowledgement p95", "<", 50, "ms"),
        Row("3", "WhatsApp: queue empty after the last acknowledgement", "<=", 5, "s"),
        Row("3", "WhatsApp: messages lost", "==", 0, ""),
        Row("3", "WhatsApp: messages doubled", "==", 0, ""),
        Row("4", "Inbox: conversation list p95 (1,000,000 messages)", "<", 100, "ms"),
        Row("5", "Page p95: board", "<", 100, "ms"),
        Row("5", "Page p95: leads list", "<", 100, "ms"),
        Row("5", "Page p95: lead page", "<", 100, "ms"),
        Row("5", "Page p95: search", "<", 100, "ms"),
        Row("5", "Page p95: inbox", "<", 100, "ms"),
    ]
    return rows


ISSUE_11 = _issue_11()

# Issue 14's targets, filled by name like issue 11's (the forecast: benchmarks/bench_forecast.py).
ISSUE_14: list[Row] = [
    Row("backtest", "Forecast backtest (Maven): monthly cut-offs", ">=", 6, ""),
    Row("backtest", "Forecast backtest (Maven): 80 % interval coverage, at least", ">=", 0.7, ""),
    Row("backtest", "Forecast backtest (Maven): 80 % interval coverage, at most", "<=", 0.9, ""),
    # The reports (benchmarks/bench_reports.py): 20,000 leads among 1,000 organizations.
    *(
        Row("reports", f"Report p95: {name}", "<", 300, "ms")
        for name in (
            "overview",
            "funnel",
            "stages",
            "owners",
            "sources",
            "templates",
            "whatsapp",
            "activity",
            "optimization",
        )
    ),
]


@dataclass
class Figure:
    target: str
    name: str
    value: float | None
    op: str
    goal: float
    unit: str
    source: str  # the JSON file it came from
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None or self.op not in OPS:
            return None
        return OPS[self.op](float(self.value), float(self.goal))


@dataclass
class Run:
    """One benchmark script's run, as ``run_all.py`` records it."""

    script: str
    status: str  # "ok", "failed (exit N)", "skipped: why"
    seconds: float
    load_before: tuple[float, float, float] | None
    load_after: tuple[float, float, float] | None
    outputs: list[str] = field(default_factory=list)  # JSON files it wrote


def _dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _known_shapes(data: dict[str, Any], source: str) -> list[Figure]:
    """Figures from the JSON shapes written before the ``figures`` convention."""
    kind = data.get("benchmark")
    out: list[Figure] = []

    def add(name: str, value: Any, note: str = "") -> None:
        row = next(r for r in ISSUE_11 if r.name == name)
        out.append(Figure(row.target, name, _num(value), row.op, row.goal, row.unit, source, note))

    if kind == "api_leads_page_vs_bare":
        add(
            "API list throughput / bare endpoint's",
            data.get("api_to_bare_throughput_ratio"),
            f"GET /api/v1/leads?limit=50 vs /healthz/db, "
            f"{_dig(data, 'params', 'connections')} connections",
        )
    elif kind == "board_search_lead_list_at_scale":
        for name, key in (
            ("Page p95: board", "board"),
            ("Page p95: leads list", "list_page"),
            ("Page p95: lead page", "lead_page"),
            ("Page p95: search", "search"),
        ):
            add(name, _dig(data, "results", key, "p95_ms"), f"bench_board's '{key}'")
    elif kind == "inbox_at_size":
        messages = _dig(data, "data", "org_messages")
        add(
            "Inbox: conversation list p95 (1,000,000 messages)",
            _dig(data, "results", "conversations", "p95_ms"),
            f"{messages:,} messages in the organization" if isinstance(messages, int) else "",
        )
        add("Page p95: inbox", _dig(data, "results", "inbox_page", "p95_ms"), "the inbox page")
    elif kind == "whatsapp_inbound_webhooks" and "figures" not in data:  # before figures
        add("WhatsApp: webhooks per second sent", _dig(data, "acknowledgement", "rate_per_s"))
        add("WhatsApp: run length", _dig(data, "params", "seconds"))
        add("WhatsApp: acknowledgement p95", _dig(data, "acknowledgement", "p95_ms"))
        add(
            "WhatsApp: queue empty after the last acknowledgement",
            data.get("drain_after_load_s"),
        )
        add("WhatsApp: messages lost", data.get("lost"))
        add("WhatsApp: messages doubled", data.get("doubled"))
    elif kind and str(kind).startswith("jobs_"):
        goal = _num(data.get("target_jobs_per_minute"))
        if goal is not None:
            out.append(
                Figure(
                    "jobs",
                    f"Job engine: no-op jobs per minute ({kind})",
                    _num(data.get("jobs_per_minute_steady") or data.get("jobs_per_minute_overall")),
                    ">=",
                    goal,
                    "/min",
                    source,
                )
            )
    return out


def figures_of(data: dict[str, Any], source: str) -> list[Figure]:
    """Every figure one benchmark JSON gives, with its target."""
    found = _known_shapes(data, source)
    for f in data.get("figures") or []:
        if not isinstance(f, dict) or "name" not in f:
            continue
        found.append(
            Figure(
                str(f.get("target", "")),
                str(f["name"]),
                _num(f.get("value")),
                str(f.get("op", "")),
                float(f.get("goal", 0)),
                str(f.get("unit", "")),
                source,
                str(f.get("note", "")),
            )
        )
    return found


def load_results(paths: Iterable[Path]) -> list[tuple[str, dict[str, Any]]]:
    """The JSON objects among ``paths`` (anything else is skipped), with their names."""
    out = []
    for path in sorted(paths):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            out.append((path.name, data))
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    text = f"{value:,.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    return f"{text} {unit}".strip() if unit not in ("", "/s", "/min") else text + unit


def _load(values: tuple[float, float, float] | None) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "—"


def _mark(met: bool | None) -> str:
    return {True: "✅ met", False: "❌ not met", None: "— not measured"}[met]


def _catalogue(rows: list[Row], by_name: dict[str, list[Figure]], listed: set[str]) -> list[str]:
    """A table's rows: each target with the figures measured for it (or "not measured")."""
    lines = []
    for row in rows:
        found = by_name.get(row.name) or [
            Figure(row.target, row.name, None, row.op, row.goal, row.unit, "")
        ]
        listed.add(row.name)
        for f in found:
            source = f"{f.source}" + (f" ({f.note})" if f.note else "")
            lines.append(
                f"| {row.target} | {row.name} | {_fmt(f.value, row.unit)} "
                f"| {row.op} {_fmt(row.goal, row.unit)} | {_mark(f.met)} | {source or '—'} |"
            )
    return lines


def render(
    results: list[tuple[str, dict[str, Any]]],
    runs: list[Run],
    *,
    commit: str,
    quick: bool,
    when: str | None = None,
) -> str:
    figures = [f for name, data in results for f in figures_of(data, name)]
    by_name: dict[str, list[Figure]] = {}
    for f in figures:
        by_name.setdefault(f.name, []).append(f)
    lines = [
        "# Benchmarks: summary",
        "",
        f"- Commit: `{commit}`",
        f"- Written: {when or time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {os.cpu_count()} CPUs; load average (1 / 5 / 15 min) shown per run below",
    ]
    if quick:
        lines.append(
            "- **Quick (smoke) run**: small sizes that take seconds; these figures check the "
            "scripts, they are not measurements and say nothing about the targets."
        )
    if runs:
        lines += [
            "",
            "## Runs (in order, each on a fresh database)",
            "",
            "| benchmark | result | seconds | load before | load after | wrote |",
            "|---|---|---|---|---|---|",
        ]
        for r in runs:
            lines.append(
                f"| {r.script} | {r.status} | {r.seconds:.0f} | {_load(r.load_before)} "
                f"| {_load(r.load_after)} | {', '.join(r.outputs) or '—'} |"
            )
    lines += [
        "",
        "## Issue 11's targets",
        "",
        "| # | figure | measured | target | | from |",
        "|---|---|---|---|---|---|",
    ]
    listed: set[str] = set()
    lines += _catalogue(ISSUE_11, by_name, listed)
    lines += [
        "",
        "## Issue 14's targets",
        "",
        "| # | figure | measured | target | | from |",
        "|---|---|---|---|---|---|",
        *_catalogue(ISSUE_14, by_name, listed),
    ]
    others = [f for f in figures if f.name not in listed]
    if others:
        lines += [
            "",
            "## Other figures with a target",
            "",
            "| target | figure | measured | goal | | from |",
            "|---|---|---|---|---|---|",
        ]
        for f in others:
            source = f.source + (f" ({f.note})" if f.note else "")
            lines.append(
                f"| {f.target} | {f.name} | {_fmt(f.value, f.unit)} | {f.op} "
                f"{_fmt(f.goal, f.unit)} | {_mark(f.met)} | {source} |"
            )
    measured = {name for name, _ in results}
    silent = [name for name, data in results if not figures_of(data, name)]
    if silent:
        lines += [
            "",
            "Benchmarks with no figure in a shape this summary reads (see their JSON): "
            + ", ".join(sorted(silent))
            + ".",
        ]
    if not measured:
        lines += ["", "No benchmark result was found."]
    return "\n".join(lines) + "\n"


def git_commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " + uncommitted changes"
    return commit


def write_summary(
    folder: Path, runs: list[Run], *, quick: bool, files: Iterable[Path] | None = None
) -> Path:
    """Write ``folder/summary.md`` from ``files`` (default: every JSON in ``folder``)."""
    chosen = list(files) if files is not None else list(folder.glob("*.json"))
    text = render(load_results(chosen), runs, commit=git_commit(), quick=quick)
    path = folder / "summary.md"
    path.write_text(text)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="summarise results/quick/")
    args = ap.parse_args()
    folder = RESULTS / "quick" if args.quick else RESULTS
    print(write_summary(folder, [], quick=args.quick))


if __name__ == "__main__":
    main()
