"""A trained model as data: JSON numbers, never pickle, signed per organization.

The artifact holds the encoder's recipe (``encoding.Encoder``), the estimator's parameters (a
logistic regression's coefficients, or a gradient-boosting model's trees as flat node arrays),
the calibrator (isotonic breakpoints, or Platt's two numbers) and, per feature, a summary of
its training values (the background of explanations). :class:`ScoringModel` predicts from
them with numpy alone: the web process and the jobs never load scikit-learn or unpickle
anything.

Integrity: the stored bytes (zlib-compressed canonical JSON) carry an HMAC-SHA256 made with a
key derived from the application's ``secret_key`` and the organization's id, over the model
row's id and the bytes. :func:`open_artifact` checks it *before* decompressing or parsing: a
changed byte, an artifact copied from another organization or from another model row, or a
signature made with another secret is refused (:class:`ArtifactRefused`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lovedcrm.scoring.encoding import Encoder, Matrix

FORMAT = "lovedcrm-scoring-model/1"
_KEY_LABEL = b"lovedcrm:scoring-artifact:v1:"


class ArtifactRefused(Exception):
    """The artifact's signature does not match: tampered, foreign, or made with another key."""


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
    return out


@dataclass(frozen=True)
class Effect:
    feature: str
    effect: float  # in log-odds of the uncalibrated model: > 0 pushes the win chance up


class ScoringModel:
    """A calibrated classifier, predicting from plain arrays."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.encoder = Encoder.from_json(data["encoder"])
        est = data["estimator"]
        self.kind: str = est["kind"]
        if self.kind == "logistic":
            self.coef = np.asarray(est["coef"], dtype=np.float64)
            self.intercept = float(est["intercept"])
        elif self.kind == "boosting":
            nodes = est["nodes"]
            self.baseline = float(est["baseline"])
            self.feature = np.asarray(nodes["feature"], dtype=np.intp)
            self.threshold = np.asarray(nodes["threshold"], dtype=np.float64)
            self.left = np.asarray(nodes["left"], dtype=np.intp)
            self.right = np.asarray(nodes["right"], dtype=np.intp)
            self.missing_left = np.asarray(nodes["missing_left"], dtype=bool)
            self.leaf = np.asarray(nodes["leaf"], dtype=bool)
            self.value = np.asarray(nodes["value"], dtype=np.float64)
            self.roots = np.asarray(est["roots"], dtype=np.intp)
            self.depth = int(est["depth"])
        else:
            raise ArtifactRefused(f"unknown estimator kind {self.kind!r}")
        cal = data["calibrator"]
        self.calibration: str = cal["method"]
        if self.calibration == "isotonic":
            self.cal_x = np.asarray(cal["x"], dtype=np.float64)
            self.cal_y = np.asarray(cal["y"], dtype=np.float64)
        else:
            self.cal_a, self.cal_b = float(cal["a"]), float(cal["b"])
        # feature -> (patterns of its columns, their weights): what the feature's columns
        # looked like in the training data (every category; quantiles of a number).
        self.background = {
            name: (
                np.asarray(b["rows"], dtype=np.float64),
                np.asarray(b["weights"], dtype=np.float64),
            )
            for name, b in data["background"].items()
        }

    # -- prediction ------------------------------------------------------------------------

    def decision(self, x: Matrix) -> NDArray[np.float64]:
        """The uncalibrated log-odds of each row."""
        if self.kind == "logistic":
            out: NDArray[np.float64] = x @ self.coef + self.intercept
            return out
        rows = x.shape[0]
        node = np.broadcast_to(self.roots, (rows, self.roots.size)).copy()
        row_index = np.arange(rows)[:, None]
        for _ in range(self.depth + 1):
            at_leaf = self.leaf[node]
            if at_leaf.all():
                break
            values = x[row_index, self.feature[node]]
            go_left = np.where(
                np.isnan(values), self.missing_left[node], values <= self.threshold[node]
            )
            following = np.where(go_left, self.left[node], self.right[node])
            node = np.where(at_leaf, node, following)
        raw: NDArray[np.float64] = self.baseline + self.value[node].sum(axis=1)
        return raw

    def calibrate(self, decision: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.calibration == "isotonic":
            out: NDArray[np.float64] = np.interp(decision, self.cal_x, self.cal_y)
        else:
            out = _sigmoid(-(self.cal_a * decision + self.cal_b))
        return np.clip(out, 0.0, 1.0)

    def probability(self, x: Matrix) -> NDArray[np.float64]:
        return self.calibrate(self.decision(x))

    def predict_records(self, records: list[dict[str, Any]]) -> NDArray[np.float64]:
        return self.probability(self.encoder.transform(records))

    # -- explanation -----------------------------------------------------------------------

    def explain(self, record: dict[str, Any]) -> tuple[float, list[Effect]]:
        """The lead's probability and each feature's effect, largest first: the lead's
        log-odds minus their expectation when that feature takes the values it had in the
        training data (the other features kept as the lead's). For a linear model this is
        the coefficient times the distance from the training mean; for trees it is the same
        idea, measured on the model itself."""
        x = self.encoder.transform([record])
        parts: list[NDArray[np.float64]] = [x]
        spans: list[tuple[str, int, int, NDArray[np.float64]]] = []
        at = 1
        for col in self.encoder.columns:
            rows, weights = self.background.get(col.name, (np.empty((0, 0)), np.empty(0)))
            if not len(weights):
                continue
            batch = np.repeat(x, len(weights), axis=0)
            batch[:, col.start : col.start + col.width] = rows
            parts.append(batch)
            spans.append((col.name, at, at + len(weights), weights))
            at += len(weights)
        decision = self.decision(np.vstack(parts))
        probability = float(self.calibrate(decision[:1])[0])
        effects = [
            Effect(name, float(decision[0] - np.dot(decision[start:end], weights)))
            for name, start, end, weights in spans
        ]
        effects.sort(key=lambda e: abs(e.effect), reverse=True)
        return probability, effects

    def importance(self, records: list[dict[str, Any]], limit: int = 200) -> list[Effect]:
        """Global importance: the mean absolute effect of each feature over ``records`` (a
        sample), signed by the mean effect."""
        totals: dict[str, list[float]] = {}
        for record in records[:limit]:
            _, effects = self.explain(record)
            for e in effects:
                totals.setdefault(e.feature, []).append(e.effect)
        out = [
            Effect(name, float(np.mean(np.abs(v))) * (1 if np.mean(v) >= 0 else -1))
            for name, v in totals.items()
        ]
        out.sort(key=lambda e: abs(e.effect), reverse=True)
        return out


# --- sealing ---------------------------------------------------------------------------------


def _key(secret: str, organization_id: uuid.UUID) -> bytes:
    return hmac.new(secret.encode(), _KEY_LABEL + organization_id.bytes, hashlib.sha256).digest()


def signature(secret: str, organization_id: uuid.UUID, model_id: uuid.UUID, blob: bytes) -> str:
    return hmac.new(
        _key(secret, organization_id), model_id.bytes + blob, hashlib.sha256
    ).hexdigest()


def seal(
    secret: str, organization_id: uuid.UUID, model_id: uuid.UUID, artifact: dict[str, Any]
) -> tuple[bytes, str]:
    """The bytes to store and their signature."""
    body = {**artifact, "format": FORMAT, "organization_id": str(organization_id)}
    blob = zlib.compress(json.dumps(body, separators=(",", ":"), sort_keys=True).encode(), 6)
    return blob, signature(secret, organization_id, model_id, blob)


def open_artifact(
    secret: str,
    organization_id: uuid.UUID,
    model_id: uuid.UUID,
    blob: bytes | None,
    signed: str | None,
) -> ScoringModel:
    """Verify, then parse. Raises :class:`ArtifactRefused` when the signature is missing or
    wrong — nothing of the bytes is read before the check."""
    if not blob or not signed:
        raise ArtifactRefused("the model has no signed artifact")
    expected = signature(secret, organization_id, model_id, bytes(blob))
    if not hmac.compare_digest(expected, signed):
        raise ArtifactRefused("the model artifact's signature does not match")
    data = json.loads(zlib.decompress(bytes(blob)))
    if data.get("format") != FORMAT or data.get("organization_id") != str(organization_id):
        raise ArtifactRefused("the model artifact is not this organization's")
    return ScoringModel(data)


# --- a small cache of verified models ---------------------------------------------------------

_CACHE: OrderedDict[tuple[uuid.UUID, uuid.UUID, str], ScoringModel] = OrderedDict()
_CACHE_SIZE = 32


def cached(key: tuple[uuid.UUID, uuid.UUID, str]) -> ScoringModel | None:
    """A model verified earlier under (organization, model id, signature)."""
    model = _CACHE.get(key)
    if model is not None:
        _CACHE.move_to_end(key)
    return model


def remember(key: tuple[uuid.UUID, uuid.UUID, str], model: ScoringModel) -> None:
    _CACHE[key] = model
    _CACHE.move_to_end(key)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
