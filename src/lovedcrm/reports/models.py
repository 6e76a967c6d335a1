"""Business-intelligence events."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, Numeric, String, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import Base, TenantMixin, org_id_unique, same_org_fk, uuid_pk


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

# The analytics events of one lead, in order: what the stage history of a lead is rebuilt from
# (``reports.aggregates``; migration 0012).
Index(
    "ix_analytics_events_org_lead",
    AnalyticsEvent.organization_id,
    text("(event_data ->> 'lead_id')"),
    AnalyticsEvent.occurred_at,
    postgresql_where=text(
        "event_type IN ('lead_created', 'pipeline_conversion', 'lead_won', 'lead_lost')"
    ),
)


# --- the reports' aggregates (migration 0012; docs/schema-deviations.md) ----------------------
#
# Kept in the transaction of each change by ``reports.events`` and rebuilt from scratch by
# ``reports.aggregates.recompute``; the reports read these instead of the activity timeline.


class ReportLeadFact(TenantMixin, Base):
    """One row per lead: what the reports group and count (owner, source, stage, outcome,
    value, when it was opened and closed, its first WhatsApp message and the first answer)."""

    __tablename__ = "report_lead_facts"
    __table_args__ = (
        org_id_unique("report_lead_facts"),
        UniqueConstraint("organization_id", "lead_id", name="uq_report_lead_facts_org_lead"),
        same_org_fk("report_lead_facts", "lead_id", "leads", ondelete="CASCADE"),
        Index("ix_report_lead_facts_created", "organization_id", "created_at"),
        Index(
            "ix_report_lead_facts_closed",
            "organization_id",
            "closed_at",
            postgresql_where=text("closed_at IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    lead_id: Mapped[uuid.UUID] = mapped_column()
    owner_id: Mapped[uuid.UUID | None] = mapped_column()
    source: Mapped[str | None] = mapped_column(String(100))
    stage_id: Mapped[uuid.UUID] = mapped_column()
    status: Mapped[str] = mapped_column(String(50))
    value: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    created_at: Mapped[datetime] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()
    first_inbound_at: Mapped[datetime | None] = mapped_column()
    first_reply_at: Mapped[datetime | None] = mapped_column()


class ReportStageSpan(TenantMixin, Base):
    """A lead's stay in one stage: entered, left (NULL while it is still there)."""

    __tablename__ = "report_stage_spans"
    __table_args__ = (
        org_id_unique("report_stage_spans"),
        same_org_fk("report_stage_spans", "lead_id", "leads", ondelete="CASCADE"),
        Index("ix_report_stage_spans_lead", "organization_id", "lead_id", "entered_at"),
        Index("ix_report_stage_spans_left", "organization_id", "left_at"),
        Index(
            "ix_report_stage_spans_open",
            "organization_id",
            "stage_id",
            postgresql_where=text("left_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    lead_id: Mapped[uuid.UUID] = mapped_column()
    stage_id: Mapped[uuid.UUID] = mapped_column()
    entered_at: Mapped[datetime] = mapped_column()
    left_at: Mapped[datetime | None] = mapped_column()


class ReportActivityCount(TenantMixin, Base):
    """Activities a member logged, per hour (UTC), member and kind."""

    __tablename__ = "report_activity_counts"
    __table_args__ = (
        org_id_unique("report_activity_counts"),
        UniqueConstraint(
            "organization_id",
            "bucket",
            "user_id",
            "activity_type",
            name="uq_report_activity_counts_key",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    bucket: Mapped[datetime] = mapped_column()
    user_id: Mapped[uuid.UUID] = mapped_column()
    activity_type: Mapped[str] = mapped_column(String(50))
    count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
