"""The learning part, without a database: the encoder, the metrics, calibration on data whose
true probability is known, the artifact (equal to scikit-learn's own predictions, and to
``CalibratedClassifierCV``'s), its integrity check, the promotion rule."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from lovedcrm.scoring import artifacts, metrics, retraining, store, training
from lovedcrm.scoring.artifacts import ArtifactRefused
from lovedcrm.scoring.encoding import NUMBER, fit_encoder


def synthetic(n: int, seed: int) -> tuple[list[dict[str, object]], np.ndarray, np.ndarray]:
    """Leads whose win probability is known: a logistic function of a number, a category and
    a flag, with gaps and placeholders the encoder must treat as missing."""
    rng = np.random.default_rng(seed)
    visits = rng.gamma(2.0, 3.0, n)
    channel = rng.choice(["referral", "ads", "organic", "event"], n, p=[0.2, 0.4, 0.3, 0.1])
    flag = rng.random(n) < 0.3
    effect = {"referral": 1.2, "ads": -0.8, "organic": 0.0, "event": 0.5}
    logit = -1.0 + 0.9 * np.log1p(visits) - 0.5 + np.array([effect[c] for c in channel])
    logit += np.where(flag, 0.7, 0.0)
    truth = 1.0 / (1.0 + np.exp(-logit))
    y = (rng.random(n) < truth).astype(float)
    records: list[dict[str, object]] = []
    for i in range(n):
        gap = rng.random() < 0.05
        records.append(
            {
                "custom:visits": "" if gap else f"{visits[i]:.2f}",
                "custom:channel": "Select" if rng.random() < 0.03 else channel[i].upper(),
                "custom:flag": "Yes" if flag[i] else "No",
                "custom:id": str(uuid.uuid4()),
            }
        )
    return records, y, truth


@pytest.fixture(scope="module")
def data() -> tuple[list[dict[str, object]], np.ndarray, np.ndarray]:
    return synthetic(6000, seed=7)


@pytest.fixture(scope="module")
def fitted(data: tuple[list[dict[str, object]], np.ndarray, np.ndarray]) -> training.Fitted:
    records, y, _ = data
    return training.fit(records[:3000], y[:3000])


def test_the_encoder_reads_placeholders_as_missing_and_drops_identifiers() -> None:
    records = [{"n": "1,5", "c": "Select", "id": str(i), "const": "x"} for i in range(60)] + [
        {"n": "N/A", "c": "Big", "id": "999", "const": "x"}
    ]
    encoder = fit_encoder(records)
    assert encoder.dropped == {"id": "identifier", "const": "constant"}
    n = encoder.column("n")
    assert n is not None and n.kind == NUMBER and n.missing_column and n.median == 1.5
    c = encoder.column("c")
    assert c is not None and c.categories == [] and c.missing_column
    x = encoder.transform([{"n": None, "c": "unseen"}])
    assert x.shape == (1, encoder.width)
    assert x[0, n.start + 1] == 1.0  # the missing indicator


def test_the_numpy_metrics_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.3).astype(float)
    p = np.clip(0.3 + 0.4 * (y - 0.3) + rng.normal(0, 0.2, 500), 0, 1)
    p[:50] = 0.5  # ties
    assert metrics.roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert metrics.pr_auc(y, p) == pytest.approx(average_precision_score(y, p))
    assert metrics.brier(y, p) == pytest.approx(brier_score_loss(y, p))
    assert metrics.roc_auc(np.ones(5), np.arange(5)) is None


def test_calibrated_on_data_with_a_known_probability(
    data: tuple[list[dict[str, object]], np.ndarray, np.ndarray], fitted: training.Fitted
) -> None:
    records, y, truth = data
    model = fitted.model()
    predicted = model.predict_records(records[3000:])
    # The probabilities mean what they say: close to the true ones, lead by lead and by bin.
    assert float(np.mean(np.abs(predicted - truth[3000:]))) < 0.05
    assert metrics.ece(y[3000:], predicted) < 0.04
    assert metrics.roc_auc(y[3000:], predicted) > metrics.roc_auc(y[3000:], truth[3000:]) - 0.02
    assert fitted.encoder.dropped.get("custom:id") == "identifier"


def test_the_artifact_predicts_what_scikit_learn_predicts(
    data: tuple[list[dict[str, object]], np.ndarray, np.ndarray],
) -> None:
    records, y, _ = data
    for forced in ("logistic", "boosting"):
        fitted = training.fit(records[:2000], y[:2000])
        if fitted.kind != forced:  # make both kinds go through the export
            estimator = training.candidates(2000)[forced]
            x = fitted.encoder.transform(records[:2000])
            fitted.estimator = estimator.fit(x, y[:2000])
            fitted.kind = forced
        x_test = fitted.encoder.transform(records[3000:4000])
        ours = fitted.model().probability(x_test)
        assert np.allclose(ours, training.sklearn_probability(fitted, x_test), atol=1e-9)


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibration_is_calibrated_classifier_cv_without_ensemble(
    data: tuple[list[dict[str, object]], np.ndarray, np.ndarray], method: str
) -> None:
    records, y, _ = data
    encoder = fit_encoder(records[:2000])
    x, labels = encoder.transform(records[:2000]), y[:2000]
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    estimator = training.candidates(2000)["logistic"]
    reference = CalibratedClassifierCV(estimator, method=method, cv=folds, ensemble=False)
    reference.fit(x, labels)
    oof = training.cross_val_predict(estimator, x, labels, cv=folds, method="decision_function")
    calibrator = training.fit_calibrator(method, oof, labels)
    final = training.clone(estimator).fit(x, labels)
    x_test = encoder.transform(records[4000:4500])
    ours = training.apply_calibrator(calibrator, final.decision_function(x_test))
    assert np.allclose(ours, reference.predict_proba(x_test)[:, 1], atol=1e-6)


def test_a_tampered_or_foreign_artifact_is_refused(fitted: training.Fitted) -> None:
    secret = "s" * 40
    org, other_org, model_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    blob, signed = artifacts.seal(secret, org, model_id, fitted.artifact())
    model = artifacts.open_artifact(secret, org, model_id, blob, signed)
    assert model.kind == fitted.kind
    tampered = bytearray(blob)
    tampered[len(tampered) // 2] ^= 0x01
    refusals = {
        "a changed byte": (secret, org, model_id, bytes(tampered), signed),
        "another organization": (secret, other_org, model_id, blob, signed),
        "another model row": (secret, org, uuid.uuid4(), blob, signed),
        "another secret": ("t" * 40, org, model_id, blob, signed),
        "no signature": (secret, org, model_id, blob, None),
    }
    for case, args in refusals.items():
        with pytest.raises(ArtifactRefused):
            artifacts.open_artifact(*args)
            pytest.fail(case)
    # Signed by org A for org A, then stored under org B with B's own signature of the bytes
    # claims B; the payload still names A and is refused.
    forged = artifacts.signature(secret, other_org, model_id, blob)
    with pytest.raises(ArtifactRefused):
        artifacts.open_artifact(secret, other_org, model_id, blob, forged)


def test_explanations_name_the_features_that_move_the_score(fitted: training.Fitted) -> None:
    model = fitted.model()
    strong = {"custom:visits": "40", "custom:channel": "referral", "custom:flag": "Yes"}
    weak = {"custom:visits": "0", "custom:channel": "ads", "custom:flag": "No"}
    p_strong, up = model.explain(strong)
    p_weak, down = model.explain(weak)
    assert p_strong > 0.7 > 0.3 > p_weak
    assert {e.feature for e in up[:3]} == {"custom:visits", "custom:channel", "custom:flag"}
    assert all(e.effect > 0 for e in up[:3])
    assert all(e.effect < 0 for e in down[:3])


def test_the_promotion_rule() -> None:
    rules_kind, ml = store.RULES, store.ML
    # Nothing to beat: promoted.
    assert retraining.promotion({"roc_auc": 0.6, "brier": 0.2}, None, None).promote
    # Against the rules: ranking decides (the rules give no probability).
    assert retraining.promotion({"roc_auc": 0.8}, {"roc_auc": 0.7}, rules_kind).promote
    assert not retraining.promotion({"roc_auc": 0.7}, {"roc_auc": 0.7}, rules_kind).promote
    assert not retraining.promotion({"roc_auc": None}, {"roc_auc": 0.5}, rules_kind).promote
    # Against a trained model: the Brier score on the same recent outcomes decides.
    assert retraining.promotion({"brier": 0.15}, {"brier": 0.16}, ml).promote
    kept = retraining.promotion({"brier": 0.16, "roc_auc": 0.9}, {"brier": 0.16}, ml)
    assert not kept.promote and kept.reason == "no better than the active model"


def test_the_holdout_is_the_most_recent_outcomes_with_both_kinds() -> None:
    assert retraining.holdout_start([0, 1] * 50) == 80
    # The last 20 % are all won: the holdout reaches back until 5 lost are in it.
    labels = [0, 1] * 30 + [1] * 20
    cut = retraining.holdout_start(labels)
    tail = labels[cut:]
    assert len(tail) - sum(tail) >= 5 and cut >= 48
