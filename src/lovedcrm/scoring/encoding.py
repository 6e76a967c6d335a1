"""From feature records to numbers: one recipe, learnt from the training records and stored as
JSON with the model, applied the same way to a lead scored tonight and to a CSV row.

A record is a ``dict`` of feature name → value (``features.py`` builds them). Each feature is
a *number* or a *category*: declared by the product (a custom field of type number is a
number) or, for ``auto``, detected from the training values (a column whose values nearly all
read as numbers is a number). General preprocessing only — nothing here knows a data set:

- missing: ``None``, blanks and the usual placeholders (``Select``, ``N/A``, ``-``…);
- numbers: a missing indicator (when the training data had gaps), the median in the gaps,
  ``log1p`` for skewed non-negative values, clipped to the training range, standardised;
- categories: one column per value seen at least ``min_count`` times (most frequent first,
  at most ``MAX_CATEGORIES``), one for the rest and one for missing;
- identifiers are dropped: text whose values are nearly all distinct, integers all distinct.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

MISSING_TOKENS = frozenset(
    {
        "",
        "select",
        "--select--",
        "-- select --",
        "choose",
        "n/a",
        "na",
        "null",
        "none",
        "nan",
        "-",
        "--",
        "?",
        "unknown",
    }
)
MAX_CATEGORIES = 40
OTHER = "__other__"
MISSING = "__missing__"
NUMBER, CATEGORY, AUTO = "number", "category", "auto"

Matrix = NDArray[np.float64]


def clean(value: Any) -> Any:
    """``None`` for a missing value; a stripped string, a float or a bool otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    text = str(value).strip()
    return None if text.casefold() in MISSING_TOKENS else text


def as_number(value: Any) -> float | None:
    """The value as a float, or None when it is missing or not a number."""
    value = clean(value)
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, float):
        return value
    text = value.replace(" ", "")
    if "," in text and "." not in text:
        text = text.replace(",", ".")  # 12,5 written the Brazilian way
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def category_key(value: Any) -> str | None:
    value = clean(value)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).casefold()


@dataclass
class Column:
    """How one feature becomes ``width`` columns of the matrix, from ``start``."""

    name: str
    kind: str
    start: int = 0
    width: int = 0
    # numbers
    median: float = 0.0
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    mean: float = 0.0
    std: float = 1.0
    missing_column: bool = False
    # categories: keys (case-folded), and the spelling shown for each
    categories: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    other_column: bool = False

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def category_label(self, key: str) -> str:
        if key in self.categories:
            return self.labels[self.categories.index(key)]
        return key


@dataclass
class Encoder:
    columns: list[Column]
    width: int
    dropped: dict[str, str] = field(default_factory=dict)  # feature → why (identifier, constant)

    def as_json(self) -> dict[str, Any]:
        return {
            "columns": [c.as_json() for c in self.columns],
            "width": self.width,
            "dropped": self.dropped,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Encoder:
        columns = [Column(**c) for c in data["columns"]]
        return cls(columns=columns, width=int(data["width"]), dropped=dict(data.get("dropped", {})))

    def column(self, name: str) -> Column | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None

    def transform(self, records: list[dict[str, Any]]) -> Matrix:
        out = np.zeros((len(records), self.width), dtype=np.float64)
        for col in self.columns:
            values = [r.get(col.name) for r in records]
            if col.kind == NUMBER:
                _encode_numbers(col, values, out)
            else:
                _encode_categories(col, values, out)
        return out


def _number_transform(col: Column, raw: NDArray[np.float64]) -> NDArray[np.float64]:
    x = np.clip(raw, col.low, col.high)
    if col.log:
        x = np.log1p(x)
    return (x - col.mean) / col.std


def _encode_numbers(col: Column, values: list[Any], out: Matrix) -> None:
    raw = np.array([as_number(v) for v in values], dtype=np.float64)  # None → nan
    missing = np.isnan(raw)
    raw[missing] = col.median
    out[:, col.start] = _number_transform(col, raw)
    if col.missing_column:
        out[:, col.start + 1] = missing


def _encode_categories(col: Column, values: list[Any], out: Matrix) -> None:
    index = {key: i for i, key in enumerate(col.categories)}
    other = col.start + len(col.categories) if col.other_column else None
    missing = col.start + col.width - 1 if col.missing_column else None
    for row, value in enumerate(values):
        key = category_key(value)
        if key is None:
            if missing is not None:
                out[row, missing] = 1.0
            continue
        at = index.get(key)
        if at is not None:
            out[row, col.start + at] = 1.0
        elif other is not None:
            out[row, other] = 1.0


def detect_kind(values: list[Any]) -> str:
    present = [v for v in (clean(v) for v in values) if v is not None]
    if not present:
        return CATEGORY
    numeric = sum(1 for v in present if as_number(v) is not None)
    return NUMBER if numeric >= 0.98 * len(present) else CATEGORY


def _skewed(x: NDArray[np.float64]) -> bool:
    if x.size < 3 or x.min() < 0:
        return False
    std = x.std()
    if std == 0:
        return False
    skew = float(np.mean(((x - x.mean()) / std) ** 3))
    return skew > 1.0


def _fit_number(name: str, values: list[Any], n: int) -> tuple[Column | None, str | None]:
    numbers = [as_number(v) for v in values]
    present = np.array([v for v in numbers if v is not None], dtype=np.float64)
    if present.size == 0:
        return None, "empty"
    if np.unique(present).size <= 1 and present.size == n:
        return None, "constant"
    integers = bool(np.all(present == np.round(present)))
    if present.size >= 50 and integers and np.unique(present).size == present.size:
        return None, "identifier"
    col = Column(name=name, kind=NUMBER)
    col.low, col.high = float(present.min()), float(present.max())
    col.median = float(np.median(present))
    col.log = _skewed(present)
    col.missing_column = present.size < n
    filled = np.array([col.median if v is None else v for v in numbers], dtype=np.float64)
    x = np.log1p(filled) if col.log else filled
    col.mean = float(x.mean())
    col.std = float(x.std()) or 1.0
    col.width = 2 if col.missing_column else 1
    return col, None


def _fit_category(
    name: str, values: list[Any], n: int, min_count: int
) -> tuple[Column | None, str | None]:
    keys = [category_key(v) for v in values]
    present = [k for k in keys if k is not None]
    if not present:
        return None, "empty"
    counts = Counter(present)
    if len(counts) == 1 and len(present) == n:
        return None, "constant"
    if len(present) >= 50 and len(counts) > 0.9 * len(present):
        return None, "identifier"
    spellings: dict[str, Counter[str]] = {}
    for v in values:
        key = category_key(v)
        if key is not None:
            spellings.setdefault(key, Counter())[str(clean(v))] += 1
    kept = [k for k, c in counts.most_common(MAX_CATEGORIES) if c >= min_count]
    col = Column(name=name, kind=CATEGORY, categories=kept)
    col.labels = [spellings[k].most_common(1)[0][0] for k in kept]
    col.other_column = len(kept) < len(counts)
    col.missing_column = len(present) < n
    col.width = len(kept) + int(col.other_column) + int(col.missing_column)
    if col.width <= 1 and not kept:
        return None, "rare"
    return col, None


def fit_encoder(records: list[dict[str, Any]], kinds: dict[str, str] | None = None) -> Encoder:
    """Learn the recipe from training records. ``kinds`` declares features (``number``,
    ``category`` or ``auto``); features only seen in records are ``auto``."""
    kinds = dict(kinds or {})
    names = list(kinds)
    seen = set(names)
    for record in records:
        for name in record:
            if name not in seen:
                seen.add(name)
                names.append(name)
    n = len(records)
    min_count = max(5, round(0.002 * n))
    columns: list[Column] = []
    dropped: dict[str, str] = {}
    start = 0
    for name in sorted(names):
        values = [r.get(name) for r in records]
        kind = kinds.get(name, AUTO)
        if kind == AUTO:
            kind = detect_kind(values)
        if kind == NUMBER:
            col, why = _fit_number(name, values, n)
        else:
            col, why = _fit_category(name, values, n, min_count)
        if col is None:
            dropped[name] = why or "dropped"
            continue
        col.start = start
        start += col.width
        columns.append(col)
    return Encoder(columns=columns, width=start, dropped=dropped)
