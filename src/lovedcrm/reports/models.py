"""Business-intelligence events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import Base, TenantMixin, org_id_unique, uuid_pk


class AnalyticsEvent(TenantMixin, Base):
    __tablename__ = "analytics_events"
    __table_args__ = (
        org_id_unique("analytics_events"),
        Index("ix_analytics_events_org_type", "organization_id", "event_type"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    event_type: Mapped[str] = mapped_column(String(100))
    event_data: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    occurred_at: Mapped[datetime | None] = mapped_column(server_default=func.now())


Index("ix_analytics_events_occurred_at", AnalyticsEvent.occurred_at.desc())
