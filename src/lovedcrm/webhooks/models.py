"""Outgoing webhook subscriptions (owned by an API key)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import (
    Base,
    TenantMixin,
    created_at_col,
    now_not_null,
    org_id_unique,
    same_org_fk,
    updated_at_col,
    uuid_pk,
)


class WebhookSubscription(TenantMixin, Base):
    __tablename__ = "webhook_subscriptions"
    __table_args__ = (
        org_id_unique("webhook_subscriptions"),
        same_org_fk("webhook_subscriptions", "api_key_id", "api_keys", ondelete="CASCADE"),
        Index("ix_webhook_subscriptions_org_id", "organization_id"),
        Index("ix_webhook_subscriptions_api_key", "api_key_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    api_key_id: Mapped[uuid.UUID] = mapped_column()
    webhook_url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[Any]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb"), default=list
    )
    secret_token: Mapped[str] = mapped_column(String(255))
    max_retries: Mapped[int | None] = mapped_column(Integer, server_default=text("3"), default=3)
    retry_backoff_seconds: Mapped[int | None] = mapped_column(
        Integer, server_default=text("300"), default=300
    )
    is_active: Mapped[bool | None] = mapped_column(
        Boolean, server_default=text("true"), default=True
    )
    last_triggered_at: Mapped[datetime | None] = mapped_column()
    failure_count: Mapped[int | None] = mapped_column(Integer, server_default=text("0"), default=0)
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


class WebhookDelivery(TenantMixin, Base):
    """Deviation (not in the spec): the delivery log of a subscription, one row per attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        org_id_unique("webhook_deliveries"),
        same_org_fk(
            "webhook_deliveries", "subscription_id", "webhook_subscriptions", ondelete="CASCADE"
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    subscription_id: Mapped[uuid.UUID] = mapped_column()
    event_id: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(100))
    attempt: Mapped[int] = mapped_column(Integer)
    request_body: Mapped[str] = mapped_column(Text)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    succeeded: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = now_not_null()


Index(
    "ix_webhook_deliveries_sub_created",
    WebhookDelivery.organization_id,
    WebhookDelivery.subscription_id,
    WebhookDelivery.created_at.desc(),
)
