"""Board JSON shapes (cards, columns, moves)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import ConfigDict, Field

from lovedcrm.core.schemas import Out, StrictIn
from lovedcrm.pipeline.schemas import StageOut


class CardOut(Out):
    id: uuid.UUID
    stage_id: uuid.UUID
    full_name: str
    company: str | None
    estimated_value: Decimal | None
    lead_score: int | None
    source: str | None
    status: str | None
    assigned_to: uuid.UUID | None
    assignee_name: str | None
    assignee_initials: str | None = Field(examples=["AS"])
    last_activity_at: datetime | None
    last_activity_age_seconds: int | None = Field(
        description="Seconds since the last activity (null: none yet)", examples=[3600]
    )
    board_position: float
    version: int = Field(description="Send back as expected_version when moving the card.")


class ColumnOut(Out):
    stage: StageOut
    lead_count: int = Field(description="Every matching lead in the stage, not just the cards")
    total_value: Decimal = Field(description="Sum of their estimated_value")
    cards: list[CardOut]
    next_cursor: str | None = Field(
        description="Pass as `after` to /api/v1/board/stages/{stage_id}/cards for more."
    )


class BoardOut(Out):
    columns: list[ColumnOut]


class CardPageOut(Out):
    items: list[CardOut]
    next_cursor: str | None


class MoveIn(StrictIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "stage_id": "6f1c1f9e-6d1a-4a53-9d1b-2a4f2b7c9e10",
                    "after_id": "0b8f7a3c-2a5e-4c1d-9e6f-1a2b3c4d5e6f",
                    "expected_version": 3,
                }
            ]
        }
    )

    stage_id: uuid.UUID = Field(description="The column the card goes to (may be its own).")
    before_id: uuid.UUID | None = Field(
        default=None, description="The card that will come right after it."
    )
    after_id: uuid.UUID | None = Field(
        default=None, description="The card that will come right before it (neither: top)."
    )
    expected_version: int = Field(ge=1, description="The card's version as it was shown.")
