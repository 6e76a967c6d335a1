"""Pydantic in/out of the privacy API (LGPD requests, consents, retention, the audit trail)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lovedcrm.core.schemas import NOT_BLANK, Out, StrictIn

Purpose = Literal["email_marketing", "whatsapp_marketing", "data_processing"]
LegalBasis = Literal["consent", "legitimate_interest", "contract", "legal_obligation"]
ConsentStatus = Literal["granted", "withdrawn"]


class ConsentIn(StrictIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "purpose": "email_marketing",
                    "legal_basis": "consent",
                    "status": "granted",
                    "source": "form",
                    "evidence": {"text": "Aceito receber novidades por e-mail", "form_id": "f1"},
                }
            ]
        }
    )

    purpose: Purpose
    legal_basis: LegalBasis
    status: ConsentStatus
    source: str = Field("api", min_length=1, max_length=100, pattern=NOT_BLANK, examples=["form"])
    evidence: dict[Annotated[str, Field(max_length=50)], Annotated[str, Field(max_length=2000)]] = (
        Field(
            default_factory=dict,
            max_length=20,
            description='What shows the decision, e.g. {"text": "Aceito receber e-mails"}.',
        )
    )


class ConsentOut(Out):
    id: uuid.UUID
    lead_id: uuid.UUID
    purpose: str
    legal_basis: str
    status: str
    source: str
    evidence: dict[str, Any]
    recorded_by: uuid.UUID | None
    recorded_at: datetime


class PrivacyRequestOut(Out):
    id: uuid.UUID
    kind: str = Field(examples=["lead_export"])
    status: str = Field(examples=["pending"])
    lead_id: uuid.UUID | None
    requested_by: uuid.UUID | None
    receipt: dict[str, Any]
    created_at: datetime
    completed_at: datetime | None
    scheduled_for: datetime | None = Field(
        description="An organization deletion: when it happens (cancellable until then)."
    )
    expires_at: datetime | None = Field(description="An export: when its link stops working.")
    downloaded_at: datetime | None


class DownloadLinkOut(BaseModel):
    url: str = Field(description="Single-use, for the member who asked only.")
    expires_at: datetime


class RetentionIn(StrictIn):
    audit_retention_days: int | None = Field(None, ge=30, le=3650)
    message_retention_months: int | None = Field(None, ge=1, le=120)
    recording_retention_months: int | None = Field(None, ge=1, le=120)


class RetentionOut(BaseModel):
    audit_retention_days: int | None
    message_retention_months: int | None
    recording_retention_months: int | None


class AuditDiffOut(BaseModel):
    field: str
    before: Any = None
    after: Any = None


class AuditEntryOut(BaseModel):
    id: uuid.UUID
    created_at: datetime | None
    user_id: uuid.UUID | None
    member: str | None
    action: str
    resource_type: str
    resource_id: uuid.UUID | None
    ip_address: str | None
    user_agent: str | None
    success: bool | None
    failure_reason: str | None
    risk_score: int | None
    diff: list[AuditDiffOut]


class AuditPageOut(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None


class LoginFailureOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID | None
    member: str | None
    ip_address: str | None
    user_agent: str | None
    failure_reason: str | None
    risk_score: int | None
    created_at: datetime
