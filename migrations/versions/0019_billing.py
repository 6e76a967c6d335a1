"""Billing and plans (issue 18): Stripe subscriptions, usage metering, plan limits.

- ``subscriptions``: ``past_due_since`` (the grace period runs from it), ``stripe_event_at``
  (the ``created`` of the last Stripe event applied: an older one arriving late is
  ignored) and one subscription per organization (``uq_subscriptions_one_per_org``).
- ``usage_metrics``: one row per (organization, metric, period start), so the metering
  job upserts (``uq_usage_metrics_org_type_start``).
- ``billing_events`` (not a tenant table): the ids of the Stripe events processed, so a
  replayed or duplicated delivery changes nothing.
- ``lovedcrm_billing_org(subscription, customer)`` (SECURITY DEFINER) answers the
  organization of a Stripe subscription or customer before any tenant is known, and nothing
  else (an ``owner_read`` policy lets it read ``subscriptions`` under FORCE RLS).

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "subscriptions", sa.Column("past_due_since", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "subscriptions", sa.Column("stripe_event_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "uq_subscriptions_one_per_org", "subscriptions", ["organization_id"], unique=True
    )
    op.create_index(
        "uq_usage_metrics_org_type_start",
        "usage_metrics",
        ["organization_id", "metric_type", "period_start"],
        unique=True,
    )
    op.create_table(
        "billing_events",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id", name="pk_billing_events"),
    )
    op.execute(
        "DO $$ BEGIN EXECUTE format('CREATE POLICY owner_read ON subscriptions "
        "FOR SELECT TO %I USING (true)', current_user); END $$"
    )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_billing_org(p_subscription text, p_customer text)
        RETURNS uuid
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT s.organization_id FROM subscriptions AS s
             WHERE (p_subscription IS NOT NULL AND s.stripe_subscription_id = p_subscription)
                OR (p_customer IS NOT NULL AND s.stripe_customer_id = p_customer)
             ORDER BY (s.stripe_subscription_id = p_subscription) DESC NULLS LAST
             LIMIT 1
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_billing_org(text, text) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION lovedcrm_billing_org(text, text)")
    op.execute("DROP POLICY IF EXISTS owner_read ON subscriptions")
    op.drop_table("billing_events")
    op.drop_index("uq_usage_metrics_org_type_start", table_name="usage_metrics")
    op.drop_index("uq_subscriptions_one_per_org", table_name="subscriptions")
    op.drop_column("subscriptions", "stripe_event_at")
    op.drop_column("subscriptions", "past_due_since")
