"""AI conversation contexts and organization-specific training data."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, deferred, mapped_column

from lovedcrm.db.base import (
    Base,
    TenantMixin,
    created_at_col,
    org_id_unique,
    same_org_fk,
    updated_at_col,
    uuid_pk,
)


class AiConversation(TenantMixin, Base):
    __tablename__ = "ai_conversations"
    __table_args__ = (
        org_id_unique("ai_conversations"),
        same_org_fk("ai_conversations", "lead_id", "leads", ondelete="SET NULL (lead_id)"),
        CheckConstraint(
            "qualification_score >= 0 AND qualification_score <= 100", name="qualification_score"
        ),
        Index("ix_ai_conversations_org_id", "organization_id"),
        Index("ix_ai_conversations_lead_id", "lead_id"),
        Index(
            "ix_ai_conversations_org_active",
            "organization_id",
            "status",
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    lead_id: Mapped[uuid.UUID | None] = mapped_column()
    conversation_title: Mapped[str | None] = mapped_column(String(255))
    context_summary: Mapped[str | None] = mapped_column(Text)
    total_messages: Mapped[int | None] = mapped_column(Integer, server_default=text("0"), default=0)
    status: Mapped[str | None] = mapped_column(
        String(50), server_default=text("'active'"), default="active"
    )
    handed_off_to: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    handed_off_at: Mapped[datetime | None] = mapped_column()
    total_tokens_used: Mapped[int | None] = mapped_column(
        Integer, server_default=text("0"), default=0
    )
    context_tokens: Mapped[int | None] = mapped_column(Integer, server_default=text("0"), default=0)
    qualification_score: Mapped[int | None] = mapped_column(Integer)
    success_outcome: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


class AiTrainingData(TenantMixin, Base):
    __tablename__ = "ai_training_data"
    __table_args__ = (
        org_id_unique("ai_training_data"),
        Index("ix_ai_training_data_org_id", "organization_id"),
        Index("ix_ai_training_data_category", "organization_id", "category"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    data_type: Mapped[str] = mapped_column(String(50))
    category: Mapped[str | None] = mapped_column(String(100))
    input_text: Mapped[str] = mapped_column(Text)
    expected_output: Mapped[str] = mapped_column(Text)
    is_approved: Mapped[bool | None] = mapped_column(
        Boolean, server_default=text("false"), default=False
    )
    approved_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[datetime | None] = mapped_column()
    usage_count: Mapped[int | None] = mapped_column(Integer, server_default=text("0"), default=0)
    success_rate: Mapped[float | None] = mapped_column(
        Double, server_default=text("0"), default=0.0
    )
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


class AiSentimentModel(TenantMixin, Base):
    """An organization's own sentiment model, trained on its corrections (migration 0013; not
    in the spec). One row per organization, replaced at each training. ``is_active``: it
    labels new messages, because it beat the default analyser on held-out corrections
    (``heldout_accuracy`` > ``default_heldout_accuracy``). ``artifact``: the model as
    compressed JSON numbers (never pickle)."""

    __tablename__ = "ai_sentiment_models"
    __table_args__ = (
        org_id_unique("ai_sentiment_models"),
        UniqueConstraint("organization_id", name="uq_ai_sentiment_models_org"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("false"), default=False)
    trained_rows: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    heldout_rows: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    heldout_accuracy: Mapped[float | None] = mapped_column(Double)
    default_heldout_accuracy: Mapped[float | None] = mapped_column(Double)
    details: Mapped[dict[str, object]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    artifact: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    trained_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()
