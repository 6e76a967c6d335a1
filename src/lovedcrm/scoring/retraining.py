"""Training an organization's model, and the promotion rule.

1. The outcomes (won and lost leads, ``features.outcomes``) are described as of the moment
   each closed, oldest first. Too few (``rules.MIN_WON``/``MIN_LOST``): nothing is trained.
2. The most recent ``HOLDOUT_SHARE`` of them are held out (extended back, up to
   ``HOLDOUT_MAX_SHARE``, until both outcomes appear ``HOLDOUT_MIN_EACH`` times); the
   candidate learns from the older ones in a child process (``python -m
   lovedcrm.scoring.training``: scikit-learn stays out of the web process).
3. :func:`promotion`: the candidate becomes active only if it beats the active model on the
   held-out recent outcomes — a lower Brier score than an active trained model, a higher
   ROC-AUC than the rules (which give no probability). Otherwise it is kept as history.
   The model is deployed as evaluated (never refitted on the holdout), so the next training's
   holdout, newer still, is unseen by the active model too: the comparison stays fair.
4. Every attempt writes a ``lead_scoring_models`` row: its metrics on the holdout, the
   reliability bins (the calibration chart), the selection, the comparison; a failure writes
   its error and leaves the active model as it was.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core import clock
from lovedcrm.scoring import features, metrics, rules, store
from lovedcrm.scoring.models import LeadScoringModel
from lovedcrm.scoring.service import custom_definitions, schedule_organization_rescore
from lovedcrm.web.i18n import N_

log = structlog.stdlib.get_logger("lovedcrm.scoring")

HOLDOUT_SHARE = 0.2
HOLDOUT_MAX_SHARE = 0.4
HOLDOUT_MIN_EACH = 5
TRAINING_TIMEOUT = 1500.0
# The child process that trains: this interpreter, running ``scoring.training``.
TRAINER: tuple[str, ...] = (sys.executable, "-m", "lovedcrm.scoring.training")
MODEL_NAMES = {"logistic": "Logistic regression", "boosting": "Gradient boosting"}


class TrainingFailed(Exception):
    """The child process could not train a model; the message says why."""


def holdout_start(labels: list[int]) -> int:
    """Index (in time order) where the held-out recent outcomes begin."""
    n = len(labels)
    cut = round(n * (1 - HOLDOUT_SHARE))
    floor = round(n * (1 - HOLDOUT_MAX_SHARE))
    while cut > floor:
        tail = labels[cut:]
        if sum(tail) >= HOLDOUT_MIN_EACH and len(tail) - sum(tail) >= HOLDOUT_MIN_EACH:
            break
        cut -= 1
    return cut


@dataclass(frozen=True)
class Decision:
    promote: bool
    criterion: str
    candidate: float | None
    active: float | None
    reason: str


def promotion(
    candidate: dict[str, Any], active: dict[str, Any] | None, active_kind: str | None
) -> Decision:
    """Whether a candidate with holdout ``candidate`` metrics replaces the active model
    (``active``: its metrics on the same outcomes; None when there is no model to beat)."""
    if active is None or active_kind is None:
        return Decision(True, "none", None, None, N_("no active model"))
    if active_kind == store.RULES:
        ours, theirs = candidate.get("roc_auc"), active.get("roc_auc")
        if ours is None:
            return Decision(False, "roc_auc", ours, theirs, N_("the holdout has one outcome only"))
        if theirs is None or ours > theirs:
            return Decision(True, "roc_auc", ours, theirs, N_("ranks recent outcomes better"))
        return Decision(False, "roc_auc", ours, theirs, N_("ranks recent outcomes no better"))
    ours, theirs = candidate.get("brier"), active.get("brier")
    if ours is not None and theirs is not None and ours < theirs:
        return Decision(True, "brier", ours, theirs, N_("better probabilities on recent outcomes"))
    return Decision(False, "brier", ours, theirs, N_("no better than the active model"))


async def run_training(job: dict[str, Any], limit: float = TRAINING_TIMEOUT) -> dict[str, Any]:
    """Train in a child process: ``job`` as JSON on its stdin, the result on its stdout."""
    proc = await asyncio.create_subprocess_exec(
        *TRAINER,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(limit):
            out, err = await proc.communicate(json.dumps(job).encode())
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise TrainingFailed(f"training took longer than {limit:g} s") from exc
    try:
        result: dict[str, Any] = json.loads(out) if out else {}
    except json.JSONDecodeError:
        result = {}
    if proc.returncode != 0 or "error" in result or "artifact" not in result:
        detail = result.get("error") or err.decode(errors="replace").strip()[-500:]
        raise TrainingFailed(detail or f"the training process exited with {proc.returncode}")
    return result


def _evaluate_active(
    scorer: store.Scorer, records: list[dict[str, Any]], labels: list[int]
) -> dict[str, Any]:
    scored = scorer.score_many(records)
    if scorer.model is not None:
        return metrics.summary(labels, [s.probability or 0.0 for s in scored])
    return {"roc_auc": metrics.roc_auc(labels, [s.score for s in scored])}


async def _failed(
    session: AsyncSession, organization_id: uuid.UUID, error: str, counts: dict[str, int]
) -> LeadScoringModel:
    row = LeadScoringModel(
        id=uuid.uuid4(),
        organization_id=organization_id,
        model_name="Training failed",
        model_version=await store.next_version(session, organization_id),
        model_type=store.ML,
        config_data={"status": "failed", "error": error[:2000], "outcomes": counts},
        scoring_factors={},
        is_active=False,
        training_completed_at=clock.now(),
    )
    session.add(row)
    await session.flush()
    log.warning("scoring training failed", organization_id=str(organization_id), error=error)
    return row


async def train_organization(
    session: AsyncSession, organization_id: uuid.UUID, secret: str
) -> dict[str, Any]:
    """Train, judge and maybe promote a model for the organization (in the caller's
    transaction, the job's); a summary of what happened."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
        {"key": f"lovedcrm:scoring:train:{organization_id}"},
    )
    found = await features.outcomes(session, organization_id)
    won = sum(1 for o in found if o.won)
    lost = len(found) - won
    counts = {"won": won, "lost": lost}
    if rules.needed(won, lost) != (0, 0):
        return {"skipped": "not enough outcomes", **counts}
    definitions = await custom_definitions(session, organization_id)
    targets = [features.Target(o.lead_id, o.cutoff) for o in found]
    by_id = await features.records_for(session, organization_id, targets, definitions, clock.now())
    ordered = [o for o in found if o.lead_id in by_id]
    records = [by_id[o.lead_id] for o in ordered]
    labels = [int(o.won) for o in ordered]
    cut = holdout_start(labels)
    job = {
        "train": {"records": records[:cut], "labels": labels[:cut]},
        "holdout": {"records": records[cut:], "labels": labels[cut:]},
        "kinds": features.feature_kinds(definitions),
    }
    counts = {**counts, "train": cut, "holdout": len(records) - cut}
    try:
        result = await run_training(job, TRAINING_TIMEOUT)
    except TrainingFailed as exc:
        row = await _failed(session, organization_id, str(exc), counts)
        return {"failed": str(exc), "model_id": str(row.id)}
    scorer = await store.scorer_for(session, organization_id, secret)
    holdout = result.get("holdout") or {}
    candidate = holdout.get("metrics") or {}
    active_kind = scorer.kind if scorer.row is not None else store.RULES
    active = _evaluate_active(scorer, records[cut:], labels[cut:])
    decision = promotion(candidate, active, active_kind)
    selection = result.get("selection") or {}
    row = LeadScoringModel(
        id=uuid.uuid4(),
        organization_id=organization_id,
        model_name=(
            f"{MODEL_NAMES.get(selection.get('chosen', ''), 'Model')}"
            f" ({selection.get('calibration', '?')})"
        ),
        model_version=await store.next_version(session, organization_id),
        model_type=store.ML,
        accuracy_score=candidate.get("accuracy"),
        precision_score=candidate.get("precision"),
        recall_score=candidate.get("recall"),
        is_active=False,
        training_completed_at=clock.now(),
        scoring_factors={"top": result.get("importance", [])},
        config_data={
            "status": "trained",
            "roc_auc": candidate.get("roc_auc"),
            "brier_score": candidate.get("brier"),
            "calibration_error": candidate.get("ece"),
            "metrics": candidate,
            "reliability": holdout.get("reliability", []),
            "selection": selection,
            "outcomes": counts,
            "trained_until": ordered[cut].cutoff.isoformat() if cut < len(ordered) else None,
            "seconds": result.get("seconds"),
            "comparison": {
                "against": str(scorer.row.id) if scorer.row is not None else None,
                "against_type": active_kind,
                "criterion": decision.criterion,
                "candidate": decision.candidate,
                "active": decision.active,
                "promoted": decision.promote,
                "reason": decision.reason,
            },
        },
    )
    session.add(row)
    await session.flush()
    await store.store_artifact(session, secret, row, result["artifact"])
    if decision.promote:
        await store.activate(session, row)
        await schedule_organization_rescore(session, organization_id, "model")
    return {
        "model_id": str(row.id),
        "promoted": decision.promote,
        "reason": decision.reason,
        "roc_auc": candidate.get("roc_auc"),
        **counts,
    }
