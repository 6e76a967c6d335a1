"""An organization's own sentiment model, trained on its corrections.

Words and word pairs (as ``sentiment.tokens`` normalizes them) plus the default analyser's
score, into a logistic regression (scikit-learn). It is judged on held-out corrections
(a stratified quarter) against the default analyser on the same rows and takes over only
when it is more accurate there; it is then refitted on every correction. The fitted model is
kept as compressed JSON numbers (``artifact``) and scored in pure Python: a message costs a
few dictionary look-ups.
"""

from __future__ import annotations

import itertools
import json
import math
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lovedcrm.assistant import sentiment

MIN_ROWS = 50  # corrections before a model is trained
MIN_CLASSES = 2
HELDOUT_SHARE = 0.25
LEXICON_FEATURE = "__lexicon_score__"


def features(text: str) -> list[str]:
    words = [w for w in sentiment.tokens(text) if w not in (".", ",", ";")]
    return [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]


@dataclass(frozen=True)
class OrgModel:
    """A fitted model: ``classes`` (labels), ``vocab`` term -> column, ``coef`` per class
    (the last column weighs the lexicon score), ``intercept`` per class."""

    classes: list[str]
    vocab: dict[str, int]
    coef: list[list[float]]
    intercept: list[float]

    def probabilities(self, text: str) -> dict[str, float]:
        cols = {self.vocab[f] for f in features(text) if f in self.vocab}
        lex = sentiment.polarity(text)
        logits = [
            b + sum(row[c] for c in cols) + row[-1] * lex
            for row, b in zip(self.coef, self.intercept, strict=True)
        ]
        if len(self.classes) == 2 and len(logits) == 1:
            logits = [0.0, logits[0]]
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        total = sum(exps)
        return {c: e / total for c, e in zip(self.classes, exps, strict=True)}

    def analyse(self, text: str | None) -> sentiment.Analysis:
        base = sentiment.analyse(text)
        if not text or not text.strip():
            return base
        probs = self.probabilities(text)
        label = max(probs, key=lambda c: probs[c])
        score = round(probs.get("positive", 0.0) - probs.get("negative", 0.0), 4)
        # The label is the model's; the score keeps its sign.
        if label == "positive":
            score = max(score, sentiment.NEUTRAL_BAND)
        elif label == "negative":
            score = min(score, -sentiment.NEUTRAL_BAND)
        else:
            score = max(-0.04, min(0.04, score))
        found, urgency = sentiment.signals(text, score)
        return sentiment.Analysis(label, score, urgency, found, source="org_model")

    def dumps(self) -> bytes:
        data = {
            "version": 1,
            "classes": self.classes,
            "vocab": self.vocab,
            "coef": [[round(v, 6) for v in row] for row in self.coef],
            "intercept": [round(v, 6) for v in self.intercept],
        }
        return zlib.compress(json.dumps(data, separators=(",", ":")).encode())

    @classmethod
    def loads(cls, blob: bytes) -> OrgModel:
        data: dict[str, Any] = json.loads(zlib.decompress(blob))
        return cls(
            classes=[str(c) for c in data["classes"]],
            vocab={str(k): int(v) for k, v in data["vocab"].items()},
            coef=[[float(v) for v in row] for row in data["coef"]],
            intercept=[float(v) for v in data["intercept"]],
        )


def fit(texts: Sequence[str], labels: Sequence[str]) -> OrgModel:
    """Fit on these rows (at least two labels)."""
    from scipy.sparse import csr_matrix, hstack  # heavy: only where a model is trained
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = CountVectorizer(analyzer=features, binary=True, min_df=1)
    x_words = vectorizer.fit_transform(texts)
    lex = csr_matrix([[sentiment.polarity(t)] for t in texts])
    x = hstack([x_words, lex]).tocsr()
    model = LogisticRegression(C=2.0, max_iter=2000, class_weight="balanced")
    model.fit(x, list(labels))
    return OrgModel(
        classes=[str(c) for c in model.classes_],
        vocab={str(k): int(v) for k, v in vectorizer.vocabulary_.items()},
        coef=[[float(v) for v in row] for row in model.coef_],
        intercept=[float(v) for v in model.intercept_],
    )


@dataclass(frozen=True)
class Trained:
    model: OrgModel
    active: bool
    trained_rows: int
    heldout_rows: int
    heldout_accuracy: float
    default_heldout_accuracy: float
    classes: dict[str, int]


def enough(labels: Sequence[str]) -> bool:
    return len(labels) >= MIN_ROWS and len(set(labels)) >= MIN_CLASSES


def train_and_judge(texts: Sequence[str], labels: Sequence[str], *, seed: int = 0) -> Trained:
    """Hold out a stratified quarter, compare the fitted model with the default analyser on
    it, then refit on every row. ``active`` when the model was strictly more accurate."""
    from sklearn.model_selection import train_test_split

    counts = Counter(labels)
    held = max(len(counts), round(len(labels) * HELDOUT_SHARE))
    can_stratify = min(counts.values()) >= 2 and len(labels) - held >= len(counts)
    x_fit, x_out, y_fit, y_out = train_test_split(
        list(texts),
        list(labels),
        test_size=held,
        random_state=seed,
        stratify=list(labels) if can_stratify else None,
    )
    if len(set(y_fit)) < MIN_CLASSES:
        x_fit, y_fit = list(texts), list(labels)
    candidate = fit(x_fit, y_fit)
    model_hits = sum(candidate.analyse(t).label == y for t, y in zip(x_out, y_out, strict=True))
    default_hits = sum(sentiment.analyse(t).label == y for t, y in zip(x_out, y_out, strict=True))
    n = len(y_out)
    final = fit(list(texts), list(labels))
    return Trained(
        model=final,
        active=model_hits > default_hits,
        trained_rows=len(labels),
        heldout_rows=n,
        heldout_accuracy=round(model_hits / n, 4) if n else 0.0,
        default_heldout_accuracy=round(default_hits / n, 4) if n else 0.0,
        classes=dict(counts),
    )
