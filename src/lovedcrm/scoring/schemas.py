"""Scoring's JSON shapes: a lead's score with its reasons, the models, the rules."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lovedcrm.core.schemas import StrictIn
from lovedcrm.scoring import rules

Points = Annotated[int, Field(ge=-1000, le=1000)]


class FactorOut(BaseModel):
    feature: str = Field(examples=["reply_minutes"])
    direction: Literal["up", "down"]
    weight: float = Field(
        description="Effect on the score: log-odds under a trained model, points under rules"
    )
    text: str = Field(examples=["Respondeu em 5 min"])


class OutcomesOut(BaseModel):
    won: int
    lost: int
    won_needed: int = Field(description=f"More won leads needed before training ({rules.MIN_WON})")
    lost_needed: int = Field(
        description=f"More lost leads needed before training ({rules.MIN_LOST})"
    )


class ModelRefOut(BaseModel):
    id: uuid.UUID | None
    model_type: Literal["rules_based", "ml_model"]
    model_version: str | None
    calibrated: bool = Field(description="True when the probability is a calibrated estimate")


class LeadScoreOut(BaseModel):
    lead_id: uuid.UUID
    score: int = Field(ge=0, le=100, description="0–100, as of now")
    probability: float | None = Field(
        description="Calibrated win probability (0–1); null while the rules score the leads"
    )
    stored_score: int | None = Field(description="The score last written on the lead")
    score_last_calculated_at: datetime | None
    model: ModelRefOut
    factors_up: list[FactorOut]
    factors_down: list[FactorOut]
    outcomes: OutcomesOut


class ModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: uuid.UUID
    model_name: str
    model_version: str
    model_type: str
    is_active: bool
    status: str = Field(examples=["trained"], description="rules, trained or failed")
    accuracy_score: float | None
    precision_score: float | None
    recall_score: float | None
    roc_auc: float | None
    brier_score: float | None
    calibration_error: float | None
    metrics: dict[str, Any] = Field(description="Every metric on the held-out recent outcomes")
    comparison: dict[str, Any] | None = Field(description="How it fared against the active one")
    top_factors: list[dict[str, Any]]
    error: str | None
    training_completed_at: datetime | None
    created_at: datetime | None


class ModelsOut(BaseModel):
    items: list[ModelOut]
    active_model_id: uuid.UUID | None
    active_model_type: Literal["rules_based", "ml_model"]
    outcomes: OutcomesOut
    training_queued: bool
    artifact_refused: str | None = Field(
        description="Why the active model's artifact was refused (the rules score meanwhile)"
    )


class RetrainOut(BaseModel):
    job_id: uuid.UUID | None
    status: Literal["queued", "already_queued"]


class SourcePoints(StrictIn):
    source: str = Field(min_length=1, max_length=100, examples=["referral"])
    points: Points


class ValueBand(StrictIn):
    min_value: int = Field(ge=0, le=10**12, examples=[10000])
    points: Points


class RecencyBand(StrictIn):
    max_days: int = Field(ge=0, le=3650, examples=[7])
    points: Points


class RulesIn(StrictIn):
    """Every rule of the rules model; a rule left out takes its default."""

    base: int = Field(default=rules.DEFAULT_RULES["base"], ge=0, le=100)
    sources: list[SourcePoints] | None = Field(default=None, max_length=100)
    value_bands: list[ValueBand] | None = Field(default=None, max_length=20)
    recency: list[RecencyBand] | None = Field(default=None, max_length=20)
    stale_points: Points = rules.DEFAULT_RULES["stale_points"]
    per_message_in: Points = rules.DEFAULT_RULES["per_message_in"]
    per_activity: Points = rules.DEFAULT_RULES["per_activity"]
    engagement_max: Points = rules.DEFAULT_RULES["engagement_max"]
    fast_reply_minutes: int = Field(
        default=rules.DEFAULT_RULES["fast_reply_minutes"], ge=0, le=10080
    )
    fast_reply_points: Points = rules.DEFAULT_RULES["fast_reply_points"]
    company_points: Points = rules.DEFAULT_RULES["company_points"]
    corporate_email_points: Points = rules.DEFAULT_RULES["corporate_email_points"]

    def as_rules(self) -> dict[str, Any]:
        out: dict[str, Any] = self.model_dump(exclude={"sources", "value_bands", "recency"})
        if self.sources is not None:
            out["sources"] = {s.source.strip().lower(): s.points for s in self.sources}
        if self.value_bands is not None:
            out["value_bands"] = [[b.min_value, b.points] for b in self.value_bands]
        if self.recency is not None:
            out["recency"] = [[b.max_days, b.points] for b in self.recency]
        return out


class RulesOut(BaseModel):
    base: int
    sources: list[dict[str, Any]]
    value_bands: list[dict[str, int]]
    recency: list[dict[str, int]]
    stale_points: int
    per_message_in: int
    per_activity: int
    engagement_max: int
    fast_reply_minutes: int
    fast_reply_points: int
    company_points: int
    corporate_email_points: int
    min_won: int = rules.MIN_WON
    min_lost: int = rules.MIN_LOST

    @classmethod
    def of(cls, data: dict[str, Any]) -> RulesOut:
        return cls(
            **{
                **data,
                "sources": [{"source": k, "points": v} for k, v in data["sources"].items()],
                "value_bands": [{"min_value": a, "points": b} for a, b in data["value_bands"]],
                "recency": [{"max_days": a, "points": b} for a, b in data["recency"]],
            }
        )


def model_out(row: Any) -> ModelOut:
    config = dict(row.config_data or {})
    return ModelOut(
        id=row.id,
        model_name=row.model_name,
        model_version=row.model_version,
        model_type=row.model_type,
        is_active=bool(row.is_active),
        status=str(config.get("status") or "trained"),
        accuracy_score=row.accuracy_score,
        precision_score=row.precision_score,
        recall_score=row.recall_score,
        roc_auc=config.get("roc_auc"),
        brier_score=config.get("brier_score"),
        calibration_error=config.get("calibration_error"),
        metrics=dict(config.get("metrics") or {}),
        comparison=config.get("comparison"),
        top_factors=list((row.scoring_factors or {}).get("top") or []),
        error=config.get("error"),
        training_completed_at=row.training_completed_at,
        created_at=row.created_at,
    )
