"""Request and response models of the calls API."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, field_validator

from lovedcrm.core.schemas import Out, StrictIn

Kind = Literal["twilio", "telnyx", "sandbox"]
Status = Literal[
    "queued", "ringing", "in_progress", "completed", "no_answer", "busy", "failed", "canceled"
]
Outcome = Literal["interested", "not_interested", "callback", "voicemail", "wrong_number", "other"]
_SECRET_TEXT = r"^[\x21-\x7e]*$"  # noqa: S105 - a pattern, not a secret
_URL = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"


class _ConfigFields(StrictIn):
    label: str | None = Field(default=None, max_length=100)
    account_sid: str | None = Field(
        default=None, max_length=64, pattern=r"^[A-Za-z0-9]+$", examples=["AC0123456789abcdef"]
    )
    auth_token: str | None = Field(
        default=None, max_length=200, pattern=_SECRET_TEXT, description="Twilio; write-only."
    )
    api_key: str | None = Field(
        default=None, max_length=500, pattern=_SECRET_TEXT, description="Telnyx; write-only."
    )
    connection_id: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
    public_key: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9+/]{43}=$",
        description="Telnyx's Ed25519 public key (base64 of 32 bytes).",
    )
    api_base_url: str | None = Field(default=None, max_length=500, pattern=_URL)
    business_numbers: list[str] | None = Field(
        default=None, max_length=20, examples=[["+551130001000"]]
    )
    cost_per_minute: Decimal | None = Field(
        default=None, ge=0, le=Decimal("99.9999"), max_digits=6, decimal_places=4
    )
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$")
    ring_group: list[uuid.UUID] | None = Field(default=None, max_length=20)
    record: bool | None = None

    @field_validator("business_numbers")
    @classmethod
    def _lengths(cls, value: list[str] | None) -> list[str] | None:
        for n in value or []:
            if len(n) > 50 or not n.strip():
                raise ValueError("each number has 1 to 50 characters")
        return value


class VoipConfigIn(_ConfigFields):
    provider_type: Kind


class VoipConfigUpdateIn(_ConfigFields):
    pass


class VoipConfigOut(Out):
    id: uuid.UUID
    provider_type: str
    label: str | None
    is_active: bool
    account_sid: str | None
    auth_token_masked: str | None
    api_key_masked: str | None
    connection_id: str | None
    public_key: str | None
    api_base_url: str | None
    business_numbers: list[str]
    cost_per_minute: Decimal | None
    currency: str
    ring_group: list[uuid.UUID]
    record: bool
    webhook_url: str
    voice_url: str
    created_at: datetime | None
    updated_at: datetime | None


class VoipConnectionOut(Out):
    ok: bool
    detail: str


class CallDialIn(StrictIn):
    lead_id: uuid.UUID
    to_number: str | None = Field(
        default=None,
        min_length=1,
        max_length=50,
        description="Another number of the lead; the lead's phone when left out.",
    )


class CallUpdateIn(StrictIn):
    notes: str | None = Field(default=None, max_length=5000)
    outcome: Outcome | None = None


class CallOut(Out):
    id: uuid.UUID
    lead_id: uuid.UUID | None
    user_id: uuid.UUID | None
    provider_type: str
    provider_call_id: str | None
    direction: str
    from_number: str | None
    to_number: str | None
    status: str | None
    duration_seconds: int
    recording_url: str | None
    recording_duration_seconds: int | None
    cost_amount: Decimal | None
    cost_cents: int | None
    cost_currency: str | None
    reason: str | None
    notes: str | None
    outcome: str | None
    transcription: str | None = Field(
        description="The recording's text, when the organization's AI transcribed it"
    )
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, call: Any) -> CallOut:
        meta = call.metadata_ or {}
        return cls(
            id=call.id,
            lead_id=call.lead_id,
            user_id=call.user_id,
            provider_type=call.provider_type,
            provider_call_id=call.provider_call_id,
            direction=call.direction,
            from_number=call.from_number,
            to_number=call.to_number,
            status=call.status,
            duration_seconds=call.duration_seconds or 0,
            recording_url=call.recording_url,
            recording_duration_seconds=call.recording_duration_seconds,
            cost_amount=call.cost_amount,
            cost_cents=call.cost_cents,
            cost_currency=call.cost_currency,
            reason=meta.get("reason"),
            notes=meta.get("notes"),
            outcome=meta.get("outcome"),
            transcription=call.transcription,
            created_at=call.created_at,
            updated_at=call.updated_at,
        )


class CallPageOut(Out):
    items: list[CallOut]
    next_cursor: str | None
