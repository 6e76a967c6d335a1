"""Message sentiment (issue 15, part 1): quality on RePro and the cost of one message.

1. ``repro_americanas_reviews_ptbr.csv`` (../shared/data; CC BY-NC-SA: evaluation only), the
   test split: the offline analyser (``lovedcrm sentiment evaluate``) and LeIA alone beside
   it. Target: accuracy >= 0.88 (LeIA: 0.843). Nothing is trained on the file except in 3.
2. Milliseconds per message (the analyser alone, all test texts, best of three passes).
   Target < 5 ms.
3. The per-organization model's learning curve: trained on 100 / 500 / 2,000 rows of the
   train split, tested on the test split (an experiment: nothing is stored or shipped).

Writes benchmarks/results/sentiment.json (``BENCH_QUICK=1``: the curve at 100 only,
results/quick/). Usage: .venv/bin/python benchmarks/bench_sentiment.py
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import quick, results_dir  # noqa: E402

from lovedcrm.assistant import evaluation, sentiment  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "repro_americanas_reviews_ptbr.csv"
TARGET_ACCURACY = 0.88
TARGET_MS = 5.0


def _ms_per_message(texts: list[str]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for t in texts:
            sentiment.analyse(t)
        best = min(best, (time.perf_counter() - started) * 1000 / len(texts))
    return round(best, 4)


def main() -> None:
    report: dict[str, Any] = {
        "benchmark": "sentiment",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "quick": quick(),
    }
    quality: dict[str, Any] | None = None
    curve: list[dict[str, Any]] = []
    ms: float | None = None
    if SHARED.exists():
        rows = evaluation.read_rows(SHARED, "text", "label", split_column="split", split="test")
        quality = evaluation.evaluate(rows, split="test")
        ms = _ms_per_message([r["text"] for r in rows if r["split"] == "test"])
        sizes = [100] if quick() else [100, 500, 2000]
        curve = evaluation.learning_curve(rows, sizes, test_split="test")
    else:
        report["skipped"] = f"{SHARED} not present (only in the Loved CRM workplace)"
    report.update(quality=quality, ms_per_message=ms, learning_curve=curve)
    leia = quality["baseline_leia"] if quality else {}
    report["figures"] = [
        {
            "target": "sentiment",
            "name": "Sentiment accuracy, RePro test split (offline analyser)",
            "value": quality["accuracy"] if quality else None,
            "op": ">=",
            "goal": TARGET_ACCURACY,
            "unit": "",
        },
        {
            "target": "sentiment",
            "name": "Sentiment macro-F1, RePro test split (LeIA alone: "
            f"{leia.get('macro_f1', 'n/a')}, accuracy {leia.get('accuracy', 'n/a')})",
            "value": quality["macro_f1"] if quality else None,
            "op": ">=",
            "goal": leia.get("macro_f1", 0.0),
            "unit": "",
        },
        {
            "target": "sentiment",
            "name": "Sentiment of one message",
            "value": ms,
            "op": "<",
            "goal": TARGET_MS,
            "unit": "ms",
        },
        *(
            {
                "target": "sentiment",
                "name": f"Per-organization model on {p['train_rows']} RePro train rows: accuracy",
                "value": p.get("accuracy"),
                "op": ">=",
                "goal": TARGET_ACCURACY,
                "unit": "",
            }
            for p in curve
        ),
    ]
    path = results_dir() / "sentiment.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({f["name"]: f["value"] for f in report["figures"]}, indent=2))


if __name__ == "__main__":
    main()
