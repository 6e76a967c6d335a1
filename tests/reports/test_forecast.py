"""The forecast's computation (``reports.forecast``, no database): intervals that hold the
truth as often as they say on synthetic data with a known win rate, the life table with open
deals censored, the empty states, and no future information."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from lovedcrm.reports import forecast as fc

AS_OF = date(2025, 7, 1)


def _history(
    n: int = 400, p: float = 0.3, close_days: int = 10, value: float = 1000.0
) -> list[fc.Deal]:
    """Closed deals spread over the year before AS_OF, each closing ``close_days`` after it
    opened, won with probability ``p`` (exactly ``round(n * p)`` won)."""
    won = round(n * p)
    out = []
    for i in range(n):
        closed = AS_OF - timedelta(days=1 + (i * 360) // n)
        out.append(
            fc.Deal(
                closed - timedelta(days=close_days), closed, i < won, value if i < won else None
            )
        )
    return out


def test_months_are_this_month_and_the_next_two() -> None:
    windows = fc.month_windows(date(2025, 11, 20), 3)
    assert [w[0] for w in windows] == [date(2025, 11, 1), date(2025, 12, 1), date(2026, 1, 1)]
    assert windows[0][1:] == (0, 11)  # from today to the end of November
    assert windows[1][1:] == (11, 42)


def test_the_80_interval_covers_the_truth_about_80_percent_of_replications() -> None:
    """200 open deals, each won with p = 0.3 within the first month, value 1000: the true
    month-one revenue is 1000 × Binomial(200, 0.3). Over many seeded replications (a fresh
    truth and a fresh forecast each time) the 80 % interval holds it about 80 % of the time."""
    p, n, value = 0.3, 200, 1000.0
    history = _history(p=p)
    truth_rng = np.random.default_rng(7)
    inside80 = inside95 = 0
    replications = 300
    for k in range(replications):
        open_deals = [
            fc.Deal(AS_OF - timedelta(days=2), value=value, probability=p) for _ in range(n)
        ]
        result = fc.forecast(
            history + open_deals,
            AS_OF,
            np.random.default_rng(k),
            draws=2000,
            new_deals=False,
            variation=None,
        )
        month = result.months[0]
        assert month.expected == pytest.approx(p * n * value, rel=0.03)
        truth = value * truth_rng.binomial(n, p)
        inside80 += month.low80 <= truth <= month.high80
        inside95 += month.low95 <= truth <= month.high95
        # Every deal closes 10 days after opening: nothing is left for the later months.
        assert result.months[1].expected == 0.0
    # Binomial sd of a 0.8 proportion over 300 replications is 0.023; discreteness of the
    # revenue (steps of 1000) makes the quantile interval slightly wider, so a little more.
    assert 0.74 <= inside80 / replications <= 0.90
    assert 0.91 <= inside95 / replications <= 0.99


def test_without_a_given_probability_the_history_rate_is_used() -> None:
    history = _history(n=1000, p=0.3)
    open_deals = [fc.Deal(AS_OF - timedelta(days=2), value=500.0) for _ in range(100)]
    result = fc.forecast(
        history + open_deals, AS_OF, np.random.default_rng(1), new_deals=False, variation=None
    )
    assert result.win_rate == pytest.approx(0.3)
    assert result.months[0].expected == pytest.approx(0.3 * 100 * 500, rel=0.03)
    # A deal older than every won deal is not expected within the horizon.
    stale = [fc.Deal(AS_OF - timedelta(days=200), value=500.0)]
    old = fc.forecast(
        history + stale, AS_OF, np.random.default_rng(1), new_deals=False, variation=None
    )
    assert old.months[0].expected == 0.0


def test_open_deals_are_censored_not_forgotten() -> None:
    """Half the deals closed (all won) after 5 days, the other half are still open at 30 days:
    the history's win probability for a fresh deal is about a half, not 1."""
    closed = [
        fc.Deal(AS_OF - timedelta(days=40), AS_OF - timedelta(days=35), True, 100.0)
        for _ in range(50)
    ]
    still_open = [fc.Deal(AS_OF - timedelta(days=30)) for _ in range(50)]
    durations = np.array([5] * 50, dtype=np.int64)
    table = fc.life_table(durations, np.ones(50, dtype=bool), np.array([30] * 50, dtype=np.int64))
    assert table.won_at.sum() == pytest.approx(0.5)
    result = fc.forecast(closed + still_open, AS_OF, np.random.default_rng(0), new_deals=False)
    assert result.months[0].expected == 0.0  # open deals are past every won deal's age


def test_new_deals_add_the_recent_pace() -> None:
    history = _history(n=360, p=0.5, close_days=3, value=100.0)  # one deal a day
    result = fc.forecast(history, AS_OF, np.random.default_rng(0), variation=None)
    assert result.new_deals_per_month == pytest.approx(30.4, rel=0.05)
    # July: openings on days 0..27 close by the 31st: about 28 × 0.5 × 100
    assert result.months[0].from_new == pytest.approx(28 * 0.5 * 100, rel=0.1)
    assert result.months[0].from_open == 0.0


def test_the_month_variation_widens_the_intervals() -> None:
    history = _history(n=1200, p=0.5)
    open_deals = [
        fc.Deal(AS_OF - timedelta(days=2), value=1000.0, probability=0.5) for _ in range(300)
    ]
    plain = fc.forecast(
        history + open_deals, AS_OF, np.random.default_rng(0), new_deals=False, variation=None
    )
    wide = fc.forecast(
        history + open_deals, AS_OF, np.random.default_rng(0), new_deals=False, variation=0.2
    )
    p, w = plain.months[0], wide.months[0]
    assert (w.high80 - w.low80) > 2 * (p.high80 - p.low80)
    assert w.expected == pytest.approx(p.expected, rel=0.02)


def test_the_variation_comes_from_the_history_and_needs_three_months() -> None:
    values = np.full(10, 100.0)
    months = [fc.MonthActual(date(2025, m, 1), r, 10) for m, r in ((3, 1000.0), (4, 1000.0))]
    assert fc.month_variation(months, AS_OF, values) is None
    steady = [fc.MonthActual(date(2025, m, 1), 1000.0, 10) for m in (3, 4, 5, 6)]
    assert fc.month_variation(steady, AS_OF, values) == 0.0
    swings = [
        fc.MonthActual(date(2025, m, 1), r, 10)
        for m, r in ((3, 500.0), (4, 1500.0), (5, 500.0), (6, 1500.0))
    ]
    # Relative changes +1, -1, +1: their variance (4/3) is twice the month factor's (2/3),
    # less the chance of 10 deals of equal value a month (1/10).
    assert fc.month_variation(swings, AS_OF, values) == pytest.approx(
        np.sqrt(2 / 3 - 0.1), rel=1e-6
    )
    # A constant growth is not variation: the mean change is taken out.
    growth = [fc.MonthActual(date(2025, m, 1), 1000.0 * 1.1 ** (m - 2), 10) for m in (3, 4, 5, 6)]
    assert fc.month_variation(growth, AS_OF, values) == 0.0
    # The ramp-up months (before ``since``) are left out: then too few months remain.
    assert fc.month_variation(swings, AS_OF, values, since=date(2025, 5, 1)) is None


def test_empty_states_never_divide_by_zero() -> None:
    rng = np.random.default_rng(0)
    nothing = fc.forecast([], AS_OF, rng)
    assert nothing.status == "no_history" and nothing.months == [] and nothing.win_rate is None
    only_open = fc.forecast([fc.Deal(AS_OF - timedelta(days=3))], AS_OF, rng)
    assert only_open.status == "no_history" and only_open.open_deals == 1
    lost = [fc.Deal(AS_OF - timedelta(days=9), AS_OF - timedelta(days=3), False)]
    no_wins = fc.forecast([*lost, fc.Deal(AS_OF - timedelta(days=3))], AS_OF, rng)
    assert no_wins.status == "no_wins" and no_wins.win_rate == 0.0 and no_wins.months == []


def test_future_information_is_refused() -> None:
    with pytest.raises(ValueError, match="future"):
        fc.forecast(
            [fc.Deal(AS_OF - timedelta(days=3), AS_OF, True, 10.0)], AS_OF, np.random.default_rng(0)
        )


def test_the_forecast_is_reproducible_from_its_seed() -> None:
    deals = _history() + [fc.Deal(AS_OF - timedelta(days=2), value=50.0) for _ in range(30)]
    a = fc.forecast(deals, AS_OF, np.random.default_rng(3))
    b = fc.forecast(deals, AS_OF, np.random.default_rng(3))
    assert a.months == b.months
    for m in a.months:
        assert np.isfinite([m.expected, m.low80, m.high80, m.low95, m.high95]).all()
        assert m.low95 <= m.low80 <= m.expected <= m.high80 <= m.high95 or m.high95 == 0
