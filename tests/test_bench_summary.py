"""``make bench``'s summary (benchmarks/summary.py) on sample results: each figure beside its
target and whether it is met, the targets no benchmark measured, each run's load average and
the commit. The benchmarks themselves are not run here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def summary() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_summary", BENCHMARKS / "summary.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def whatsapp(p95: float, drain: float | None, lost: int) -> dict[str, Any]:
    def figure(name: str, value: float | None, op: str, goal: float, unit: str) -> dict[str, Any]:
        return {"target": "3", "name": name, "value": value, "op": op, "goal": goal, "unit": unit}

    return {
        "benchmark": "whatsapp_inbound_webhooks",
        "figures": [
            figure("WhatsApp: webhooks per second sent", 500, ">=", 500, "/s"),
            figure("WhatsApp: run length", 60, ">=", 60, "s"),
            figure("WhatsApp: acknowledgement p95", p95, "<", 50, "ms"),
            figure("WhatsApp: queue empty after the last acknowledgement", drain, "<=", 5, "s"),
            figure("WhatsApp: messages lost", lost, "==", 0, ""),
            figure("WhatsApp: messages doubled", 0, "==", 0, ""),
            figure("WhatsApp: non-2xx or failed requests", 3, "==", 0, ""),
        ],
    }


SAMPLES: dict[str, dict[str, Any]] = {
    "whatsapp.json": whatsapp(p95=31.5, drain=None, lost=2),
    "api.json": {
        "benchmark": "api_leads_page_vs_bare",
        "params": {"connections": 32},
        "api_to_bare_throughput_ratio": 0.152,
        "target_ratio": 0.5,
    },
    "inbox.json": {
        "benchmark": "inbox_at_size",
        "data": {"org_messages": 1_000_000},
        "results": {"conversations": {"p95_ms": 41.2}, "inbox_page": {"p95_ms": 120.0}},
    },
    "board.json": {
        "benchmark": "board_search_lead_list_at_scale",
        "results": {
            "board": {"p95_ms": 71.38},
            "search": {"p95_ms": 43.03},
            "lead_page": {"p95_ms": 13.05},
            "list_page": {"p95_ms": 27.97},
        },
    },
    "jobs.json": {
        "benchmark": "jobs_noop_one_worker",
        "jobs_per_minute_steady": 571429,
        "target_jobs_per_minute": 100000,
    },
    "foundation.json": {"benchmark": "foundation", "results": {"healthz": {"p95_ms": 74.8}}},
    "scoring.json": {"quality": {"roc_auc": 0.91}},
    "notes.json": ["not", "a", "benchmark"],
}


def row(text: str, name: str) -> str:
    (line,) = [x for x in text.splitlines() if f"| {name} |" in x]
    return line


def test_the_summary_puts_each_figure_beside_its_target(
    summary: ModuleType, tmp_path: Path
) -> None:
    for name, data in SAMPLES.items():
        (tmp_path / name).write_text(json.dumps(data))
    runs = [
        summary.Run("bench_api.py", "ok", 61.0, (0.12, 0.3, 0.41), (1.9, 0.8, 0.5), ["api.json"]),
        summary.Run("bench_scoring.py", "failed (exit 1)", 3.0, (0.2, 0.3, 0.4), None, []),
        summary.Run("bench_x.py", "skipped: no quick mode", 0, None, None, []),
    ]
    path = summary.write_summary(tmp_path, runs, quick=False)
    text = path.read_text()

    assert path == tmp_path / "summary.md"
    assert "- Commit: `" in text and "Quick (smoke) run" not in text
    # Each run with the load average before and after it.
    assert "| bench_api.py | ok | 61 | 0.12 / 0.30 / 0.41 | 1.90 / 0.80 / 0.50 | api.json |" in text
    assert "| bench_scoring.py | failed (exit 1) | 3 | 0.20 / 0.30 / 0.40 | — |" in text
    assert "| bench_x.py | skipped: no quick mode |" in text
    # Figures from the benchmarks' own "figures" lists, met or not, and one not measured.
    assert "31.5 ms | < 50 ms | ✅ met | whatsapp.json" in row(
        text, "WhatsApp: acknowledgement p95"
    )
    assert "| — | <= 5 s | — not measured |" in row(
        text, "WhatsApp: queue empty after the last acknowledgement"
    )
    assert "| 2 | == 0 | ❌ not met |" in row(text, "WhatsApp: messages lost")
    # Figures read from the older JSON shapes.
    assert "| 0.152 | >= 0.5 | ❌ not met | api.json" in row(
        text, "API list throughput / bare endpoint's"
    )
    assert "41.2 ms | < 100 ms | ✅ met | inbox.json" in row(
        text, "Inbox: conversation list p95 (1,000,000 messages)"
    )
    assert "120 ms | < 100 ms | ❌ not met" in row(text, "Page p95: inbox")
    assert "71.38 ms | < 100 ms | ✅ met | board.json" in row(text, "Page p95: board")
    # Issue 11's targets that nothing measured are still listed, as such.
    assert "| — | >= 450/s | — not measured | — |" in row(text, "API c8: list 50 leads, requests/s")
    assert "| — | < 87 ms | — not measured |" in row(text, "API c32: search by name, p95")
    # A figure with a target of its own, outside issue 11's list.
    assert "571,429/min | >= 100,000/min | ✅ met | jobs.json" in row(
        text, "Job engine: no-op jobs per minute (jobs_noop_one_worker)"
    )
    assert "| 3 | == 0 | ❌ not met |" in row(text, "WhatsApp: non-2xx or failed requests")
    # A benchmark whose JSON has no figure this summary can read is named, not dropped.
    assert (
        "no figure in a shape this summary reads (see their JSON): foundation.json, scoring.json."
        in text
    )
    assert "notes.json" not in text


def test_a_quick_run_says_its_figures_are_not_measurements(
    summary: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "whatsapp.json").write_text(json.dumps(whatsapp(80.0, 0.2, 0)))
    text = summary.write_summary(tmp_path, [], quick=True).read_text()
    assert "Quick (smoke) run" in text and "not measurements" in text
    assert "80 ms | < 50 ms | ❌ not met" in row(text, "WhatsApp: acknowledgement p95")


def test_only_the_files_a_run_wrote_are_summarised(summary: ModuleType, tmp_path: Path) -> None:
    """An older result left in the folder does not pass for this run's."""
    (tmp_path / "old.json").write_text(json.dumps(whatsapp(10.0, 1.0, 0)))
    (tmp_path / "new.json").write_text(json.dumps(whatsapp(90.0, 1.0, 0)))
    text = summary.write_summary(
        tmp_path, [], quick=False, files=[tmp_path / "new.json"]
    ).read_text()
    assert "90 ms" in row(text, "WhatsApp: acknowledgement p95")
    assert "old.json" not in text
