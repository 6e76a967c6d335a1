"""Organizations: the tenants. Their members and invitations are ``auth``'s (people and access)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import (
    Base,
    created_at_col,
    jsonb_object,
    updated_at_col,
    uuid_pk,
)

PLAN_TIERS = ("starter", "pro", "enterprise")


class Organization(Base):
    __tablename__ = "organizations"
    __table_args__ = (
        CheckConstraint("plan_tier IN ('starter', 'pro', 'enterprise')", name="plan_tier"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    plan_tier: Mapped[str] = mapped_column(
        String(50), server_default=text("'starter'"), default="starter"
    )
    settings: Mapped[dict[str, Any] | None] = jsonb_object()
    features_enabled: Mapped[dict[str, Any] | None] = jsonb_object()
    # Kept by a trigger on webhook_subscriptions (migration 0026): never written by the app.
    active_webhooks: Mapped[int] = mapped_column(
        Integer, server_default=text("0"), default=0, nullable=False
    )
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()
