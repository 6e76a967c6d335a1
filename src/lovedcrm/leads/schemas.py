from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import EmailStr, Field

from lovedcrm.core.schemas import Out, StrictIn

LeadStatus = Literal["active", "inactive", "converted", "lost"]


class LeadIn(StrictIn):
    full_name: str = Field(min_length=1, max_length=255, examples=["João da Silva"])
    email: EmailStr | None = Field(default=None, max_length=255)
    phone: str | None = Field(default=None, max_length=50, examples=["(11) 98765-4321"])
    company: str | None = Field(default=None, max_length=255)
    job_title: str | None = Field(default=None, max_length=255)
    stage_id: uuid.UUID | None = None
    assigned_to: uuid.UUID | None = None
    source: str | None = Field(default=None, max_length=100, examples=["whatsapp"])
    estimated_value: Decimal | None = Field(default=None, ge=0, max_digits=10, decimal_places=2)
    probability_percentage: int | None = Field(default=None, ge=0, le=100)
    custom_fields: dict[str, Any] | None = None


class LeadUpdateIn(StrictIn):
    full_name: str | None = Field(default=None, min_length=1, max_length=255)
    email: EmailStr | None = Field(default=None, max_length=255)
    phone: str | None = Field(default=None, max_length=50)
    company: str | None = Field(default=None, max_length=255)
    job_title: str | None = Field(default=None, max_length=255)
    stage_id: uuid.UUID | None = None
    assigned_to: uuid.UUID | None = None
    source: str | None = Field(default=None, max_length=100)
    estimated_value: Decimal | None = Field(default=None, ge=0, max_digits=10, decimal_places=2)
    probability_percentage: int | None = Field(default=None, ge=0, le=100)
    custom_fields: dict[str, Any] | None = None
    status: LeadStatus | None = None
    lost_reason: str | None = Field(default=None, max_length=255)


class LeadOut(Out):
    id: uuid.UUID
    organization_id: uuid.UUID
    full_name: str
    email: str | None
    phone: str | None
    company: str | None
    job_title: str | None
    stage_id: uuid.UUID
    assigned_to: uuid.UUID | None
    source: str | None
    lead_score: int | None
    estimated_value: Decimal | None
    probability_percentage: int | None
    custom_fields: dict[str, Any] | None
    status: str | None
    converted_at: datetime | None
    lost_reason: str | None
    created_at: datetime | None
    updated_at: datetime | None


class LeadPageOut(Out):
    items: list[LeadOut]
    next_cursor: str | None
