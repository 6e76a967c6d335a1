"""Per-call cost: provider price first, else cost per minute × started minutes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from lovedcrm.calls.costs import billed_minutes, call_cost


@pytest.mark.parametrize(
    ("seconds", "minutes"), [(0, 0), (-5, 0), (1, 1), (59, 1), (60, 1), (61, 2), (120, 2), (121, 3)]
)
def test_billed_minutes_round_up_per_started_minute(seconds: int, minutes: int) -> None:
    assert billed_minutes(seconds) == minutes


def test_reported_price_wins_as_absolute_value_in_its_unit() -> None:
    assert call_cost(Decimal("-0.01300"), "usd", 61, Decimal("0.0500"), "BRL") == (
        Decimal("0.01300"),
        "USD",
    )


def test_reported_price_without_unit_uses_configuration_currency() -> None:
    assert call_cost(Decimal("0.02"), None, 10, None, "brl") == (Decimal("0.02"), "BRL")


def test_fallback_to_cost_per_minute_rounded_up() -> None:
    assert call_cost(None, None, 61, Decimal("0.0500"), "BRL") == (Decimal("0.10000"), "BRL")
    assert call_cost(None, None, 0, Decimal("0.0500"), "BRL") == (Decimal("0.00000"), "BRL")


def test_unknown_when_neither_price_nor_rate() -> None:
    assert call_cost(None, None, 300, None, "USD") == (None, "USD")
