"""Data-subject requests (LGPD): exports and erasures of a lead, and the whole-organization
export and deletion, each a job with a receipt (migration 0022)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import Base, TenantMixin, named_check, org_id_unique, same_org_fk, uuid_pk

KINDS = ("lead_export", "lead_erasure", "org_export", "org_deletion")
STATUSES = ("pending", "running", "done", "failed", "cancelled")


class PrivacyRequest(TenantMixin, Base):
    """One request. An export keeps its zip in file storage under ``file_key``, downloadable
    once through a link whose token is stored as its SHA-256 (``token_hash``) until
    ``expires_at``; an organization deletion waits until ``scheduled_for`` (the grace
    period, cancellable)."""

    __tablename__ = "privacy_requests"
    __table_args__ = (
        org_id_unique("privacy_requests"),
        same_org_fk("privacy_requests", "lead_id", "leads", ondelete="SET NULL (lead_id)"),
        named_check(
            "kind IN ('lead_export', 'lead_erasure', 'org_export', 'org_deletion')",
            "privacy_requests_kind",
        ),
        named_check(
            "status IN ('pending', 'running', 'done', 'failed', 'cancelled')",
            "privacy_requests_status",
        ),
        Index("ix_privacy_requests_org_created", "organization_id", "created_at"),
        Index(
            "uq_privacy_requests_token_hash",
            "token_hash",
            unique=True,
            postgresql_where=text("token_hash IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    lead_id: Mapped[uuid.UUID | None] = mapped_column()
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), server_default=text("'pending'"))
    requested_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    receipt: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    file_key: Mapped[str | None] = mapped_column(Text)
    token_hash: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    downloaded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    scheduled_for: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
