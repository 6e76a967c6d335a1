"""The assistant's JSON shapes (sentiment, issue 15 part 1)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Label = Literal["negative", "neutral", "positive"]
Signal = Literal["buying_intent", "complaint", "urgent", "wants_human"]


class SentimentOut(BaseModel):
    message_id: uuid.UUID
    label: Label | None = Field(description="null: not analysed (no text, or before 0013).")
    score: float | None = Field(description="-1 (negative) .. 1 (positive).")
    urgency: int | None = Field(description="0 .. 100; 50 and above is urgent.")
    signals: list[Signal]
    source: str | None = Field(description="lexicon (offline analyser) or org_model.")
    corrected: bool = Field(description="A member set the label.")


class CorrectionIn(BaseModel):
    label: Label


class AnalyseIn(BaseModel):
    text: str = Field(min_length=1, max_length=4096)


class AnalysisOut(BaseModel):
    label: Label
    score: float
    urgency: int
    signals: list[Signal]
    source: str


class SentimentModelOut(BaseModel):
    active: bool
    trained_rows: int
    heldout_rows: int
    heldout_accuracy: float | None
    default_heldout_accuracy: float | None
    trained_at: datetime | None


class ModelStatusOut(BaseModel):
    corrections: int
    corrections_by_label: dict[str, int]
    needed: int = Field(description="Corrections (of two labels or more) before a model trains.")
    model: SentimentModelOut | None
    in_use: Literal["lexicon", "org_model"]
