"""The background job queue (tenant jobs and system jobs with organization_id NULL)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import (
    Base,
    created_at_col,
    jsonb_object,
    org_id_unique,
    updated_at_col,
    uuid_pk,
)

JOB_STATUSES = ("pending", "running", "completed", "failed", "retrying")


class BackgroundJob(Base):
    __tablename__ = "background_jobs"
    __table_args__ = (
        org_id_unique("background_jobs"),
        CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'retrying')", name="status"
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    # Nullable per spec: NULL marks a system-level job.
    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("organizations.id", ondelete="CASCADE")
    )
    job_type: Mapped[str] = mapped_column(String(100))
    job_data: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    status: Mapped[str | None] = mapped_column(
        String(50), server_default=text("'pending'"), default="pending"
    )
    scheduled_for: Mapped[datetime | None] = mapped_column(server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int | None] = mapped_column(Integer, server_default=text("0"), default=0)
    max_attempts: Mapped[int | None] = mapped_column(Integer, server_default=text("3"), default=3)
    result_data: Mapped[dict[str, Any] | None] = jsonb_object()
    error_message: Mapped[str | None] = mapped_column(Text)
    # Deviation (not in the spec): lease columns for workers claiming jobs, and a priority.
    locked_by: Mapped[str | None] = mapped_column(String(255))
    locked_until: Mapped[datetime | None] = mapped_column()
    priority: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    # Deviation: at most one job per key (periodic jobs: one per period however many workers).
    dedupe_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


Index("ix_background_jobs_org_id", BackgroundJob.organization_id)
Index("ix_background_jobs_status", BackgroundJob.status)
Index("ix_background_jobs_scheduled", BackgroundJob.scheduled_for)
Index("ix_background_jobs_type", BackgroundJob.job_type)
Index(
    "ix_background_jobs_org_status_scheduled",
    BackgroundJob.organization_id,
    BackgroundJob.status,
    BackgroundJob.scheduled_for,
)
Index(
    "ix_background_jobs_pending_scheduled",
    BackgroundJob.status,
    BackgroundJob.scheduled_for,
    postgresql_where=text("status = 'pending'"),
)
Index(
    "ix_background_jobs_dedupe_key",
    BackgroundJob.dedupe_key,
    unique=True,
    postgresql_where=text("dedupe_key IS NOT NULL"),
)
# Claims serve interactive jobs (priority >= 0) before bulk ones, each tier by a loose scan
# of its own index (migration 0015).
Index(
    "ix_background_jobs_ready_interactive",
    BackgroundJob.organization_id,
    BackgroundJob.scheduled_for,
    postgresql_where=text("status IN ('pending', 'retrying') AND priority >= 0"),
)
Index(
    "ix_background_jobs_ready_bulk",
    BackgroundJob.organization_id,
    BackgroundJob.scheduled_for,
    postgresql_where=text("status IN ('pending', 'retrying') AND priority < 0"),
)
Index(
    "ix_background_jobs_lease",
    BackgroundJob.locked_until,
    postgresql_where=text("status = 'running'"),
)
# The jobs list's order, newest first (migration 0010).
Index(
    "ix_background_jobs_org_created",
    BackgroundJob.organization_id,
    BackgroundJob.created_at,
    BackgroundJob.id,
)
