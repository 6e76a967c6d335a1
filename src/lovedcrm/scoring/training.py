"""Training a conversion model with scikit-learn, and turning it into an artifact of numbers.

Only the training process loads this module (``python -m lovedcrm.scoring.training``, started
by ``scoring.service.train_organization``), the ``lovedcrm scoring evaluate`` command and the
benchmark: the web process scores with ``artifacts.ScoringModel`` (numpy alone).

The recipe, the same for an organization's history and for ``scoring evaluate``:

1. ``encoding.fit_encoder`` learns the preprocessing from the training records.
2. Two candidates — a regularised logistic regression and a histogram gradient-boosting
   classifier — are scored by stratified k-fold cross-validation (out-of-fold decision
   values, ROC-AUC); boosting must beat the linear model by ``PREFER_LINEAR_WITHIN`` to be
   chosen (simpler model, exact explanations).
3. Calibration is what ``CalibratedClassifierCV(ensemble=False)`` does — a calibrator fitted on
   the chosen candidate's out-of-fold decision values, the estimator refitted on every row —
   done here from the out-of-fold values the selection already computed, so one
   cross-validation serves both (half the fits; ``tests/scoring/test_training.py`` checks the
   result equals ``CalibratedClassifierCV``'s). Isotonic or sigmoid (Platt): sigmoid below
   ``ISOTONIC_MIN_ROWS`` rows, else whichever has the lower Brier score in a cross-validation
   of the calibrator itself.
4. :func:`export` writes the encoder, the estimator's parameters (coefficients, or the trees'
   nodes), the calibrator and the training means as JSON numbers.

Fitting runs single-threaded (``threadpool_limits(1)``): on a shared 2-core machine OpenMP
threads waiting for each other cost more than they give.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from threadpoolctl import threadpool_limits

from lovedcrm.scoring import metrics
from lovedcrm.scoring.artifacts import Effect, ScoringModel
from lovedcrm.scoring.encoding import Encoder, Matrix, fit_encoder

PREFER_LINEAR_WITHIN = 0.002
BACKGROUND_POINTS = 20
ISOTONIC_MIN_ROWS = 500
FOLDS = 5
SEED = 0

Vector = NDArray[np.float64]


class TrainingError(Exception):
    """The data cannot train a model (one class only, too few rows...)."""


def candidates(n_rows: int, seed: int = SEED) -> dict[str, Any]:
    early = n_rows >= 1000
    return {
        "logistic": LogisticRegression(C=1.0, max_iter=2000),
        "boosting": HistGradientBoostingClassifier(
            learning_rate=0.1,
            max_iter=300 if early else 100,
            max_leaf_nodes=31,
            min_samples_leaf=20,
            l2_regularization=1.0,
            early_stopping=early,
            validation_fraction=0.1,
            n_iter_no_change=10,
            random_state=seed,
        ),
    }


def folds_for(y: Vector, seed: int = SEED) -> StratifiedKFold:
    smallest = int(min(y.sum(), y.size - y.sum()))
    if smallest < 2:
        raise TrainingError("both outcomes are needed, at least two of each")
    return StratifiedKFold(n_splits=min(FOLDS, smallest), shuffle=True, random_state=seed)


# --- calibration -------------------------------------------------------------------------------


def platt(decision: Vector, y: Vector) -> tuple[float, float]:
    """Platt's sigmoid p = 1 / (1 + exp(a·d + b)), fitted with his smoothed targets (as
    scikit-learn's ``_sigmoid_calibration``)."""
    scale = float(np.max(np.abs(decision))) if decision.size else 1.0
    scale = scale if scale >= 30 else 1.0
    f = decision / scale
    negatives = float(np.sum(y <= 0))
    positives = y.size - negatives
    target = np.where(y > 0, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))

    def loss(ab: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        z = ab[0] * f + ab[1]  # p = sigmoid(-z)
        p = 1.0 / (1.0 + np.exp(np.clip(z, -500, 500)))
        eps = 1e-12
        value = -np.sum(target * np.log(p + eps) + (1 - target) * np.log(1 - p + eps))
        g = target - p  # d loss / d z
        return float(value), np.array([float(g @ f), float(g.sum())])

    start = np.array([0.0, math.log((negatives + 1.0) / (positives + 1.0))])
    result = minimize(loss, start, method="L-BFGS-B", jac=True, options={"gtol": 1e-8})
    a, b = result.x
    return float(a) / scale, float(b)


def fit_calibrator(method: str, decision: Vector, y: Vector) -> dict[str, Any]:
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip").fit(decision, y)
        return {
            "method": "isotonic",
            "x": [float(v) for v in iso.X_thresholds_],
            "y": [float(v) for v in iso.y_thresholds_],
        }
    a, b = platt(decision, y)
    return {"method": "sigmoid", "a": a, "b": b}


def apply_calibrator(calibrator: dict[str, Any], decision: Vector) -> Vector:
    if calibrator["method"] == "isotonic":
        out: Vector = np.interp(decision, calibrator["x"], calibrator["y"])
        return out
    z = calibrator["a"] * decision + calibrator["b"]
    result: Vector = 1.0 / (1.0 + np.exp(np.clip(z, -500, 500)))
    return result


def choose_calibration(decision: Vector, y: Vector, seed: int = SEED) -> str:
    if y.size < ISOTONIC_MIN_ROWS:
        return "sigmoid"
    scores: dict[str, list[float]] = {"isotonic": [], "sigmoid": []}
    split = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed + 1)
    for train, test in split.split(decision.reshape(-1, 1), y):
        for method in scores:
            cal = fit_calibrator(method, decision[train], y[train])
            scores[method].append(metrics.brier(y[test], apply_calibrator(cal, decision[test])))
    return "isotonic" if np.mean(scores["isotonic"]) < np.mean(scores["sigmoid"]) else "sigmoid"


# --- fitting -----------------------------------------------------------------------------------


@dataclass
class Fitted:
    encoder: Encoder
    estimator: Any
    kind: str
    calibrator: dict[str, Any]
    background: dict[str, dict[str, list[Any]]]
    selection: dict[str, Any] = field(default_factory=dict)

    def artifact(self) -> dict[str, Any]:
        return export(self)

    def model(self) -> ScoringModel:
        return ScoringModel(json.loads(json.dumps(self.artifact())))


def fit(
    records: list[dict[str, Any]],
    labels: list[int] | Vector,
    kinds: dict[str, str] | None = None,
    *,
    seed: int = SEED,
) -> Fitted:
    """Preprocessing, model selection, calibration and the final fit on ``records``."""
    y = np.asarray(labels, dtype=np.float64)
    if y.size == 0:
        raise TrainingError("no rows to train on")
    split = folds_for(y, seed)
    encoder = fit_encoder(records, kinds)
    if encoder.width == 0:
        raise TrainingError("no usable feature: every column is empty, constant or an id")
    x = encoder.transform(records)
    with threadpool_limits(limits=1):
        found = candidates(y.size, seed)
        out_of_fold: dict[str, Vector] = {}
        auc: dict[str, float | None] = {}
        for name, estimator in found.items():
            out_of_fold[name] = cross_val_predict(
                estimator, x, y, cv=split, method="decision_function"
            )
            auc[name] = metrics.roc_auc(y, out_of_fold[name])
        lin, boost = auc["logistic"] or 0.0, auc["boosting"] or 0.0
        kind = "boosting" if boost > lin + PREFER_LINEAR_WITHIN else "logistic"
        method = choose_calibration(out_of_fold[kind], y, seed)
        calibrator = fit_calibrator(method, out_of_fold[kind], y)
        final = clone(found[kind]).fit(x, y)
    selection = {
        "cv_roc_auc": {k: None if v is None else round(v, 4) for k, v in auc.items()},
        "chosen": kind,
        "calibration": method,
        "folds": split.get_n_splits(),
        "rows": int(y.size),
    }
    return Fitted(encoder, final, kind, calibrator, background(encoder, x), selection)


def background(encoder: Encoder, x: Matrix, points: int = BACKGROUND_POINTS) -> dict[str, Any]:
    """Per feature, what its columns looked like in the training rows: each distinct pattern
    with its share when there are few (categories), else ``points`` evenly spaced quantiles
    (numbers), for the explanations (``ScoringModel.explain``)."""
    out: dict[str, Any] = {}
    for col in encoder.columns:
        part = x[:, col.start : col.start + col.width]
        patterns, found = np.unique(part, axis=0, return_counts=True)
        counts: Vector = found.astype(np.float64)
        if len(patterns) > points:
            order = np.lexsort(part.T[::-1])
            picks = order[np.linspace(0, len(order) - 1, points).round().astype(int)]
            patterns, counts = part[picks], np.ones(points)
        out[col.name] = {
            "rows": [[float(v) for v in row] for row in patterns],
            "weights": [float(c) for c in counts / counts.sum()],
        }
    return out


def _export_trees(estimator: HistGradientBoostingClassifier) -> dict[str, Any]:
    feature: list[int] = []
    threshold: list[float] = []
    left: list[int] = []
    right: list[int] = []
    missing_left: list[bool] = []
    leaf: list[bool] = []
    value: list[float] = []
    roots: list[int] = []
    depth = 0
    for predictors in estimator._predictors:
        (tree,) = predictors  # binary: one tree per iteration
        nodes = tree.nodes
        if np.any(nodes["is_categorical"]):
            raise TrainingError("categorical splits are not exported")
        offset = len(feature)
        roots.append(offset)
        for n in nodes:
            is_leaf = bool(n["is_leaf"])
            feature.append(int(n["feature_idx"]))
            threshold.append(float(n["num_threshold"]))
            left.append(offset + int(n["left"]) if not is_leaf else offset)
            right.append(offset + int(n["right"]) if not is_leaf else offset)
            missing_left.append(bool(n["missing_go_to_left"]))
            leaf.append(is_leaf)
            value.append(float(n["value"]))
            depth = max(depth, int(n["depth"]))
    return {
        "kind": "boosting",
        "baseline": float(np.ravel(estimator._baseline_prediction)[0]),
        "roots": roots,
        "depth": depth,
        "nodes": {
            "feature": feature,
            "threshold": threshold,
            "left": left,
            "right": right,
            "missing_left": missing_left,
            "leaf": leaf,
            "value": value,
        },
    }


def export(fitted: Fitted) -> dict[str, Any]:
    if fitted.kind == "logistic":
        estimator = {
            "kind": "logistic",
            "coef": [float(v) for v in fitted.estimator.coef_[0]],
            "intercept": float(fitted.estimator.intercept_[0]),
        }
    else:
        estimator = _export_trees(fitted.estimator)
    return {
        "encoder": fitted.encoder.as_json(),
        "estimator": estimator,
        "calibrator": fitted.calibrator,
        "background": fitted.background,
        "selection": fitted.selection,
    }


def sklearn_probability(fitted: Fitted, x: Matrix) -> Vector:
    """What scikit-learn itself predicts for ``x`` (tests compare the artifact with it)."""
    return apply_calibrator(fitted.calibrator, fitted.estimator.decision_function(x))


# --- train, then judge on held-out outcomes --------------------------------------------------


def importance_of(model: ScoringModel, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    effects: list[Effect] = model.importance(records, limit=200)
    return [{"feature": e.feature, "weight": round(e.effect, 4)} for e in effects[:15]]


def train_and_evaluate(job: dict[str, Any]) -> dict[str, Any]:
    """``job``: ``train`` and ``holdout`` ({records, labels}), ``kinds``, ``threshold``.
    The candidate's artifact, its metrics on the holdout and its probabilities there."""
    started = time.perf_counter()
    train, holdout = job["train"], job["holdout"]
    fitted = fit(train["records"], train["labels"], job.get("kinds"))
    artifact = fitted.artifact()
    model = ScoringModel(json.loads(json.dumps(artifact)))
    probabilities = model.predict_records(holdout["records"]) if holdout["records"] else None
    threshold = float(job.get("threshold", 0.5))
    result: dict[str, Any] = {
        "artifact": artifact,
        "selection": fitted.selection,
        "importance": importance_of(model, holdout["records"] or train["records"]),
    }
    if probabilities is not None:
        y = holdout["labels"]
        result["holdout"] = {
            "metrics": metrics.summary(y, probabilities, threshold),
            "reliability": metrics.reliability(y, probabilities),
            "probabilities": [float(p) for p in probabilities],
        }
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def main() -> int:
    """``python -m lovedcrm.scoring.training``: a job as JSON on stdin, the result as JSON on
    stdout (an ``error`` key and exit status 1 when the data cannot train a model)."""
    try:
        job = json.load(sys.stdin)
        result = train_and_evaluate(job)
    except (TrainingError, ValueError, KeyError) as exc:
        json.dump({"error": str(exc) or type(exc).__name__}, sys.stdout)
        return 1
    json.dump(result, sys.stdout, separators=(",", ":"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
