"""Marketing (ads) integrations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import (
    Base,
    TenantMixin,
    created_at_col,
    jsonb_object,
    org_id_unique,
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
