"""Marketing (ads) integrations."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import (
    Base,
    TenantMixin,
    created_at_col,
    jsonb_object,
    now_not_null,
    org_id_unique,
    same_org_fk,
    updated_at_col,
    uuid_pk,
)


class MarketingIntegration(TenantMixin, Base):
    __tablename__ = "marketing_integrations"
    __table_args__ = (
        org_id_unique("marketing_integrations"),
        Index("ix_marketing_integrations_org_id", "organization_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    provider: Mapped[str] = mapped_column(String(50))
    access_token: Mapped[str | None] = mapped_column(Text)
    refresh_token: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None] = mapped_column()
    account_id: Mapped[str | None] = mapped_column(String(255))
    account_name: Mapped[str | None] = mapped_column(String(255))
    config_data: Mapped[dict[str, Any] | None] = jsonb_object()
    sync_status: Mapped[str | None] = mapped_column(
        String(50), server_default=text("'active'"), default="active"
    )
    last_sync_at: Mapped[datetime | None] = mapped_column()
    sync_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


# --- beyond the spec (docs/schema-deviations.md): ad leads, spend, e-mail campaigns ----------


class AdLeadReceipt(TenantMixin, Base):
    """One ad lead as the provider announced it: stored once per provider lead id (a replayed
    webhook or a backfill finds it), with its attribution and the lead it became."""

    __tablename__ = "ad_lead_receipts"
    __table_args__ = (
        org_id_unique("ad_lead_receipts"),
        UniqueConstraint(
            "organization_id", "provider", "provider_lead_id", name="uq_ad_lead_receipts_lead"
        ),
        same_org_fk(
            "ad_lead_receipts", "integration_id", "marketing_integrations", ondelete="CASCADE"
        ),
        same_org_fk("ad_lead_receipts", "lead_id", "leads", ondelete="SET NULL (lead_id)"),
        Index("ix_ad_lead_receipts_org_campaign", "organization_id", "campaign_id"),
        Index("ix_ad_lead_receipts_org_lead", "organization_id", "lead_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    integration_id: Mapped[uuid.UUID] = mapped_column()
    provider: Mapped[str] = mapped_column(String(20))
    provider_lead_id: Mapped[str] = mapped_column(String(255))
    form_id: Mapped[str | None] = mapped_column(String(255))
    campaign_id: Mapped[str | None] = mapped_column(String(255))
    campaign_name: Mapped[str | None] = mapped_column(String(255))
    adset_id: Mapped[str | None] = mapped_column(String(255))
    ad_id: Mapped[str | None] = mapped_column(String(255))
    is_test: Mapped[bool] = mapped_column(Boolean, server_default=text("false"), default=False)
    status: Mapped[str] = mapped_column(String(20), server_default=text("'pending'"))
    error: Mapped[str | None] = mapped_column(Text)
    lead_id: Mapped[uuid.UUID | None] = mapped_column()
    fields: Mapped[dict[str, Any]] = jsonb_object()
    created_at: Mapped[datetime] = now_not_null()


class AdFormMapping(TenantMixin, Base):
    """How one ad form's fields become lead fields and custom fields."""

    __tablename__ = "ad_form_mappings"
    __table_args__ = (
        org_id_unique("ad_form_mappings"),
        UniqueConstraint(
            "organization_id", "integration_id", "form_id", name="uq_ad_form_mappings_form"
        ),
        same_org_fk(
            "ad_form_mappings", "integration_id", "marketing_integrations", ondelete="CASCADE"
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    integration_id: Mapped[uuid.UUID] = mapped_column()
    form_id: Mapped[str] = mapped_column(String(255))
    mapping: Mapped[dict[str, Any]] = jsonb_object()
    sample: Mapped[dict[str, Any]] = jsonb_object()
    updated_at: Mapped[datetime] = now_not_null()


class AdSpend(TenantMixin, Base):
    """What a campaign cost on one day (a CSV upload or the Graph API's insights)."""

    __tablename__ = "ad_spend"
    __table_args__ = (
        org_id_unique("ad_spend"),
        UniqueConstraint(
            "organization_id", "provider", "campaign_id", "day", name="uq_ad_spend_campaign_day"
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    provider: Mapped[str] = mapped_column(String(20))
    campaign_id: Mapped[str] = mapped_column(String(255))
    campaign_name: Mapped[str | None] = mapped_column(String(255))
    day: Mapped[date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3), server_default=text("'BRL'"))
    created_at: Mapped[datetime] = now_not_null()


class EmailCampaign(TenantMixin, Base):
    __tablename__ = "email_campaigns"
    __table_args__ = (
        org_id_unique("email_campaigns"),
        CheckConstraint(
            "status IN ('draft', 'scheduled', 'sending', 'sent', 'cancelled')",
            name="email_campaigns_status",
        ),
        Index("ix_email_campaigns_org_created", "organization_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    html_body: Mapped[str] = mapped_column(Text)
    text_body: Mapped[str] = mapped_column(Text)
    audience: Mapped[dict[str, Any]] = jsonb_object()
    status: Mapped[str] = mapped_column(String(20), server_default=text("'draft'"))
    scheduled_for: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    skipped_no_consent: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    skipped_suppressed: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = now_not_null()


class CampaignRecipient(TenantMixin, Base):
    """One lead of a campaign and what happened to its e-mail."""

    __tablename__ = "campaign_recipients"
    __table_args__ = (
        org_id_unique("campaign_recipients"),
        UniqueConstraint("campaign_id", "lead_id", name="uq_campaign_recipients_lead"),
        same_org_fk("campaign_recipients", "campaign_id", "email_campaigns", ondelete="CASCADE"),
        same_org_fk("campaign_recipients", "lead_id", "leads", ondelete="CASCADE"),
        Index("ix_campaign_recipients_campaign_status", "campaign_id", "status"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    campaign_id: Mapped[uuid.UUID] = mapped_column()
    lead_id: Mapped[uuid.UUID] = mapped_column()
    email: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), server_default=text("'queued'"))
    error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column()
    opened_at: Mapped[datetime | None] = mapped_column()
    clicked_at: Mapped[datetime | None] = mapped_column()
    replied_at: Mapped[datetime | None] = mapped_column()
    unsubscribed_at: Mapped[datetime | None] = mapped_column()
    bounced_at: Mapped[datetime | None] = mapped_column()
    converted_at: Mapped[datetime | None] = mapped_column()


class EmailSuppression(TenantMixin, Base):
    """An address that gets no marketing e-mail: unsubscribed, hard bounce or complaint."""

    __tablename__ = "email_suppressions"
    __table_args__ = (
        org_id_unique("email_suppressions"),
        UniqueConstraint("organization_id", "email", name="uq_email_suppressions_email"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(20))
    campaign_id: Mapped[uuid.UUID | None] = mapped_column()
    created_at: Mapped[datetime] = now_not_null()


class EmailTrackingEvent(TenantMixin, Base):
    """An open, a click, an unsubscribe, a bounce or a complaint of one recipient."""

    __tablename__ = "email_tracking_events"
    __table_args__ = (
        org_id_unique("email_tracking_events"),
        same_org_fk(
            "email_tracking_events", "recipient_id", "campaign_recipients", ondelete="CASCADE"
        ),
        Index("ix_email_tracking_events_recipient", "organization_id", "recipient_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    recipient_id: Mapped[uuid.UUID] = mapped_column()
    kind: Mapped[str] = mapped_column(String(20))
    url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = now_not_null()
