"""WhatsApp configuration, messages, attachments, templates and provider migrations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import (
    Base,
    TenantMixin,
    created_at_col,
    jsonb_array,
    jsonb_object,
    named_check,
    now_not_null,
    org_id_unique,
    same_org_fk,
    updated_at_col,
    uuid_pk,
)

MESSAGE_STATUSES = ("pending", "sent", "delivered", "read", "failed")


class WhatsappConfig(TenantMixin, Base):
    __tablename__ = "whatsapp_configs"
    __table_args__ = (
        org_id_unique("whatsapp_configs"),
        named_check(
            "(provider_type = 'business_api' AND business_phone_id IS NOT NULL"
            " AND access_token IS NOT NULL)"
            " OR (provider_type = 'web_unofficial' AND session_id IS NOT NULL)"
            # Deviation: the offline sandbox provider (docs/schema-deviations.md).
            " OR (provider_type = 'sandbox')",
            "chk_whatsapp_provider_config",
        ),
        Index("ix_whatsapp_configs_org_id", "organization_id"),
        # Also replaces the spec's EXCLUDE constraint uk_whatsapp_one_active_per_org.
        Index(
            "ix_whatsapp_one_active_per_org",
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
    business_phone_id: Mapped[str | None] = mapped_column(String(100))
    access_token: Mapped[str | None] = mapped_column(Text)
    webhook_verify_token: Mapped[str | None] = mapped_column(String(255))
    business_account_id: Mapped[str | None] = mapped_column(String(100))
    session_id: Mapped[str | None] = mapped_column(String(100))
    qr_code_data: Mapped[str | None] = mapped_column(Text)
    connection_status: Mapped[str | None] = mapped_column(
        String(50), server_default=text("'disconnected'"), default="disconnected"
    )
    last_connected_at: Mapped[datetime | None] = mapped_column()
    config_data: Mapped[dict[str, Any] | None] = jsonb_object()
    rate_limits: Mapped[dict[str, Any] | None] = jsonb_object()
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


class Message(TenantMixin, Base):
    __tablename__ = "messages"
    __table_args__ = (
        org_id_unique("messages"),
        same_org_fk("messages", "lead_id", "leads", ondelete="SET NULL (lead_id)"),
        CheckConstraint("direction IN ('inbound', 'outbound')", name="direction"),
        CheckConstraint("sentiment_score >= -1 AND sentiment_score <= 1", name="sentiment_score"),
        CheckConstraint("urgency_score >= 0 AND urgency_score <= 100", name="urgency_score"),
        CheckConstraint(
            "status IN ('pending', 'sent', 'delivered', 'read', 'failed')", name="status"
        ),
        named_check(
            "sentiment_score IS NULL OR (sentiment_score >= -1.0 AND sentiment_score <= 1.0)",
            "chk_message_sentiment_valid",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    lead_id: Mapped[uuid.UUID | None] = mapped_column()
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    provider_type: Mapped[str] = mapped_column(String(50))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    direction: Mapped[str] = mapped_column(String(10))
    message_type: Mapped[str | None] = mapped_column(
        String(50), server_default=text("'text'"), default="text"
    )
    content: Mapped[str | None] = mapped_column(Text)
    from_number: Mapped[str | None] = mapped_column(String(50))
    to_number: Mapped[str | None] = mapped_column(String(50))
    contact_name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str | None] = mapped_column(
        String(50), server_default=text("'pending'"), default="pending"
    )
    delivered_at: Mapped[datetime | None] = mapped_column()
    read_at: Mapped[datetime | None] = mapped_column()
    failed_reason: Mapped[str | None] = mapped_column(Text)
    sentiment_score: Mapped[float | None] = mapped_column(Double)
    urgency_score: Mapped[int | None] = mapped_column(Integer)
    ai_summary: Mapped[str | None] = mapped_column(Text)
    ai_processed_at: Mapped[datetime | None] = mapped_column()
    metadata_: Mapped[dict[str, Any] | None] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


Index("ix_messages_organization_id", Message.organization_id)
Index("ix_messages_org_lead", Message.organization_id, Message.lead_id)
Index("ix_messages_org_conversation", Message.organization_id, Message.conversation_id)
Index("ix_messages_provider", Message.provider_type, Message.provider_message_id)
Index("ix_messages_created_at", Message.created_at.desc())
Index("ix_messages_from_number", Message.from_number)
# Deviation: redelivered webhooks must not store a message twice.
Index(
    "ux_messages_org_provider_message",
    Message.organization_id,
    Message.provider_type,
    Message.provider_message_id,
    unique=True,
    postgresql_where=text("provider_message_id IS NOT NULL"),
)
Index(
    "ix_messages_org_lead_created",
    Message.organization_id,
    Message.lead_id,
    Message.created_at.desc(),
)
Index(
    "ix_messages_org_unread",
    Message.organization_id,
    Message.status,
    postgresql_where=text("status IN ('delivered', 'pending')"),
)
Index(
    "ix_messages_org_sentiment",
    Message.organization_id,
    Message.sentiment_score,
    postgresql_where=text("sentiment_score IS NOT NULL"),
)


class MessageAttachment(TenantMixin, Base):
    __tablename__ = "message_attachments"
    __table_args__ = (
        org_id_unique("message_attachments"),
        same_org_fk("message_attachments", "message_id", "messages", ondelete="CASCADE"),
        Index("ix_message_attachments_org_id", "organization_id"),
        Index("ix_message_attachments_message_id", "message_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    message_id: Mapped[uuid.UUID] = mapped_column()
    file_name: Mapped[str] = mapped_column(String(255))
    file_type: Mapped[str] = mapped_column(String(100))
    file_size: Mapped[int] = mapped_column(Integer)
    file_url: Mapped[str] = mapped_column(Text)
    provider_media_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime | None] = created_at_col()


class MessageTemplate(TenantMixin, Base):
    __tablename__ = "message_templates"
    __table_args__ = (
        org_id_unique("message_templates"),
        same_org_fk("message_templates", "parent_template_id", "message_templates"),
        Index("ix_message_templates_org_id", "organization_id"),
        Index("ix_message_templates_category", "organization_id", "category"),
        Index("ix_message_templates_created_by", "created_by"),
        Index(
            "ix_message_templates_org_category_active",
            "organization_id",
            "category",
            "is_active",
            postgresql_where=text("is_active = TRUE"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(255))
    category: Mapped[str] = mapped_column(String(100))
    content: Mapped[str] = mapped_column(Text)
    variables: Mapped[list[Any] | None] = jsonb_array()
    version: Mapped[int | None] = mapped_column(Integer, server_default=text("1"), default=1)
    parent_template_id: Mapped[uuid.UUID | None] = mapped_column()
    usage_count: Mapped[int | None] = mapped_column(Integer, server_default=text("0"), default=0)
    success_rate: Mapped[float | None] = mapped_column(
        Double, server_default=text("0"), default=0.0
    )
    is_active: Mapped[bool | None] = mapped_column(
        Boolean, server_default=text("true"), default=True
    )
    is_shared: Mapped[bool | None] = mapped_column(
        Boolean, server_default=text("false"), default=False
    )
    # Deviation: the Meta-approved template this one maps to (Cloud API sends by name).
    whatsapp_template_name: Mapped[str | None] = mapped_column(String(512))
    whatsapp_language: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


class TemplateUsageStat(TenantMixin, Base):
    __tablename__ = "template_usage_stats"
    __table_args__ = (
        org_id_unique("template_usage_stats"),
        same_org_fk("template_usage_stats", "template_id", "message_templates", ondelete="CASCADE"),
        same_org_fk("template_usage_stats", "lead_id", "leads", ondelete="SET NULL (lead_id)"),
        same_org_fk("template_usage_stats", "used_in_message_id", "messages"),
        Index("ix_template_usage_stats_org_id", "organization_id"),
        Index("ix_template_usage_stats_template", "template_id"),
        Index(
            "ix_template_usage_org_success", "organization_id", "template_id", "led_to_conversion"
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    template_id: Mapped[uuid.UUID] = mapped_column()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    lead_id: Mapped[uuid.UUID | None] = mapped_column()
    used_in_message_id: Mapped[uuid.UUID | None] = mapped_column()
    context_type: Mapped[str | None] = mapped_column(String(50))
    response_received: Mapped[bool | None] = mapped_column(
        Boolean, server_default=text("false"), default=False
    )
    response_time_minutes: Mapped[int | None] = mapped_column(Integer)
    led_to_conversion: Mapped[bool | None] = mapped_column(
        Boolean, server_default=text("false"), default=False
    )
    created_at: Mapped[datetime | None] = created_at_col()


class ProviderMigration(TenantMixin, Base):
    __tablename__ = "provider_migrations"
    __table_args__ = (
        org_id_unique("provider_migrations"),
        Index("ix_provider_migrations_org_id", "organization_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    migration_type: Mapped[str] = mapped_column(String(50))
    from_provider: Mapped[str] = mapped_column(String(50))
    to_provider: Mapped[str] = mapped_column(String(50))
    status: Mapped[str | None] = mapped_column(
        String(50), server_default=text("'pending'"), default="pending"
    )
    migration_data: Mapped[dict[str, Any] | None] = jsonb_object()
    backup_data: Mapped[dict[str, Any] | None] = jsonb_object()
    started_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


class WhatsappStatusBacklog(TenantMixin, Base):
    """Deviation (not in the spec): a delivery status that arrived before its message's
    provider id was known, applied when it appears."""

    __tablename__ = "whatsapp_status_backlog"
    __table_args__ = (
        org_id_unique("whatsapp_status_backlog"),
        Index(
            "ix_whatsapp_status_backlog_message",
            "organization_id",
            "provider_type",
            "provider_message_id",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    provider_type: Mapped[str] = mapped_column(String(50))
    provider_message_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[datetime] = mapped_column()
    error_code: Mapped[str | None] = mapped_column(String(50))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = now_not_null()


class InboxConversation(TenantMixin, Base):
    """Deviation (not in the spec): one row per lead with messages -- its last message and
    the count of unread inbound ones -- kept by triggers on ``messages`` in the same
    transaction as every change (migration 0010), so the inbox lists conversations from an
    index however many messages the organization has."""

    __tablename__ = "inbox_conversations"
    __table_args__ = (
        org_id_unique("inbox_conversations"),
        UniqueConstraint("organization_id", "lead_id", name="uq_inbox_conversations_org_lead"),
        same_org_fk("inbox_conversations", "lead_id", "leads", ondelete="CASCADE"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    lead_id: Mapped[uuid.UUID] = mapped_column()
    last_message_id: Mapped[uuid.UUID] = mapped_column()
    last_message_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    unread_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))


# The inbox's order: newest conversation first, then by lead (migration 0010).
Index(
    "ix_inbox_conversations_recent",
    InboxConversation.organization_id,
    InboxConversation.last_message_at.desc(),
    InboxConversation.lead_id,
)
Index(
    "ix_inbox_conversations_unread",
    InboxConversation.organization_id,
    InboxConversation.last_message_at.desc(),
    InboxConversation.lead_id,
    postgresql_where=text("unread_count > 0"),
)
