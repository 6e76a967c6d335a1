"""``lovedcrm scoring evaluate``: the product's pipeline on any table.

Each row of the CSV is a lead whose columns are custom fields (``features.custom_record``,
as for a lead of the product), the target column says whether it was won. With a time column
the rows are split by time — the model learns from the oldest 80 % and is judged on the most
recent 20 % — else by stratified 5-fold cross-validation (each row predicted by a model that
did not see it). Either way the model is the one the product trains (``training.fit``).
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from lovedcrm.scoring import metrics
from lovedcrm.scoring.encoding import as_number, clean
from lovedcrm.scoring.features import custom_key, custom_record, feature_label
from lovedcrm.scoring.training import SEED, TrainingError, fit

TRUE_WORDS = frozenset({"1", "true", "yes", "y", "sim", "s", "won", "converted", "ganho"})
TEST_SHARE = 0.2


class EvaluationError(Exception):
    """Bad input: the message says what to fix."""


@dataclass
class Table:
    columns: list[str]
    rows: list[dict[str, str]]


def read_csv(path: Path) -> Table:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EvaluationError(f"cannot read {path}: {exc.strerror or exc}") from exc
    text = raw.decode("utf-8-sig", errors="replace")
    if not text.strip():
        raise EvaluationError(f"{path} is empty")
    sample = text[:20000]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    columns = [c for c in (reader.fieldnames or []) if c is not None]
    rows = [dict(r) for r in reader]
    if not columns or not rows:
        raise EvaluationError(f"{path} has no data rows")
    return Table(columns, rows)


def _label(value: str | None, positive: str | None) -> int | None:
    cleaned = clean(value)
    if cleaned is None:
        return None
    text = str(cleaned).strip()
    if positive is not None:
        return int(text.casefold() == positive.strip().casefold())
    return int(text.casefold() in TRUE_WORDS)


def _time(value: str | None) -> float | None:
    cleaned = clean(value)
    if cleaned is None:
        return None
    number = as_number(cleaned)
    if number is not None:
        return number
    text = str(cleaned)
    for parse in (
        datetime.fromisoformat,
        lambda s: datetime.strptime(s, "%d/%m/%Y"),
        lambda s: datetime.strptime(s, "%d/%m/%Y %H:%M"),
    ):
        try:
            return parse(text).timestamp()
        except ValueError:
            continue
    return None


def prepare(
    table: Table,
    target: str,
    *,
    positive: str | None = None,
    drop: tuple[str, ...] = (),
    time_column: str | None = None,
) -> tuple[list[dict[str, Any]], np.ndarray, list[float] | None]:
    """Records, labels and (optionally) times; rows without a target are left out."""
    wanted = [target, *drop, *([time_column] if time_column else [])]
    unknown = [c for c in wanted if c not in table.columns]
    if unknown:
        raise EvaluationError(
            f"unknown column(s): {', '.join(unknown)}; the file has: {', '.join(table.columns)}"
        )
    skip = {target, *drop, *([time_column] if time_column else [])}
    records: list[dict[str, Any]] = []
    labels: list[int] = []
    times: list[float] = []
    for row in table.rows:
        label = _label(row.get(target), positive)
        if label is None:
            continue
        moment = _time(row.get(time_column)) if time_column else 0.0
        if time_column and moment is None:
            continue
        records.append(custom_record({k: v for k, v in row.items() if k not in skip and k}))
        labels.append(label)
        times.append(float(moment or 0.0))
    y = np.asarray(labels, dtype=np.float64)
    if y.size == 0:
        raise EvaluationError(f"no row has a value in the target column {target!r}")
    if y.sum() == 0 or y.sum() == y.size:
        hint = f" (positive value: {positive!r})" if positive is not None else ""
        raise EvaluationError(
            f"the target column {target!r} has one class only{hint}: "
            "a model needs won and lost rows (use --positive VALUE to name the winning value)"
        )
    return records, y, (times if time_column else None)


def _factors(model: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    effects = model.importance(records, limit=200)
    return [
        {"feature": feature_label(e.feature), "importance": round(abs(e.effect), 4)}
        for e in effects[:10]
    ]


def evaluate(
    table: Table,
    target: str,
    *,
    positive: str | None = None,
    drop: tuple[str, ...] = (),
    time_column: str | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    started = time.perf_counter()
    records, y, times = prepare(
        table, target, positive=positive, drop=drop, time_column=time_column
    )
    probabilities = np.zeros(y.size)
    tested = np.zeros(y.size, dtype=bool)
    factor_records: list[dict[str, Any]] = []
    models = []
    try:
        if times is not None:
            order = np.argsort(np.asarray(times), kind="mergesort")
            cut = round(y.size * (1 - TEST_SHARE))
            splits = [(order[:cut], order[cut:])]
            split_name = "time"
            if len(set(y[order[cut:]])) < 2:
                raise EvaluationError(
                    "the most recent 20 % of rows have one outcome only: no time split possible"
                )
        else:
            smallest = int(min(y.sum(), y.size - y.sum()))
            folds = StratifiedKFold(n_splits=min(5, smallest), shuffle=True, random_state=SEED)
            splits = list(folds.split(np.zeros(y.size), y))
            split_name = f"stratified {folds.get_n_splits()}-fold"
        for train, test in splits:
            fitted = fit([records[i] for i in train], y[train])
            model = fitted.model()
            test_records = [records[i] for i in test]
            probabilities[test] = model.predict_records(test_records)
            tested[test] = True
            models.append((fitted, model))
            factor_records += test_records[: max(1, 200 // len(splits))]
    except TrainingError as exc:
        raise EvaluationError(str(exc)) from exc
    summary = metrics.summary(y[tested], probabilities[tested], threshold)
    selection = models[-1][0].selection
    return {
        **summary,
        "split": split_name,
        "model": selection["chosen"],
        "calibration": selection["calibration"],
        "top_factors": _factors(models[-1][1], factor_records),
        "rows": int(y.size),
        "tested_rows": int(tested.sum()),
        "seconds": round(time.perf_counter() - started, 2),
    }


__all__ = ["EvaluationError", "Table", "custom_key", "evaluate", "prepare", "read_csv"]
