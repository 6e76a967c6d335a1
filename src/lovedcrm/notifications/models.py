"""A member's notifications and their preferences per type (migration 0021)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import (
    Base,
    TenantMixin,
    named_check,
    now_not_null,
    org_id_unique,
    uuid_pk,
)

CHANNELS = ("in_app", "email", "digest", "off")


class Notification(TenantMixin, Base):
    """Deviation (not in the spec): one notification for one member."""

    __tablename__ = "notifications"
    __table_args__ = (
        org_id_unique("notifications"),
        Index(
            "uq_notifications_dedupe",
            "organization_id",
            "user_id",
            "dedupe_key",
            unique=True,
            postgresql_where=text("dedupe_key IS NOT NULL"),
        ),
        # One unread "new WhatsApp message" per member and lead (migration 0024).
        Index(
            "uq_notifications_unread_message",
            "organization_id",
            "user_id",
            "lead_id",
            unique=True,
            postgresql_where=text("notification_type = 'message_received' AND read_at IS NULL"),
        ),
        Index("ix_notifications_user_created", "organization_id", "user_id", "created_at"),
        Index(
            "ix_notifications_unread",
            "organization_id",
            "user_id",
            postgresql_where=text("read_at IS NULL"),
        ),
        Index(
            "ix_notifications_digest",
            "organization_id",
            "user_id",
            postgresql_where=text("digest_pending"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    notification_type: Mapped[str] = mapped_column(String(50))
    title: Mapped[str] = mapped_column(String(255))
    body: Mapped[str | None] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(500))
    lead_id: Mapped[uuid.UUID | None] = mapped_column()
    data: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    dedupe_key: Mapped[str | None] = mapped_column(String(200))
    digest_pending: Mapped[bool] = mapped_column(
        Boolean, server_default=text("false"), default=False
    )
    emailed_at: Mapped[datetime | None] = mapped_column()
    read_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = now_not_null()


class NotificationPreference(TenantMixin, Base):
    """Deviation (not in the spec): how a member wants one type of notification."""

    __tablename__ = "notification_preferences"
    __table_args__ = (
        org_id_unique("notification_preferences"),
        Index(
            "uq_notification_preferences_user_type",
            "organization_id",
            "user_id",
            "notification_type",
            unique=True,
        ),
        named_check(
            "channel IN ('in_app', 'email', 'digest', 'off')",
            "ck_notification_preferences_channel",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    notification_type: Mapped[str] = mapped_column(String(50))
    channel: Mapped[str] = mapped_column(String(20))
    updated_at: Mapped[datetime] = now_not_null()
