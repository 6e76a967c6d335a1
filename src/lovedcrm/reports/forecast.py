"""Revenue forecast with intervals by simulation, and its backtest. Pure computation: no
database (``reports.forecast_service`` reads an organization's deals; the CLI reads a CSV).

The method, as of a day ``as_of`` (only what was known before that day is used):

1. **Time to close, from the organization's own history** — a competing-risks life table on
   the deal's age in days (Aalen–Johansen): at each age, how many deals were still open and
   how many were won or lost that day. Deals still open count as open up to their age today
   (censored), so a young history does not pretend that every deal closes fast.
2. **Each open deal** of age ``a``: its win probability is the calibrated probability given
   by the caller (a trained scoring model, or the stage's historical win rate), else the
   history's rate for deals still open at that age. *When* it would be won is drawn from the
   won deals' time-to-close beyond age ``a``. A deal older than every deal ever won is not
   expected within the horizon.
3. **Deals not yet opened**: new deals arrive at the rate of the last ``RECENT_DAYS`` and win
   and close like the history's deals from age 0 (a Poisson count per month).
4. **Values**: a deal's own value when known, else drawn from the values of won deals (in a
   CSV replay the value is known only once a deal is closed, so open deals are always drawn).
5. **Month-to-month variation**: the organization's monthly won revenue varies more than
   deal-level chance explains (seasons, a big month). Its excess variance over the last
   complete months (at least ``MIN_MONTHS_FOR_VARIATION``) becomes a mean-1 gamma factor on
   each simulated month; with fewer months, no factor (the intervals then say so).

Monte Carlo with a seeded ``numpy.random.Generator`` passed in: per month the mean (expected),
the 80 % (10th–90th percentile) and 95 % (2.5th–97.5th) intervals.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

DRAWS = 10_000
MONTHS = 3
RECENT_DAYS = 91  # the window whose rate of new deals continues
HISTORY_MONTHS = 12  # complete months read for the month-to-month variation
MIN_MONTHS_FOR_VARIATION = 3
CHUNK = 1_000  # draws simulated at once (bounded memory)
MAX_CSV_BYTES = 50 * 1024 * 1024

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Deal:
    """One deal as known on the forecast's day: ``closed`` None while it is open."""

    opened: date
    closed: date | None = None
    won: bool = False
    value: float | None = None  # a won deal's value; an open deal's value when known
    probability: float | None = None  # calibrated win probability of an open deal


@dataclass(frozen=True)
class MonthForecast:
    month: date  # the first day of the month
    expected: float
    low80: float
    high80: float
    low95: float
    high95: float
    already_won: float = 0.0  # won in this month before the forecast's day (known)
    from_open: float = 0.0  # expected from the deals open today
    from_new: float = 0.0  # expected from deals not opened yet


@dataclass(frozen=True)
class MonthActual:
    month: date
    revenue: float
    deals: int


@dataclass
class Forecast:
    as_of: date
    status: str  # "ok" | "no_history" (no closed deal) | "no_wins" (none won yet)
    months: list[MonthForecast] = field(default_factory=list)
    history: list[MonthActual] = field(default_factory=list)
    open_deals: int = 0
    closed_deals: int = 0
    won_deals: int = 0
    win_rate: float | None = None
    variation: float | None = None  # the month-to-month factor's sd; None: too few months
    new_deals_per_month: float = 0.0

    @property
    def empty(self) -> bool:
        return self.status != "ok"


# --- dates ------------------------------------------------------------------------------------


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(first: date, n: int) -> date:
    index = first.year * 12 + first.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def month_windows(as_of: date, months: int) -> list[tuple[date, int, int]]:
    """(month, first day offset, end offset) from ``as_of``: the month of ``as_of`` (from that
    day on) and the ``months - 1`` after it."""
    first = month_start(as_of)
    out = []
    for n in range(months):
        start = add_months(first, n)
        end = add_months(first, n + 1)
        out.append((start, max(0, (start - as_of).days), (end - as_of).days))
    return out


# --- the life table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LifeTable:
    """``won_at[t]``: probability, for a deal just opened, of being won at age t days;
    ``open_at[t]``: of being still open at the start of age t (t = 0…len)."""

    won_at: Floats
    open_at: Floats

    @property
    def won_before(self) -> Floats:  # cumulative: won at an age < t, t = 0…len
        return np.concatenate(([0.0], np.cumsum(self.won_at)))

    def won_between(self, start: Floats, end: Floats) -> Floats:
        """Probability (from age 0) of being won at an age in [start, end)."""
        cum = self.won_before
        top = len(cum) - 1
        return np.asarray(
            cum[np.clip(end, 0, top).astype(np.int64)]
            - cum[np.clip(start, 0, top).astype(np.int64)],
            dtype=np.float64,
        )

    def still_open(self, age: Floats) -> Floats:
        return np.asarray(
            self.open_at[np.clip(age, 0, len(self.open_at) - 1).astype(np.int64)], dtype=np.float64
        )


def life_table(durations: Ints, won: npt.NDArray[np.bool_], open_ages: Ints) -> LifeTable:
    """Aalen–Johansen for two outcomes (won, lost) with the open deals censored at their age
    (observed open on ages 0…age-1)."""
    top = int(max(durations.max(initial=0), open_ages.max(initial=0))) + 1
    closes = np.bincount(durations, minlength=top + 1)[: top + 1]
    wins = np.bincount(durations[won], minlength=top + 1)[: top + 1]
    # At risk at age t: closed at an age >= t, or open with age - 1 >= t.
    closed_from = np.cumsum(closes[::-1])[::-1]
    censored = np.bincount(np.clip(open_ages - 1, -1, None) + 1, minlength=top + 2)[1 : top + 2]
    open_from = np.cumsum(censored[::-1])[::-1]
    at_risk = (closed_from + open_from).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(at_risk > 0, closes / at_risk, 0.0)
        hazard_won = np.where(at_risk > 0, wins / at_risk, 0.0)
    survival = np.cumprod(1.0 - hazard)
    before = np.concatenate(([1.0], survival))  # open at the start of age t
    return LifeTable(won_at=before[:-1] * hazard_won, open_at=before)


# --- the simulation ---------------------------------------------------------------------------


def _days(values: Sequence[date], origin: date) -> Ints:
    return np.array([(v - origin).days for v in values], dtype=np.int64)


def monthly_won(deals: Sequence[Deal], before: date) -> list[MonthActual]:
    """Won revenue per calendar month, for deals closed before ``before``, from the first month
    with a won deal to the month of ``before`` (months without a win are zeros)."""
    sums: dict[date, tuple[float, int]] = {}
    for d in deals:
        if d.won and d.closed is not None and d.closed < before:
            key = month_start(d.closed)
            total, count = sums.get(key, (0.0, 0))
            sums[key] = (total + float(d.value or 0.0), count + 1)
    if not sums:
        return []
    out, month, last = [], min(sums), month_start(before - timedelta(days=1))
    while month <= last:
        total, count = sums.get(month, (0.0, 0))
        out.append(MonthActual(month, total, count))
        month = add_months(month, 1)
    return out


def month_variation(
    history: Sequence[MonthActual], as_of: date, values: Floats, since: date | None = None
) -> float | None:
    """The sd of a mean-1 month factor: the excess over deal-level chance of how much the last
    complete months' won revenue changes from one month to the next. Relative changes
    ``(x_t - x_t-1) / mean(x_t, x_t-1)`` with their mean taken out, so a steady growth (a
    young organization ramping up) is not counted as variation; for independent month
    factors their variance is twice the squared coefficient of variation. Months before
    ``since`` (the ramp-up: deals opened before the history began had not had time to close)
    are left out. None with fewer than ``MIN_MONTHS_FOR_VARIATION`` months."""
    complete = [
        m
        for m in history
        if add_months(m.month, 1) <= as_of and (since is None or m.month >= since)
    ][-HISTORY_MONTHS:]
    if len(complete) < MIN_MONTHS_FOR_VARIATION or values.size == 0:
        return None
    revenue = np.array([m.revenue for m in complete])
    pairs = (revenue[1:] + revenue[:-1]) / 2
    if float(revenue.mean()) <= 0:
        return None
    changes = np.where(pairs > 0, np.diff(revenue) / np.where(pairs > 0, pairs, 1.0), 0.0)
    cv2 = float(changes.var(ddof=1)) / 2
    deals = max(1.0, float(np.mean([m.deals for m in complete])))
    value_mean = float(values.mean())
    chance = float((values**2).mean()) / value_mean**2 / deals if value_mean > 0 else 0.0
    return math.sqrt(max(0.0, cv2 - chance))


def forecast(
    deals: Sequence[Deal],
    as_of: date,
    rng: np.random.Generator,
    *,
    months: int = MONTHS,
    draws: int = DRAWS,
    new_deals: bool = True,
    variation: float | str | None = "estimate",
    today_known: bool = False,
) -> Forecast:
    """The forecast of won revenue for ``months`` calendar months from ``as_of``'s month.

    ``deals``: everything known on ``as_of`` (a deal closed on or after ``as_of`` must be
    passed as open; with ``today_known``, as the product runs it, deals closed on ``as_of``
    itself are history). ``variation``: "estimate" from the history, or a given sd (0/None).
    """
    limit = as_of + timedelta(days=1) if today_known else as_of
    closed = [d for d in deals if d.closed is not None]
    if any(d.closed is not None and d.closed >= limit for d in closed):
        raise ValueError("a deal closed on or after the forecast's day is future information")
    opened = [d for d in deals if d.closed is None and d.opened <= as_of]
    result = Forecast(as_of=as_of, status="ok", open_deals=len(opened))
    result.closed_deals = len(closed)
    result.won_deals = sum(1 for d in closed if d.won)
    result.history = monthly_won(deals, limit)
    if not closed:
        result.status = "no_history"
        return result
    result.win_rate = result.won_deals / len(closed)
    if result.won_deals == 0:
        result.status = "no_wins"
        return result

    origin = as_of
    durations = np.clip(
        _days([d.closed for d in closed if d.closed], origin)
        - _days([d.opened for d in closed], origin),
        0,
        None,
    )
    won = np.array([d.won for d in closed], dtype=bool)
    ages = np.clip(-_days([d.opened for d in opened], origin), 0, None)
    table = life_table(durations, won, ages)
    won_values = np.array([float(d.value or 0.0) for d in closed if d.won], dtype=np.float64)
    won_values = won_values[won_values > 0]
    if won_values.size == 0:
        won_values = np.zeros(1)

    windows = month_windows(as_of, months)
    starts = np.array([w[1] for w in windows], dtype=np.float64)
    ends = np.array([w[2] for w in windows], dtype=np.float64)

    # Open deals: probability of being won in each month.
    age = ages.astype(np.float64)[:, None]
    won_after = table.won_between(ages.astype(np.float64), np.full(len(ages), 1e9))
    in_month = table.won_between(age + starts, age + ends)  # (deals, months), from age 0
    with np.errstate(divide="ignore", invalid="ignore"):
        timing = np.where(won_after[:, None] > 0, in_month / won_after[:, None], 0.0)
        history_rate = np.where(
            table.still_open(ages.astype(np.float64)) > 0,
            won_after / table.still_open(ages.astype(np.float64)),
            0.0,
        )
    given = np.array(
        [np.nan if d.probability is None else d.probability for d in opened], dtype=np.float64
    )
    p_win = np.clip(np.where(np.isnan(given), history_rate, given), 0.0, 1.0)
    q = p_win[:, None] * timing  # (deals, months)
    known_value = np.array(
        [np.nan if not d.value or d.value <= 0 else float(d.value) for d in opened],
        dtype=np.float64,
    )

    # New deals: opened from as_of on, at the recent rate.
    first_open = min(d.opened for d in deals)
    window = max(1, min(RECENT_DAYS, (as_of - first_open).days))
    recent = sum(1 for d in deals if as_of - timedelta(days=window) <= d.opened < as_of)
    rate = recent / window if new_deals else 0.0
    result.new_deals_per_month = rate * 30.4375
    horizon = int(ends[-1])
    mu_new = np.zeros(months)
    if rate > 0:
        opening = np.arange(horizon, dtype=np.float64)[:, None]
        mu_new = rate * table.won_between(starts[None, :] - opening, ends[None, :] - opening).sum(0)

    # The ramp-up ends when the first deals had time to close (the 90th percentile of the won
    # deals' time to close after the first deal opened): months from the first that begins
    # after it.
    ramp_end = first_open + timedelta(days=int(np.quantile(durations[won], 0.9)))
    since = ramp_end if ramp_end.day == 1 else add_months(month_start(ramp_end), 1)
    sd = (
        month_variation(result.history, as_of, won_values, since)
        if variation == "estimate"
        else variation
    )
    result.variation = float(sd) if isinstance(sd, (int, float)) else None

    totals_open = np.zeros((draws, months))
    totals_new = np.zeros((draws, months))
    cum_q = np.cumsum(q, axis=1)
    for first in range(0, draws, CHUNK):
        n = min(CHUNK, draws - first)
        if len(opened):
            u = rng.random((n, len(opened)))
            month_of = (u[:, :, None] >= cum_q[None, :, :]).sum(axis=2)  # == months: not won
            values = np.where(
                np.isnan(known_value)[None, :],
                rng.choice(won_values, size=(n, len(opened))),
                np.nan_to_num(known_value)[None, :],
            )
            for m in range(months):
                totals_open[first : first + n, m] = np.where(month_of == m, values, 0.0).sum(1)
        if rate > 0:
            counts = rng.poisson(mu_new, size=(n, months))
            flat = counts.ravel()
            sampled = rng.choice(won_values, size=int(flat.sum()))
            bounds = np.concatenate(([0], np.cumsum(flat)))
            sums = np.add.reduceat(np.append(sampled, 0.0), bounds[:-1]) * (flat > 0)
            totals_new[first : first + n] = sums.reshape(n, months)
    totals = totals_open + totals_new
    if result.variation:
        shape = 1.0 / result.variation**2
        totals = totals * rng.gamma(shape, 1.0 / shape, size=totals.shape)
    already = {m.month: m.revenue for m in result.history}
    for m, (month, _, _) in enumerate(windows):
        base = already.get(month, 0.0)
        column = totals[:, m] + base
        q025, q10, q90, q975 = np.quantile(column, [0.025, 0.10, 0.90, 0.975])
        result.months.append(
            MonthForecast(
                month=month,
                expected=float(column.mean()),
                low80=float(q10),
                high80=float(q90),
                low95=float(q025),
                high95=float(q975),
                already_won=base,
                from_open=float(totals_open[:, m].mean()),
                from_new=float(totals_new[:, m].mean()),
            )
        )
    return result


# --- the backtest -----------------------------------------------------------------------------


class BacktestError(Exception):
    """Bad input: the message says what to fix."""


@dataclass(frozen=True)
class Columns:
    opened: str
    closed: str
    outcome: str
    value: str
    won: str = "Won"
    lost: str = "Lost"


@dataclass(frozen=True)
class Row:
    """A CSV row as it finally was: opened, and when it closed with which outcome."""

    opened: date
    closed: date | None
    won: bool
    value: float


def _date(raw: str | None) -> date | None:
    text = (raw or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _number(raw: str | None) -> float:
    try:
        value = float((raw or "").strip() or 0)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) else 0.0


def read_rows(
    path: Path, columns: Columns, max_bytes: int = MAX_CSV_BYTES
) -> tuple[list[Row], int]:
    """The CSV's deals (rows without an opening date are left out and counted)."""
    try:
        with path.open("rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as exc:
        raise BacktestError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(raw) > max_bytes:
        raise BacktestError(f"{path} is larger than {max_bytes // (1024 * 1024)} MB")
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig", errors="replace")))
    header = [c for c in (reader.fieldnames or []) if c]
    missing = [
        c
        for c in (columns.opened, columns.closed, columns.outcome, columns.value)
        if c not in header
    ]
    if missing:
        raise BacktestError(
            f"{path} has no column {', '.join(repr(c) for c in missing)} "
            f"(its columns: {', '.join(header) or 'none'})"
        )
    rows, skipped = [], 0
    won_word, lost_word = columns.won.casefold(), columns.lost.casefold()
    for record in reader:
        opened = _date(record.get(columns.opened))
        if opened is None:
            skipped += 1
            continue
        outcome = (record.get(columns.outcome) or "").strip().casefold()
        closed = _date(record.get(columns.closed))
        if outcome not in (won_word, lost_word) or closed is None:
            closed = None  # still open at the end of the file
        rows.append(
            Row(
                opened,
                closed,
                outcome == won_word and closed is not None,
                _number(record.get(columns.value)),
            )
        )
    if not rows:
        raise BacktestError(f"{path} has no row with a date in {columns.opened!r}")
    return rows, skipped


def known_on(rows: Sequence[Row], cutoff: date) -> list[Deal]:
    """What was known the day before ``cutoff``: deals opened before it; an outcome, a close
    date and a value only for deals closed before it (a value is known once a deal closes)."""
    out = []
    for r in rows:
        if r.opened >= cutoff:
            continue
        if r.closed is not None and r.closed < cutoff:
            out.append(Deal(r.opened, r.closed, r.won, r.value if r.won else None))
        else:
            out.append(Deal(r.opened))
    return out


def data_span(rows: Sequence[Row]) -> tuple[date, date]:
    days = [r.opened for r in rows] + [r.closed for r in rows if r.closed]
    return min(days), max(days)


def monthly_cutoffs(spec: str) -> list[date]:
    """``monthly:START:END`` → the first day of each month from START's to END's."""
    parts = spec.split(":")
    start, end = (_date(p) for p in parts[1:3]) if len(parts) == 3 else (None, None)
    if parts[0] != "monthly" or start is None or end is None or end < start:
        raise BacktestError(f"--cutoffs {spec!r}: expected monthly:YYYY-MM-DD:YYYY-MM-DD")
    out, month = [], month_start(start) if start.day == 1 else add_months(month_start(start), 1)
    while month <= end:
        out.append(month)
        month = add_months(month, 1)
    return out


def _inside(value: float, low: float, high: float) -> bool:
    return low - 1e-6 <= value <= high + 1e-6


def backtest(
    rows: Sequence[Row],
    cutoffs: Sequence[date],
    *,
    months: int = MONTHS,
    draws: int = DRAWS,
    seed: int = 0,
) -> dict[str, Any]:
    """Replay each cut-off, forecast, and compare with what happened."""
    first, last = data_span(rows)
    for cutoff in cutoffs:
        if not first < cutoff <= last:
            raise BacktestError(
                f"cut-off {cutoff.isoformat()} is outside the file's dates "
                f"({first.isoformat()} to {last.isoformat()})"
            )
    won_by_month: dict[date, float] = {}
    for r in rows:
        if r.won and r.closed is not None:
            won_by_month[month_start(r.closed)] = (
                won_by_month.get(month_start(r.closed), 0.0) + r.value
            )
    rng = np.random.default_rng(seed)
    results, pairs = [], []
    for cutoff in sorted(set(cutoffs)):
        known = known_on(rows, cutoff)
        result = forecast(known, cutoff, rng, months=months, draws=draws)
        last_quarter = [
            won_by_month.get(add_months(month_start(cutoff), -k), 0.0) for k in (1, 2, 3)
        ]
        naive = float(np.mean(last_quarter))
        entry: dict[str, Any] = {
            "cutoff": cutoff.isoformat(),
            "status": result.status,
            "open_deals": result.open_deals,
            "closed_deals": result.closed_deals,
            "win_rate": _round(result.win_rate),
            "month_variation": _round(result.variation),
            "naive_baseline": round(naive, 2),
            "months": [],
        }
        for m in result.months:
            observed = add_months(m.month, 1) <= last + timedelta(days=1)
            actual = won_by_month.get(m.month, 0.0) if observed else None
            item: dict[str, Any] = {
                "month": m.month.isoformat()[:7],
                "expected": round(m.expected, 2),
                "interval80": [round(m.low80, 2), round(m.high80, 2)],
                "interval95": [round(m.low95, 2), round(m.high95, 2)],
                "from_open_deals": round(m.from_open, 2),
                "from_new_deals": round(m.from_new, 2),
                "actual": None if actual is None else round(actual, 2),
            }
            if actual is not None:
                item["inside80"] = _inside(actual, m.low80, m.high80)
                item["inside95"] = _inside(actual, m.low95, m.high95)
                pairs.append(
                    (
                        actual,
                        m.expected,
                        naive,
                        item["inside80"],
                        item["inside95"],
                        result.variation is not None,
                    )
                )
            entry["months"].append(item)
        results.append(entry)
    return {"method": METHOD, "cutoffs": results, "summary": _summary(pairs)}


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _share(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def _summary(pairs: Sequence[tuple[float, float, float, bool, bool, bool]]) -> dict[str, Any]:
    if not pairs:
        return {"months_compared": 0}
    scored = [p for p in pairs if p[0] > 0]

    def mape(index: int) -> float | None:
        if not scored:
            return None
        return round(float(np.mean([abs(p[index] - p[0]) / p[0] for p in scored])) * 100, 2)

    return {
        "months_compared": len(pairs),
        "coverage80": round(sum(p[3] for p in pairs) / len(pairs), 4),
        "coverage95": round(sum(p[4] for p in pairs) / len(pairs), 4),
        # Months forecast with fewer than MIN_MONTHS_FOR_VARIATION complete months of won
        # history: their intervals count only deal-level chance (the page says so).
        "months_without_month_variation": sum(1 for p in pairs if not p[5]),
        "coverage80_with_month_variation": _share([p[3] for p in pairs if p[5]]),
        "coverage95_with_month_variation": _share([p[4] for p in pairs if p[5]]),
        "mape_forecast": mape(1),
        "mape_naive": mape(2),
        "mape_months": len(scored),
        "naive": "mean monthly won revenue of the three calendar months before the cut-off",
    }


METHOD = (
    "Monte Carlo of won revenue per month: open deals win with the history's rate at their age "
    "(a competing-risks life table of time to close, open deals censored) and close at a time "
    "drawn from the won deals' time to close beyond their age; new deals at the last 91 days' "
    "rate; values of open deals drawn from won deals' values (a value is known only once a "
    "deal closes); a mean-1 gamma month factor from the excess month-to-month variation of "
    "the last complete months."
)
