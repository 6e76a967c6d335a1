"""Kanban pipeline stages (per organization)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import (
    Base,
    TenantMixin,
    created_at_col,
    named_check,
    org_id_unique,
    updated_at_col,
    uuid_pk,
)


class PipelineStage(TenantMixin, Base):
    __tablename__ = "pipeline_stages"
    __table_args__ = (
        UniqueConstraint("organization_id", "stage_order"),
        org_id_unique("pipeline_stages"),
        named_check("color ~ '^#[0-9a-fA-F]{6}$'", "valid_color_format"),
        Index("ix_pipeline_stages_org_id", "organization_id"),
        Index("ix_pipeline_stages_org_order", "organization_id", "stage_order"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(100))
    stage_order: Mapped[int] = mapped_column(Integer)
    color: Mapped[str | None] = mapped_column(
        String(7), server_default=text("'#6366f1'"), default="#6366f1"
    )
    is_active: Mapped[bool | None] = mapped_column(
        Boolean, server_default=text("true"), default=True
    )
    stage_type: Mapped[str | None] = mapped_column(
        String(50), server_default=text("'custom'"), default="custom"
    )
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()
