"""``lovedcrm sentiment evaluate``: the analyser on a labelled CSV, LeIA alone beside it, and
the per-organization model's learning curve (an experiment: nothing trained here is kept).

Labels may be -1/0/1, neg/neu/pos, negative/neutral/positive or negativo/neutro/positivo.
On a file without a neutral class the scores are read as two classes: >= 0 is positive (the
rule LeIA's published 0.843 on RePro is measured with).
"""

from __future__ import annotations

import csv
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lovedcrm.assistant import leia, sentiment, train

LABEL_NAMES = {
    "-1": "negative", "neg": "negative", "negative": "negative", "negativo": "negative",
    "negativa": "negative", "0": "neutral", "neu": "neutral", "neutral": "neutral",
    "neutro": "neutral", "neutra": "neutral", "1": "positive", "+1": "positive",
    "pos": "positive", "positive": "positive", "positivo": "positive", "positiva": "positive",
}  # fmt: skip


class EvaluationError(Exception):
    """A file or option the evaluation cannot use (the message says why)."""


def read_rows(
    path: Path,
    text_column: str,
    label_column: str,
    *,
    split_column: str | None = None,
    split: str | None = None,
) -> list[dict[str, str]]:
    """Every row (or those whose ``split_column`` is ``split``) as {text, label, split}."""
    if not path.is_file():
        raise EvaluationError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        for name, option in (
            (text_column, "--text-column"),
            (label_column, "--label-column"),
            (split_column, "--split-column"),
        ):
            if name is not None and name not in columns:
                raise EvaluationError(
                    f"{option} {name!r} is not a column of {path.name} (columns: "
                    f"{', '.join(columns) or 'none'})"
                )
        rows: list[dict[str, str]] = []
        for n, row in enumerate(reader, start=2):
            raw = (row.get(label_column) or "").strip().lower()
            if raw not in LABEL_NAMES:
                raise EvaluationError(f"line {n}: label {raw!r} is not one of -1/0/1 or a name")
            rows.append(
                {
                    "text": row.get(text_column) or "",
                    "label": LABEL_NAMES[raw],
                    "split": (row.get(split_column) or "") if split_column else "",
                }
            )
    if split is not None and split_column is None:
        raise EvaluationError("--split needs --split-column")
    if not rows:
        raise EvaluationError(f"{path.name} has no rows")
    return rows


def metrics(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    labels = [c for c in sentiment.LABELS if c in set(gold) | set(predicted)]
    matrix = {g: {p: 0 for p in labels} for g in labels}
    for g, p in zip(gold, predicted, strict=True):
        matrix[g][p] += 1
    f1s = []
    for c in sorted(set(gold)):
        tp = matrix[c][c]
        fp = sum(matrix[g][c] for g in labels if g != c)
        fn = sum(matrix[c][p] for p in labels if p != c)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    n = len(gold)
    return {
        "n": n,
        "accuracy": round(sum(g == p for g, p in zip(gold, predicted, strict=True)) / n, 4),
        "macro_f1": round(sum(f1s) / len(f1s), 4),
        "confusion_matrix": {"rows_gold_columns_predicted": labels, "counts": matrix},
    }


def _decide(score: float, two_classes: bool) -> str:
    if two_classes:
        return "positive" if score >= 0 else "negative"
    return sentiment.label_of(score)


def evaluate(rows: Sequence[dict[str, str]], *, split: str | None = None) -> dict[str, Any]:
    """The product's analyser and LeIA alone on ``rows`` (of ``split`` when given)."""
    chosen = [r for r in rows if split is None or r["split"] == split]
    if not chosen:
        raise EvaluationError(f"no row has split {split!r}")
    gold = [r["label"] for r in chosen]
    two = "neutral" not in gold
    started = time.perf_counter()
    scores = [sentiment.polarity(r["text"]) for r in chosen]
    elapsed = time.perf_counter() - started
    ours = [_decide(s, two) for s in scores]
    theirs = [_decide(leia.compound(r["text"]), two) for r in chosen]
    result = {
        "analyser": "lovedcrm lexicon + rules (offline)",
        "split": split,
        "classes": "two (score >= 0 is positive)" if two else "three (|score| < 0.05 neutral)",
        **metrics(gold, ours),
        "ms_per_message": round(elapsed * 1000 / len(chosen), 4),
        "baseline_leia": metrics(gold, theirs),
    }
    result["neutral_share"] = round(
        sum(sentiment.label_of(s) == "neutral" for s in scores) / len(scores), 4
    )
    return result


def learning_curve(
    rows: Sequence[dict[str, str]], sizes: Sequence[int], *, test_split: str, seed: int = 0
) -> list[dict[str, Any]]:
    """The per-organization model trained on ``sizes`` rows drawn from the other splits and
    tested on ``test_split`` (nothing is stored)."""
    pool = [r for r in rows if r["split"] != test_split]
    test = [r for r in rows if r["split"] == test_split]
    if not pool or not test:
        raise EvaluationError("the learning curve needs a test split and other rows to train on")
    gold = [r["label"] for r in test]
    two = "neutral" not in gold
    out: list[dict[str, Any]] = []
    for size in sizes:
        sample = random.Random(seed).sample(  # noqa: S311 - a reproducible draw, not a secret
            pool, min(size, len(pool))
        )
        labels = [r["label"] for r in sample]
        if len(set(labels)) < train.MIN_CLASSES:
            out.append({"train_rows": len(sample), "skipped": "one class only"})
            continue
        judged = train.train_and_judge([r["text"] for r in sample], labels, seed=seed)
        model = judged.model
        predicted = []
        for r in test:
            probs = model.probabilities(r["text"])
            if two:
                predicted.append(
                    "positive"
                    if probs.get("positive", 0) >= probs.get("negative", 0)
                    else "negative"
                )
            else:
                predicted.append(max(probs, key=lambda c: probs[c]))
        m = metrics(gold, predicted)
        out.append(
            {
                "train_rows": len(sample),
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "would_take_over": judged.active,
                "heldout_accuracy": judged.heldout_accuracy,
                "default_heldout_accuracy": judged.default_heldout_accuracy,
            }
        )
    return out
