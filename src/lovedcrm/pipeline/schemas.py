from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import ConfigDict, Field

from lovedcrm.core.schemas import Out, StrictIn

StageType = Literal["lead", "contact", "proposal", "negotiation", "closed", "custom"]
COLOR_PATTERN = r"^#[0-9a-fA-F]{6}$"


class StageIn(StrictIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "Demo", "color": "#0ea5e9", "stage_type": "custom"}]
        }
    )

    name: str = Field(min_length=1, max_length=100, examples=["Demo"])
    color: str = Field(default="#6366f1", pattern=COLOR_PATTERN, examples=["#0ea5e9"])
    stage_type: StageType = Field(default="custom", examples=["custom"])


class StageUpdateIn(StrictIn):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "Demonstração", "color": "#22c55e"}]}
    )

    name: str | None = Field(default=None, min_length=1, max_length=100)
    color: str | None = Field(default=None, pattern=COLOR_PATTERN)
    stage_type: StageType | None = None
    is_active: bool | None = None


class StageReorderIn(StrictIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "stage_ids": [
                        "6f1c1f9e-6d1a-4a53-9d1b-2a4f2b7c9e10",
                        "0b8f7a3c-2a5e-4c1d-9e6f-1a2b3c4d5e6f",
                    ]
                }
            ]
        }
    )

    stage_ids: list[uuid.UUID] = Field(
        min_length=1,
        max_length=100,
        description="Every stage of the organization, in the new order.",
    )


class StageOut(Out):
    id: uuid.UUID
    name: str
    stage_order: int
    color: str | None
    is_active: bool | None
    stage_type: str | None
    lead_count: int = Field(default=0, examples=[12])
    total_value: Decimal = Field(
        default=Decimal("0"), description="Sum of the leads' estimated_value", examples=["4500.00"]
    )
    created_at: datetime | None
    updated_at: datetime | None
