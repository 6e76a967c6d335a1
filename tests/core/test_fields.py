"""Lists are written by ``core.fields.dumps`` (orjson) byte for byte as pydantic-core writes
the same values (what the item models and the rest of the API write), awkward values
included; what orjson cannot write the same way goes to pydantic-core."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pydantic_core
import pytest

from lovedcrm.core.fields import dumps, page_response


class Color(enum.StrEnum):
    RED = "vermelho"


_STRINGS = [
    "",
    "simples",
    'aspas " barra \\ e / barra',
    "".join(chr(c) for c in range(0, 32)) + "\x7f\x80\x9f",
    "ação é ñ 日本 😀 \u2028\u2029 \ufeff",
    "<script>alert(1)</script>&amp;",
]
_ZONES = [UTC, ZoneInfo("Etc/UTC"), ZoneInfo("America/Sao_Paulo"), ZoneInfo("Asia/Kolkata")]
_TIMES: list[Any] = [
    datetime(2026, 1, 2, 3, 4, 5, micro, tzinfo=zone)
    for zone in _ZONES
    for micro in (0, 120, 500000, 999999)
] + [
    datetime(1, 1, 2, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(2026, 10, 18, 0, 30, tzinfo=ZoneInfo("America/Sao_Paulo")),
    datetime(2026, 1, 2, 3, 4, 5),  # naive
    datetime(2026, 1, 2, tzinfo=timezone(timedelta(hours=-3))),
    date(2026, 2, 28),
    time(3, 4, 5, 6),
]
_NUMBERS: list[Any] = [
    0,
    -1,
    2**63 - 1,
    -(2**63),
    0.1 + 0.2,
    -0.0,
    1e16,
    1e-7,
    123456789.125,
    Decimal("0.00"),
    Decimal("-12.30"),
    Decimal("99999999.99"),
    Decimal("1E+3"),
    Decimal("NaN"),
    True,
    False,
    None,
]


def _page(values: list[Any]) -> dict[str, Any]:
    items = [
        {
            "id": uuid.UUID(int=i * 0x1234567890ABCDEF1234567890ABCDEF % 2**128),
            "value": value,
            "custom_fields": {"k": value, "list": [value, {"n": [None, value]}]},
        }
        for i, value in enumerate(values)
    ]
    return {"items": items, "next_cursor": "WyJ4Il0"}


@pytest.mark.parametrize(
    "values",
    [_STRINGS, _TIMES, _NUMBERS, [Color.RED, (1, "a"), [], {}, uuid.UUID(int=0)]],
    ids=["strings", "times", "numbers", "others"],
)
def test_written_as_pydantic_core_writes_it(values: list[Any]) -> None:
    body = _page(values)
    assert dumps(body) == pydantic_core.to_json(body)
    for value in values:  # each alone too
        assert dumps({"v": value}) == pydantic_core.to_json({"v": value}), repr(value)


@pytest.mark.parametrize(
    "value", [2**64, -(2**70), timedelta(seconds=5), {1, 2}, {1: "a"}, b"bytes"], ids=repr
)
def test_what_orjson_cannot_write_the_same_goes_to_pydantic_core(value: Any) -> None:
    body = _page([value, "x"])
    assert dumps(body) == pydantic_core.to_json(body)


def test_a_page_of_rows() -> None:
    class Row:
        def __init__(self, **values: Any) -> None:
            self.__dict__.update(values)

    at = datetime(2026, 3, 4, 5, 6, 7, 89, tzinfo=UTC)
    rows = [
        Row(id=uuid.UUID(int=n), name=f"Lead {n}\n", at=at, value=Decimal("1.50")) for n in (1, 2)
    ]
    response = page_response(rows, ["name", "id", "value"], None)
    assert response.body == pydantic_core.to_json(
        {
            "items": [{"name": r.name, "id": r.id, "value": r.value} for r in rows],
            "next_cursor": None,
        }
    )
    assert response.media_type == "application/json"
