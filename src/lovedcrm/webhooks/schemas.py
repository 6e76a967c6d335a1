"""Request and response models of the webhooks API, and the delivery job's payload."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from lovedcrm.core.schemas import Out, StrictIn

_URL_EXAMPLE = "https://hooks.example.com/lovedcrm"


class DeliverPayload(BaseModel):
    """``webhook.deliver`` job data: one message to one subscription."""

    subscription_id: uuid.UUID
    event_id: str = Field(max_length=100)
    event_type: str = Field(max_length=100)
    event: dict[str, Any]


class SubscriptionIn(StrictIn):
    url: str = Field(min_length=1, max_length=2048, examples=[_URL_EXAMPLE])
    events: list[str] = Field(
        min_length=1, max_length=50, examples=[["lead.created", "lead.stage_changed"]]
    )
    api_key_id: uuid.UUID | None = Field(
        default=None,
        description="The API key that owns the subscription. Required when signed in as a "
        "user; taken from the credential when called with an API key.",
    )
    max_retries: int = Field(default=3, ge=0, le=10)
    retry_backoff_seconds: int = Field(default=300, ge=0, le=86400)


class SubscriptionUpdateIn(StrictIn):
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    events: list[str] | None = Field(default=None, min_length=1, max_length=50)
    api_key_id: uuid.UUID | None = None
    max_retries: int | None = Field(default=None, ge=0, le=10)
    retry_backoff_seconds: int | None = Field(default=None, ge=0, le=86400)
    is_active: bool | None = Field(
        default=None, description="Set true to re-enable a subscription (resets failure_count)."
    )


class SubscriptionOut(Out):
    id: uuid.UUID
    organization_id: uuid.UUID
    api_key_id: uuid.UUID
    url: str = Field(examples=[_URL_EXAMPLE])
    events: list[str]
    max_retries: int
    retry_backoff_seconds: int
    is_active: bool
    failure_count: int
    last_triggered_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None


class SubscriptionCreatedOut(SubscriptionOut):
    secret: str = Field(
        description="The signing secret (Standard Webhooks, `whsec_…`). Shown only now: "
        "store it to verify the `webhook-signature` header.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class SecretOut(BaseModel):
    secret: str = Field(
        description="The new signing secret; the previous one stops working now.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class DeliveryOut(Out):
    id: uuid.UUID
    subscription_id: uuid.UUID
    event_id: str = Field(examples=["evt_5f1c0c7a9b8d4e6fa1b2c3d4e5f60718"])
    event_type: str = Field(examples=["lead.created"])
    attempt: int = Field(description="1 for the first try of a delivery, then 2, 3, …")
    request_body: str
    response_status: int | None = Field(examples=[200])
    response_body: str | None = Field(description="The first 2 KB of the response body.")
    latency_ms: int | None
    succeeded: bool
    error: str | None = Field(examples=["timeout: no response within 10s"])
    created_at: datetime


class DeliveryPageOut(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


class QueuedOut(BaseModel):
    job_id: uuid.UUID | None
    event_id: str = Field(examples=["evt_5f1c0c7a9b8d4e6fa1b2c3d4e5f60718"])
