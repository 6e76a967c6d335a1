"""Lead scoring models (one active per organization).

``artifact`` holds a trained model as signed, compressed JSON numbers (``scoring.artifacts``:
never pickle); ``artifact_signature`` its HMAC. Both are deferred: a list of models never
reads them (migration 0011 adds them; the spec's table has no artifact column).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Double, Index, LargeBinary, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, deferred, mapped_column

from lovedcrm.db.base import (
    Base,
    TenantMixin,
    created_at_col,
    org_id_unique,
    updated_at_col,
    uuid_pk,
)


class LeadScoringModel(TenantMixin, Base):
    __tablename__ = "lead_scoring_models"
    __table_args__ = (
        org_id_unique("lead_scoring_models"),
        Index("ix_lead_scoring_models_org_id", "organization_id"),
        Index(
            "ix_one_active_scoring_model_per_org",
            "organization_id",
            unique=True,
            postgresql_where=text("is_active = TRUE"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    model_name: Mapped[str] = mapped_column(String(255))
    model_version: Mapped[str] = mapped_column(String(50))
    model_type: Mapped[str] = mapped_column(String(50))
    config_data: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    scoring_factors: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    accuracy_score: Mapped[float | None] = mapped_column(Double)
    precision_score: Mapped[float | None] = mapped_column(Double)
    recall_score: Mapped[float | None] = mapped_column(Double)
    is_active: Mapped[bool | None] = mapped_column(
        Boolean, server_default=text("false"), default=False
    )
    training_completed_at: Mapped[datetime | None] = mapped_column()
    artifact: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    artifact_signature: Mapped[str | None] = deferred(mapped_column(String(64)))
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()
