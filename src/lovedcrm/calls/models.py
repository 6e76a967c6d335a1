"""VoIP configuration and call history."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import (
    Base,
    TenantMixin,
    created_at_col,
    jsonb_array,
    jsonb_object,
    named_check,
    org_id_unique,
    same_org_fk,
    updated_at_col,
    uuid_pk,
)


class VoipConfig(TenantMixin, Base):
    __tablename__ = "voip_configs"
    __table_args__ = (
        org_id_unique("voip_configs"),
        named_check(
            "(provider_type = 'twilio' AND account_sid IS NOT NULL AND auth_token IS NOT NULL)"
            " OR (provider_type = 'telnyx' AND api_key IS NOT NULL)"
            " OR (provider_type = 'sandbox')",
            "chk_voip_provider_config",
        ),
        Index("ix_voip_configs_org_id", "organization_id"),
        # Also replaces the spec's EXCLUDE constraint uk_voip_one_active_per_org.
        Index(
            "ix_voip_one_active_per_org",
            "organization_id",
            unique=True,
            postgresql_where=text("is_active = TRUE"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    provider_type: Mapped[str] = mapped_column(String(50))
    is_active: Mapped[bool | None] = mapped_column(
        Boolean, server_default=text("false"), default=False
    )
    account_sid: Mapped[str | None] = mapped_column(String(100))
    auth_token: Mapped[str | None] = mapped_column(Text)
    api_key: Mapped[str | None] = mapped_column(Text)
    business_numbers: Mapped[list[Any] | None] = jsonb_array()
    config_data: Mapped[dict[str, Any] | None] = jsonb_object()
    cost_per_minute: Mapped[Decimal | None] = mapped_column(Numeric(6, 4))
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


class CallLog(TenantMixin, Base):
    __tablename__ = "call_logs"
    __table_args__ = (
        org_id_unique("call_logs"),
        same_org_fk("call_logs", "lead_id", "leads", ondelete="SET NULL (lead_id)"),
        CheckConstraint("direction IN ('inbound', 'outbound')", name="direction"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    lead_id: Mapped[uuid.UUID | None] = mapped_column()
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    provider_type: Mapped[str] = mapped_column(String(50))
    provider_call_id: Mapped[str | None] = mapped_column(String(255))
    direction: Mapped[str] = mapped_column(String(10))
    from_number: Mapped[str | None] = mapped_column(String(50))
    to_number: Mapped[str | None] = mapped_column(String(50))
    status: Mapped[str | None] = mapped_column(String(50))
    duration_seconds: Mapped[int | None] = mapped_column(
        Integer, server_default=text("0"), default=0
    )
    quality_score: Mapped[float | None] = mapped_column(Double)
    recording_url: Mapped[str | None] = mapped_column(Text)
    recording_duration_seconds: Mapped[int | None] = mapped_column(Integer)
    transcription: Mapped[str | None] = mapped_column(Text)
    cost_cents: Mapped[int | None] = mapped_column(Integer)
    # The exact cost (migration 0016); cost_cents is it rounded to cents.
    cost_amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 5))
    cost_currency: Mapped[str | None] = mapped_column(
        String(3), server_default=text("'USD'"), default="USD"
    )
    metadata_: Mapped[dict[str, Any] | None] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


Index("ix_call_logs_organization_id", CallLog.organization_id)
Index("ix_call_logs_lead_id", CallLog.lead_id)
Index("ix_call_logs_user_id", CallLog.user_id)
Index("ix_call_logs_provider", CallLog.provider_type, CallLog.provider_call_id)
Index("ix_call_logs_created_at", CallLog.created_at.desc())
Index(
    "ix_call_logs_org_lead_created",
    CallLog.organization_id,
    CallLog.lead_id,
    CallLog.created_at.desc(),
)
Index(
    "ux_call_logs_org_provider_call",
    CallLog.organization_id,
    CallLog.provider_type,
    CallLog.provider_call_id,
    unique=True,
    postgresql_where=text("provider_call_id IS NOT NULL"),
)


class CallEvent(TenantMixin, Base):
    """A verified provider callback, stored once per (organization, provider, event key);
    ``applied`` is false while its call is not known yet (migration 0016)."""

    __tablename__ = "call_events"
    __table_args__ = (
        org_id_unique("call_events"),
        UniqueConstraint(
            "organization_id", "provider_type", "event_key", name="uq_call_events_event"
        ),
        Index(
            "ix_call_events_pending",
            "organization_id",
            "call_log_id",
            "provider_call_id",
            postgresql_where=text("NOT applied"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    provider_type: Mapped[str] = mapped_column(String(50))
    event_key: Mapped[str] = mapped_column(String(255))
    call_log_id: Mapped[uuid.UUID | None] = mapped_column()
    provider_call_id: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    applied: Mapped[bool] = mapped_column(Boolean, server_default=text("false"), default=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )
