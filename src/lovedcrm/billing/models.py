"""Subscriptions (Stripe) and usage metrics."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import (
    Base,
    TenantMixin,
    created_at_col,
    org_id_unique,
    updated_at_col,
    uuid_pk,
)


class Subscription(TenantMixin, Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        org_id_unique("subscriptions"),
        CheckConstraint("plan_tier IN ('starter', 'pro', 'enterprise')", name="plan_tier"),
        Index("ix_subscriptions_org_id", "organization_id"),
        Index("ix_subscriptions_stripe_id", "stripe_subscription_id"),
        Index("ix_subscriptions_status", "status"),
        # One subscription per organization (issue 18): its current state.
        Index("uq_subscriptions_one_per_org", "organization_id", unique=True),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    plan_tier: Mapped[str] = mapped_column(String(50))
    billing_cycle: Mapped[str] = mapped_column(String(20))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str | None] = mapped_column(
        String(3), server_default=text("'USD'"), default="USD"
    )
    status: Mapped[str] = mapped_column(String(50))
    current_period_start: Mapped[datetime] = mapped_column()
    current_period_end: Mapped[datetime] = mapped_column()
    trial_end: Mapped[datetime | None] = mapped_column()
    canceled_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()
    # Not in the spec (issue 18): when the subscription became past due (the grace period
    # runs from here), and the `created` of the last Stripe event applied (an older event
    # arriving late is ignored).
    past_due_since: Mapped[datetime | None] = mapped_column()
    stripe_event_at: Mapped[datetime | None] = mapped_column()


class UsageMetric(TenantMixin, Base):
    __tablename__ = "usage_metrics"
    __table_args__ = (org_id_unique("usage_metrics"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    metric_type: Mapped[str] = mapped_column(String(100))
    metric_value: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[datetime] = mapped_column()
    period_end: Mapped[datetime] = mapped_column()
    metadata_: Mapped[dict[str, Any] | None] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    created_at: Mapped[datetime | None] = created_at_col()


Index("ix_usage_metrics_org_id", UsageMetric.organization_id)
Index("ix_usage_metrics_type", UsageMetric.metric_type)
Index("ix_usage_metrics_period", UsageMetric.period_start, UsageMetric.period_end)
Index(
    "uq_usage_metrics_org_type_start",
    UsageMetric.organization_id,
    UsageMetric.metric_type,
    UsageMetric.period_start,
    unique=True,
)
Index(
    "ix_usage_metrics_org_type_period",
    UsageMetric.organization_id,
    UsageMetric.metric_type,
    UsageMetric.period_start.desc(),
)


class BillingEvent(Base):
    """Not in the spec (issue 18): the ids of the Stripe events already processed (a
    replayed or duplicated delivery changes nothing). Not a tenant table: Stripe events are
    the installation's own."""

    __tablename__ = "billing_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime | None] = created_at_col()
