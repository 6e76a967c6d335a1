"""How good a set of predicted probabilities is, in plain numpy (no scikit-learn), so the
web process can compare models without loading the training libraries.

- ``roc_auc``: the chance a random won lead scores above a random lost one (ties count half);
- ``pr_auc``: average precision;
- ``brier``: mean squared error of the probabilities (lower is better);
- ``ece``: expected calibration error over ``BINS`` equal-width bins — the weighted gap
  between the mean predicted probability and the observed win rate in each bin;
- accuracy, precision and recall at a threshold; lift of the top decile (its win rate over
  the overall win rate); log loss.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

BINS = 10


def _arrays(y: ArrayLike, p: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    return np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)


def roc_auc(y_true: ArrayLike, score: ArrayLike) -> float | None:
    y, s = _arrays(y_true, score)
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts).astype(np.float64)
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # average rank (1-based) over ties
    sum_pos = float(ranks[y == 1].sum())
    return (sum_pos - positives * (positives + 1) / 2.0) / (positives * negatives)


def pr_auc(y_true: ArrayLike, score: ArrayLike) -> float | None:
    """Average precision: Σ (Rₙ − Rₙ₋₁)·Pₙ over the distinct thresholds."""
    y, s = _arrays(y_true, score)
    positives = y.sum()
    if positives == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    distinct = np.where(np.diff(s))[0]
    ends = np.r_[distinct, y.size - 1]
    tp = np.cumsum(y)[ends]
    fp = (ends + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / positives
    previous = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - previous) * precision))


def brier(y_true: ArrayLike, prob: ArrayLike) -> float:
    y, p = _arrays(y_true, prob)
    return float(np.mean((p - y) ** 2)) if y.size else 0.0


def log_loss(y_true: ArrayLike, prob: ArrayLike) -> float:
    y, p = _arrays(y_true, prob)
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if y.size else 0.0


def reliability(y_true: ArrayLike, prob: ArrayLike, bins: int = BINS) -> list[dict[str, Any]]:
    """Per bin of predicted probability: how many, mean predicted, observed win rate."""
    y, p = _arrays(y_true, prob)
    index = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": count,
                "predicted": float(p[mask].mean()) if count else None,
                "observed": float(y[mask].mean()) if count else None,
            }
        )
    return out


def ece(y_true: ArrayLike, prob: ArrayLike, bins: int = BINS) -> float:
    y, _ = _arrays(y_true, prob)
    if not y.size:
        return 0.0
    total = 0.0
    for b in reliability(y_true, prob, bins):
        if b["count"]:
            total += b["count"] / y.size * abs(b["predicted"] - b["observed"])
    return total


def lift_top_decile(y_true: ArrayLike, prob: ArrayLike) -> float | None:
    y, p = _arrays(y_true, prob)
    if not y.size or y.mean() == 0:
        return None
    top = max(1, math.ceil(y.size / 10))
    order = np.argsort(-p, kind="mergesort")[:top]
    return float(y[order].mean() / y.mean())


def at_threshold(y_true: ArrayLike, prob: ArrayLike, threshold: float) -> dict[str, float]:
    y, p = _arrays(y_true, prob)
    predicted = p >= threshold
    actual = y == 1
    tp = float(np.sum(predicted & actual))
    fp = float(np.sum(predicted & ~actual))
    fn = float(np.sum(~predicted & actual))
    return {
        "accuracy": float(np.mean(predicted == actual)) if y.size else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def summary(y_true: ArrayLike, prob: ArrayLike, threshold: float = 0.5) -> dict[str, Any]:
    """Every metric of probabilities ``prob`` against outcomes ``y_true`` (1 won, 0 lost)."""
    y, p = _arrays(y_true, prob)
    out: dict[str, Any] = {
        "roc_auc": _round(roc_auc(y, p)),
        "pr_auc": _round(pr_auc(y, p)),
        "brier": _round(brier(y, p)),
        "ece": _round(ece(y, p)),
        "log_loss": _round(log_loss(y, p)),
        "lift_top_decile": _round(lift_top_decile(y, p)),
        "threshold": threshold,
        "rows": int(y.size),
        "positives": int(y.sum()),
    }
    out.update({k: round(v, 4) for k, v in at_threshold(y, p, threshold).items()})
    return out
