"""Calendar integrations and meetings."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import (
    Base,
    TenantMixin,
    created_at_col,
    jsonb_array,
    org_id_unique,
    same_org_fk,
    updated_at_col,
    uuid_pk,
)


class CalendarIntegration(TenantMixin, Base):
    __tablename__ = "calendar_integrations"
    __table_args__ = (
        org_id_unique("calendar_integrations"),
        Index("ix_calendar_integrations_org_id", "organization_id"),
        Index("ix_calendar_integrations_user_id", "user_id"),
        Index("ix_calendar_integrations_org_sync_status", "organization_id", "sync_status"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    provider: Mapped[str] = mapped_column(String(50))
    provider_user_id: Mapped[str | None] = mapped_column(String(255))
    access_token: Mapped[str | None] = mapped_column(Text)
    refresh_token: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None] = mapped_column()
    calendar_id: Mapped[str | None] = mapped_column(String(255))
    calendar_name: Mapped[str | None] = mapped_column(String(255))
    sync_status: Mapped[str | None] = mapped_column(
        String(50), server_default=text("'active'"), default="active"
    )
    last_sync_at: Mapped[datetime | None] = mapped_column()
    sync_error: Mapped[str | None] = mapped_column(Text)
    # Google's incremental-sync cursor and the OAuth flow in progress (migration 0017).
    sync_token: Mapped[str | None] = mapped_column(Text)
    oauth_state_hash: Mapped[str | None] = mapped_column(String(64))
    pkce_verifier: Mapped[str | None] = mapped_column(Text)  # SecretBox
    oauth_started_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


class CalendarEvent(TenantMixin, Base):
    __tablename__ = "calendar_events"
    __table_args__ = (
        org_id_unique("calendar_events"),
        same_org_fk("calendar_events", "lead_id", "leads", ondelete="SET NULL (lead_id)"),
        same_org_fk("calendar_events", "calendar_integration_id", "calendar_integrations"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    lead_id: Mapped[uuid.UUID | None] = mapped_column()
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    start_time: Mapped[datetime] = mapped_column()
    end_time: Mapped[datetime] = mapped_column()
    timezone: Mapped[str] = mapped_column(String(100))
    meeting_url: Mapped[str | None] = mapped_column(Text)
    meeting_password: Mapped[str | None] = mapped_column(String(100))
    external_event_id: Mapped[str | None] = mapped_column(String(255))
    calendar_integration_id: Mapped[uuid.UUID | None] = mapped_column()
    attendees: Mapped[list[Any] | None] = jsonb_array()
    status: Mapped[str | None] = mapped_column(
        String(50), server_default=text("'scheduled'"), default="scheduled"
    )
    # Migration 0017: RFC 5545 SEQUENCE, where it was made, the push to Google, reminders.
    ics_sequence: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    source: Mapped[str] = mapped_column(String(20), server_default=text("'crm'"), default="crm")
    sync_state: Mapped[str | None] = mapped_column(String(20))
    sync_error: Mapped[str | None] = mapped_column(Text)
    reminder_minutes: Mapped[int | None] = mapped_column(Integer)
    # Migration 0018: the WhatsApp reminder to the lead ({"template_id", "minutes"}).
    whatsapp_reminder: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


Index("ix_calendar_events_org_id", CalendarEvent.organization_id)
Index("ix_calendar_events_lead_id", CalendarEvent.lead_id)
Index("ix_calendar_events_start_time", CalendarEvent.start_time)
Index(
    "ix_calendar_events_org_start_time",
    CalendarEvent.organization_id,
    CalendarEvent.start_time.desc(),
)
Index(
    "uq_calendar_events_external",
    CalendarEvent.organization_id,
    CalendarEvent.calendar_integration_id,
    CalendarEvent.external_event_id,
    unique=True,
    postgresql_where=text("external_event_id IS NOT NULL"),
)
Index(
    "ix_calendar_events_org_creator_start",
    CalendarEvent.organization_id,
    CalendarEvent.created_by,
    CalendarEvent.start_time,
)


class CalendarFeed(TenantMixin, Base):
    """A member's secret ICS feed: only the SHA-256 of its token is stored."""

    __tablename__ = "calendar_feeds"
    __table_args__ = (
        org_id_unique("calendar_feeds"),
        UniqueConstraint("token_hash", name="uq_calendar_feeds_token_hash"),
        UniqueConstraint("organization_id", "user_id", name="uq_calendar_feeds_org_user"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime | None] = created_at_col()
