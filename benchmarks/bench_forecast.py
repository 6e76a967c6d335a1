"""The revenue forecast's backtest on ../shared/data/maven_crm_sales_pipeline.csv (a
fictitious company: this proves the code path, not the model), through the product's
command ``lovedcrm forecast backtest``.

Every monthly cut-off whose three following months are all in the file (2017-04-01 to
2017-10-01: seven cut-offs, 21 forecast months). Targets (issue 14): at least six cut-offs;
the 80 % interval holds the actual in 70–90 % of months; the forecast's MAPE against the
naive baseline's (the mean monthly won revenue of the three months before the cut-off).

Writes benchmarks/results/forecast.json (``BENCH_QUICK=1``: 1,000 draws, results/quick/).

Usage: .venv/bin/python benchmarks/bench_forecast.py [--draws 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import quick, results_dir  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from lovedcrm.cli import main as cli  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "maven_crm_sales_pipeline.csv"
CUTOFFS = "monthly:2017-04-01:2017-10-01"
COLUMNS = [
    "--opened-column", "engage_date", "--closed-column", "close_date",
    "--outcome-column", "deal_stage", "--value-column", "close_value",
    "--won-value", "Won", "--lost-value", "Lost",
]  # fmt: skip
NAME = "Forecast backtest (Maven)"


def figures(report: dict[str, Any]) -> list[dict[str, Any]]:
    s = report["summary"]
    cutoffs = len(report["cutoffs"])
    note = f"{s['months_compared']} months over {cutoffs} cut-offs"
    return [
        {"target": "backtest", "name": f"{NAME}: monthly cut-offs", "value": cutoffs,
         "op": ">=", "goal": 6, "unit": ""},
        {"target": "backtest", "name": f"{NAME}: 80 % interval coverage, at least",
         "value": s["coverage80"], "op": ">=", "goal": 0.7, "unit": "", "note": note},
        {"target": "backtest", "name": f"{NAME}: 80 % interval coverage, at most",
         "value": s["coverage80"], "op": "<=", "goal": 0.9, "unit": "", "note": note},
        {"target": "backtest", "name": f"{NAME}: 95 % interval coverage (for reference)",
         "value": s["coverage95"], "op": ">=", "goal": 0.9, "unit": "", "note": note},
        {"target": "backtest", "name": f"{NAME}: MAPE of the forecast, below the naive one's",
         "value": s["mape_forecast"], "op": "<", "goal": s["mape_naive"], "unit": "%",
         "note": "goal = the naive baseline's MAPE (last quarter's monthly mean)"},
        {"target": "backtest",
         "name": f"{NAME}: 80 % coverage where ≥ 3 months of won history (explanation only)",
         "value": s["coverage80_with_month_variation"], "op": ">=", "goal": 0.7, "unit": "",
         "note": f"{s['months_compared'] - s['months_without_month_variation']} months"},
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=1000 if quick() else 10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = results_dir() / "forecast.json"
    if not SHARED.exists():
        print(f"{SHARED} is missing (../shared exists only in the workplace)", file=sys.stderr)
        raise SystemExit(1)
    started = time.perf_counter()
    result = CliRunner().invoke(
        cli,
        ["forecast", "backtest", "--csv", str(SHARED), "--cutoffs", CUTOFFS, *COLUMNS,
         "--draws", str(args.draws), "--seed", str(args.seed)],
    )  # fmt: skip
    if result.exit_code != 0:
        print(result.stderr or result.output, file=sys.stderr)
        raise SystemExit(result.exit_code)
    report = json.loads(result.stdout)
    seconds = time.perf_counter() - started
    data = {
        "benchmark": "forecast_backtest",
        "quick": quick(),
        "file": "../shared/data/maven_crm_sales_pipeline.csv",
        "cutoffs": CUTOFFS,
        "draws": args.draws,
        "seed": args.seed,
        "seconds": round(seconds, 2),
        "python": platform.python_version(),
        "summary": report["summary"],
        "figures": figures(report),
        "report": report,
    }
    out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({"summary": report["summary"], "seconds": round(seconds, 2)}, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
