"""``lovedcrm forecast backtest``: replays a CSV of deals at each cut-off without future
information, prints the forecast, the actual and the coverage as JSON, and refuses bad input
(exit code 2); on the shared Maven file, the benchmark's figures."""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from lovedcrm.cli import main
from lovedcrm.reports import forecast as fc
from tests.conftest import shared_path

COLUMNS = ("--opened-column", "opened", "--closed-column", "closed")
MAVEN = (
    "--opened-column", "engage_date", "--closed-column", "close_date",
    "--outcome-column", "deal_stage", "--value-column", "close_value",
)  # fmt: skip


def _deals_csv(path: Path, seed: int = 1, per_day: int = 3) -> Path:
    """A year of deals: ``per_day`` opened each day, won with p = 0.4 after 5–40 days (value
    500–1500), lost otherwise; those that would close after the year stay open."""
    rng = np.random.default_rng(seed)
    start, end = date(2024, 1, 1), date(2024, 12, 31)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "opened", "closed", "outcome", "value"])
        day, i = start, 0
        while day <= end:
            for _ in range(per_day):
                i += 1
                closed = day + timedelta(days=int(rng.integers(5, 41)))
                won = rng.random() < 0.4
                if closed > end:
                    out.writerow([i, day.isoformat(), "", "Open", ""])
                else:
                    value = int(rng.integers(500, 1501)) if won else 0
                    out.writerow([i, day, closed, "Won" if won else "Lost", value])
            day += timedelta(days=1)
    return path


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["forecast", "backtest", *args])
    return result.exit_code, result.stdout, result.stderr


def test_one_cutoff_prints_the_forecast_the_actual_and_whether_it_fell_inside(
    tmp_path: Path,
) -> None:
    table = _deals_csv(tmp_path / "deals.csv")
    code, out, err = _run("--csv", str(table), "--cutoff", "2024-06-01", *COLUMNS,
                          "--draws", "2000")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    (cut,) = report["cutoffs"]
    assert cut["cutoff"] == "2024-06-01" and cut["status"] == "ok"
    assert [m["month"] for m in cut["months"]] == ["2024-06", "2024-07", "2024-08"]
    for m in cut["months"]:
        low80, high80 = m["interval80"]
        low95, high95 = m["interval95"]
        assert low95 <= low80 <= m["expected"] <= high80 <= high95
        assert m["inside80"] == (low80 <= m["actual"] <= high80)
        assert m["inside95"] == (low95 <= m["actual"] <= high95)
        # A steady business: the forecast is within a quarter of what happened.
        assert abs(m["expected"] - m["actual"]) / m["actual"] < 0.25
    assert cut["win_rate"] == pytest.approx(0.4, abs=0.05)
    assert report["summary"]["months_compared"] == 3
    assert report["rows"] == {"used": 366 * 3, "without_opening_date": 0}


def test_several_cutoffs_report_coverage_and_mape_against_the_naive_baseline(
    tmp_path: Path,
) -> None:
    table = _deals_csv(tmp_path / "deals.csv")
    code, out, err = _run("--csv", str(table), "--cutoffs", "monthly:2024-05-01:2024-09-01",
                          "--cutoff", "2024-04-01", *COLUMNS, "--draws", "1000")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert [c["cutoff"][:7] for c in report["cutoffs"]] == [
        "2024-04", "2024-05", "2024-06", "2024-07", "2024-08", "2024-09",
    ]  # fmt: skip
    summary = report["summary"]
    assert summary["months_compared"] == 18
    assert 0 <= summary["coverage80"] <= summary["coverage95"] <= 1
    assert summary["mape_forecast"] is not None and summary["mape_naive"] is not None
    # The naive baseline: the mean won revenue of the three months before the cut-off.
    rows, _ = fc.read_rows(table, fc.Columns("opened", "closed", "outcome", "value"))
    won = [
        r for r in rows if r.won and r.closed and date(2024, 3, 1) <= r.closed < date(2024, 6, 1)
    ]
    june = next(c for c in report["cutoffs"] if c["cutoff"] == "2024-06-01")
    assert june["naive_baseline"] == pytest.approx(sum(r.value for r in won) / 3, abs=0.01)


def test_no_future_information_reaches_a_cutoff() -> None:
    rows = [
        fc.Row(date(2024, 1, 1), date(2024, 2, 1), True, 900.0),  # closed before: known
        fc.Row(date(2024, 1, 5), date(2024, 3, 5), True, 700.0),  # closes after: open, no value
        fc.Row(date(2024, 1, 9), date(2024, 2, 20), False, 0.0),
        fc.Row(date(2024, 3, 2), None, False, 0.0),  # opened after: unknown
    ]
    known = fc.known_on(rows, date(2024, 3, 1))
    assert known == [
        fc.Deal(date(2024, 1, 1), date(2024, 2, 1), True, 900.0),
        fc.Deal(date(2024, 1, 5)),
        fc.Deal(date(2024, 1, 9), date(2024, 2, 20), False, None),
    ]


def test_a_file_without_the_named_columns_is_refused(tmp_path: Path) -> None:
    table = _deals_csv(tmp_path / "deals.csv")
    code, out, err = _run("--csv", str(table), "--cutoff", "2024-06-01",
                          "--opened-column", "engage_date")  # fmt: skip
    assert code == 2 and out == ""
    assert "no column 'engage_date'" in err and "its columns: id, opened" in err


@pytest.mark.parametrize("cutoff", ["2023-06-01", "2025-02-01", "2024-01-01"])
def test_a_cutoff_outside_the_files_dates_is_refused(tmp_path: Path, cutoff: str) -> None:
    table = _deals_csv(tmp_path / "deals.csv")
    code, _, err = _run("--csv", str(table), "--cutoff", cutoff, *COLUMNS)
    assert code == 2
    assert "outside the file's dates (2024-01-01 to 2024-12-31)" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cutoff", "June"), "expected YYYY-MM-DD"),
        (("--cutoffs", "weekly:2024-01-01:2024-02-01"), "monthly:YYYY-MM-DD:YYYY-MM-DD"),
        ((), "give --cutoff"),
    ],
)
def test_bad_cutoffs_are_refused(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    table = _deals_csv(tmp_path / "deals.csv")
    code, _, err = _run("--csv", str(table), *COLUMNS, *args)
    assert code == 2 and message in err


def test_the_file_size_is_bounded(tmp_path: Path) -> None:
    table = _deals_csv(tmp_path / "deals.csv")
    with pytest.raises(fc.BacktestError, match="larger than"):
        fc.read_rows(table, fc.Columns("opened", "closed", "outcome", "value"), max_bytes=1024)
    code, _, err = _run("--csv", str(tmp_path / "missing.csv"), "--cutoff", "2024-06-01")
    assert code == 2 and "cannot read" in err


@pytest.mark.shared
def test_the_maven_pipeline_over_seven_monthly_cutoffs() -> None:
    """The issue's target on the fictitious Maven data: the report is complete and its figures
    are what benchmarks/bench_forecast.py records (coverage is reported, not asserted to a
    range: the method is not tuned to this file)."""
    path = shared_path("data/maven_crm_sales_pipeline.csv")
    code, out, err = _run("--csv", str(path), "--cutoffs", "monthly:2017-04-01:2017-10-01",
                          *MAVEN, "--draws", "2000")  # fmt: skip
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    assert len(report["cutoffs"]) == 7
    summary = report["summary"]
    assert summary["months_compared"] == 21
    assert report["rows"]["without_opening_date"] == 500  # Prospecting: never engaged
    assert summary["mape_forecast"] < summary["mape_naive"]
    assert 0.4 <= summary["coverage80"] <= 0.95


def test_on_a_steady_business_the_intervals_hold_about_as_often_as_they_say(
    tmp_path: Path,
) -> None:
    """Five synthetic years of the same business (no month effect at all): over 6 cut-offs × 3
    months each, the 80 % interval holds the actual about 80 % of the 90 months (the month
    factor estimated from a few months adds a little width) and the 95 % more often."""
    inside80 = inside95 = months = 0
    for seed in range(1, 6):
        rows, _ = fc.read_rows(
            _deals_csv(tmp_path / f"deals{seed}.csv", seed=seed),
            fc.Columns("opened", "closed", "outcome", "value"),
        )
        report = fc.backtest(
            rows, fc.monthly_cutoffs("monthly:2024-05-01:2024-10-01"), draws=2000, seed=seed
        )
        for cut in report["cutoffs"]:
            for m in cut["months"]:
                months += 1
                inside80 += m["inside80"]
                inside95 += m["inside95"]
    assert months == 90
    assert 0.7 <= inside80 / months <= 0.93
    assert inside95 / months >= 0.9
