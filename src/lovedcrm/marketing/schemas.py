"""Marketing API shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from lovedcrm.core.schemas import IsoDate, IsoDateTime, StrictIn

Short = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Body = Annotated[str, StringConstraints(min_length=1, max_length=200_000)]
Target = Annotated[str, StringConstraints(min_length=1, max_length=120)]


class IntegrationUpdateIn(StrictIn):
    page_id: Short | None = None
    account_name: Short | None = None
    access_token: Secret | None = None
    app_secret: Secret | None = None
    verify_token: Secret | None = None
    google_key: Secret | None = None
    graph_base_url: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    ad_account_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    welcome_template_id: uuid.UUID | None = None


class IntegrationIn(IntegrationUpdateIn):
    provider: Literal["facebook", "google"]


class IntegrationOut(BaseModel):
    id: uuid.UUID
    provider: str
    account_id: str | None
    account_name: str | None
    access_token: str | None = Field(description="masked")
    graph_base_url: str | None
    ad_account_id: str | None
    welcome_template_id: str | None
    secrets: dict[str, str | None] = Field(description="masked")
    webhook_url: str
    sync_status: str | None
    sync_error: str | None
    last_sync_at: datetime | None
    created_at: datetime | None


class MappingIn(StrictIn):
    mapping: dict[Annotated[str, StringConstraints(min_length=1, max_length=100)], Target] = Field(
        max_length=200
    )


class FormOut(BaseModel):
    form_id: str
    leads: int
    mapping: dict[str, str]
    sample: dict[str, str]
    preview: dict[str, object]


class ReceiptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    integration_id: uuid.UUID
    provider: str
    provider_lead_id: str
    form_id: str | None
    campaign_id: str | None
    campaign_name: str | None
    adset_id: str | None
    ad_id: str | None
    is_test: bool
    status: str
    error: str | None
    lead_id: uuid.UUID | None
    created_at: datetime


class JobQueuedOut(BaseModel):
    queued: bool


class RoiRowOut(BaseModel):
    provider: str
    campaign_id: str
    campaign_name: str | None
    currency: str | None
    spend: Decimal
    leads: int
    won: int
    revenue: Decimal
    cost_per_lead: Decimal | None
    cost_per_won: Decimal | None
    return_: Decimal | None = Field(alias="return", serialization_alias="return")

    model_config = ConfigDict(populate_by_name=True)


class SpendUploadOut(BaseModel):
    rows: int


class AudienceIn(StrictIn):
    stage_id: uuid.UUID | None = None
    assigned_to: uuid.UUID | None = None
    status: Literal["active", "inactive", "converted", "lost"] | None = None
    source: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    score_min: int | None = Field(default=None, ge=0, le=100)
    score_max: int | None = Field(default=None, ge=0, le=100)
    created_after: IsoDate | None = None
    created_before: IsoDate | None = None
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class CampaignIn(StrictIn):
    name: Short
    subject: Short
    html_body: Body
    text_body: Body
    audience: AudienceIn = Field(default_factory=AudienceIn)


class CampaignUpdateIn(StrictIn):
    name: Short | None = None
    subject: Short | None = None
    html_body: Body | None = None
    text_body: Body | None = None
    audience: AudienceIn | None = None


class CampaignOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    subject: str
    html_body: str
    text_body: str
    audience: dict[str, object]
    status: str
    scheduled_for: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    skipped_no_consent: int
    skipped_suppressed: int
    created_at: datetime


class ScheduleIn(StrictIn):
    send_at: IsoDateTime | None = Field(
        default=None, description="when to send (a time with its offset); none: now"
    )


class TestSendIn(StrictIn):
    to: Annotated[str, StringConstraints(min_length=3, max_length=254)]


class PreviewOut(BaseModel):
    subject: str
    html: str
    text: str


class AudienceCountOut(BaseModel):
    leads: int
    with_email: int
    sendable: int


class ResultsOut(BaseModel):
    recipients: int
    sent: int
    delivered: int
    opened: int
    clicked: int
    replied: int
    unsubscribed: int
    bounced: int
    failed: int
    converted: int
    skipped_no_consent: int
    skipped_suppressed: int


class EmailEventIn(StrictIn):
    email: Annotated[str, StringConstraints(min_length=3, max_length=254)]
    kind: Literal["bounce", "complaint", "reply"]


class EmailEventOut(BaseModel):
    marked: int


class SuppressionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    email: str
    reason: str
    campaign_id: uuid.UUID | None
    created_at: datetime
