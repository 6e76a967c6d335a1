"""``make bench``: every benchmark (benchmarks/bench_*.py) in turn, each on a fresh database
(each script creates its own and drops it), then benchmarks/results/summary.md.

Before each run the machine is left to settle (``--settle`` seconds), and its load average is
recorded before and after the run, so the summary says how quiet it was. A benchmark that
fails is recorded as failed and the others still run; the exit status is non-zero if any
failed.

Quick mode (``--quick``, ``make bench QUICK=1``): ``BENCH_QUICK=1`` for every script (small
sizes, seconds each; results under results/quick/, summary there too); a script that takes
``--smoke`` instead gets that; a script with neither is skipped.

Usage: .venv/bin/python benchmarks/run_all.py [--quick] [--only whatsapp ...] [--settle 30]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from summary import RESULTS, Run, write_summary

BENCHMARKS = Path(__file__).resolve().parent


def quick_arguments(script: Path) -> list[str] | None:
    """How ``script`` runs small: [] when it reads BENCH_QUICK, ["--smoke"] when it takes that
    flag, None when it has no quick mode."""
    source = script.read_text()
    if "quick()" in source or "BENCH_QUICK" in source:
        return []
    if '"--smoke"' in source:
        return ["--smoke"]
    return None


def _json_files() -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in RESULTS.rglob("*.json")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a smoke run of every script")
    ap.add_argument("--only", nargs="*", default=None, help="e.g. whatsapp api (bench_<name>)")
    ap.add_argument("--settle", type=float, default=None, help="seconds of rest before each")
    args = ap.parse_args()
    settle = args.settle if args.settle is not None else (0 if args.quick else 30)
    scripts = sorted(BENCHMARKS.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    env = {**os.environ}
    if args.quick:
        env["BENCH_QUICK"] = "1"
    runs: list[Run] = []
    written: list[Path] = []
    for script in scripts:
        extra: list[str] | None = []
        if args.quick:
            extra = quick_arguments(script)
            if extra is None:
                runs.append(Run(script.name, "skipped: no quick mode", 0, None, None))
                continue
        if settle:
            time.sleep(settle)
        before_files = _json_files()
        load_before = os.getloadavg()
        began = time.monotonic()
        print(f"== {script.name} (load {load_before[0]:.2f})", flush=True)
        code = subprocess.run(
            [sys.executable, str(script), *(extra or [])], env=env, cwd=BENCHMARKS.parent
        ).returncode
        seconds = time.monotonic() - began
        load_after = os.getloadavg()
        outputs = [p for p, mtime in _json_files().items() if before_files.get(p, -1.0) < mtime]
        written += outputs
        runs.append(
            Run(
                script.name,
                "ok" if code == 0 else f"failed (exit {code})",
                seconds,
                load_before,
                load_after,
                [str(p.relative_to(RESULTS)) for p in sorted(outputs)],
            )
        )
    folder = RESULTS / "quick" if args.quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = write_summary(folder, runs, quick=args.quick, files=written)
    print(f"== wrote {path}")
    print(path.read_text())
    if any(r.status.startswith("failed") for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
