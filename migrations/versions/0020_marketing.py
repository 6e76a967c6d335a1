"""Marketing (issue 19): ad leads into the pipeline, ad spend for ROI, e-mail campaigns.

- ``ad_lead_receipts``: one row per provider lead id (a replay is a no-op) with its
  attribution (campaign, ad set, ad) and the lead it became.
- ``ad_form_mappings``: an ad form's fields → lead fields and custom fields.
- ``ad_spend``: a campaign's cost per day (CSV upload or Graph insights).
- ``email_campaigns``, ``campaign_recipients`` (per-recipient status), ``email_suppressions``
  (unsubscribed, hard bounces, complaints) and ``email_tracking_events`` (opens, clicks…).

Every table is a tenant table (row-level security, the tenant policy).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import Text

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "ad_lead_receipts",
    "ad_form_mappings",
    "ad_spend",
    "email_campaigns",
    "campaign_recipients",
    "email_suppressions",
    "email_tracking_events",
)


def upgrade() -> None:
    op.create_table(
        "ad_lead_receipts",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("integration_id", sa.UUID(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("provider_lead_id", sa.String(length=255), nullable=False),
        sa.Column("form_id", sa.String(length=255), nullable=True),
        sa.Column("campaign_id", sa.String(length=255), nullable=True),
        sa.Column("campaign_name", sa.String(length=255), nullable=True),
        sa.Column("adset_id", sa.String(length=255), nullable=True),
        sa.Column("ad_id", sa.String(length=255), nullable=True),
        sa.Column("is_test", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "status", sa.String(length=20), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("lead_id", sa.UUID(), nullable=True),
        sa.Column(
            "fields",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "integration_id"],
            ["marketing_integrations.organization_id", "marketing_integrations.id"],
            name=op.f("fk_ad_lead_receipts_integration_id_same_org"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "lead_id"],
            ["leads.organization_id", "leads.id"],
            name=op.f("fk_ad_lead_receipts_lead_id_same_org"),
            ondelete="SET NULL (lead_id)",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_ad_lead_receipts_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ad_lead_receipts")),
        sa.UniqueConstraint("organization_id", "id", name="uq_ad_lead_receipts_org_id_id"),
        sa.UniqueConstraint(
            "organization_id", "provider", "provider_lead_id", name="uq_ad_lead_receipts_lead"
        ),
    )
    op.create_index(
        "ix_ad_lead_receipts_org_campaign",
        "ad_lead_receipts",
        ["organization_id", "campaign_id"],
        unique=False,
    )
    op.create_index(
        "ix_ad_lead_receipts_org_lead",
        "ad_lead_receipts",
        ["organization_id", "lead_id"],
        unique=False,
    )
    op.create_table(
        "ad_form_mappings",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("integration_id", sa.UUID(), nullable=False),
        sa.Column("form_id", sa.String(length=255), nullable=False),
        sa.Column(
            "mapping",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "sample",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "integration_id"],
            ["marketing_integrations.organization_id", "marketing_integrations.id"],
            name=op.f("fk_ad_form_mappings_integration_id_same_org"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_ad_form_mappings_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ad_form_mappings")),
        sa.UniqueConstraint("organization_id", "id", name="uq_ad_form_mappings_org_id_id"),
        sa.UniqueConstraint(
            "organization_id", "integration_id", "form_id", name="uq_ad_form_mappings_form"
        ),
    )
    op.create_table(
        "ad_spend",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("campaign_id", sa.String(length=255), nullable=False),
        sa.Column("campaign_name", sa.String(length=255), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), server_default=sa.text("'BRL'"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_ad_spend_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ad_spend")),
        sa.UniqueConstraint("organization_id", "id", name="uq_ad_spend_org_id_id"),
        sa.UniqueConstraint(
            "organization_id", "provider", "campaign_id", "day", name="uq_ad_spend_campaign_day"
        ),
    )
    op.create_table(
        "email_campaigns",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column(
            "audience",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "status", sa.String(length=20), server_default=sa.text("'draft'"), nullable=False
        ),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("skipped_no_consent", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("skipped_suppressed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'scheduled', 'sending', 'sent', 'cancelled')",
            name=op.f("ck_email_campaigns_email_campaigns_status"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_email_campaigns_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_email_campaigns_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_campaigns")),
        sa.UniqueConstraint("organization_id", "id", name="uq_email_campaigns_org_id_id"),
    )
    op.create_index(
        "ix_email_campaigns_org_created",
        "email_campaigns",
        ["organization_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "campaign_recipients",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column(
            "status", sa.String(length=20), server_default=sa.text("'queued'"), nullable=False
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clicked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bounced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("converted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "campaign_id"],
            ["email_campaigns.organization_id", "email_campaigns.id"],
            name=op.f("fk_campaign_recipients_campaign_id_same_org"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "lead_id"],
            ["leads.organization_id", "leads.id"],
            name=op.f("fk_campaign_recipients_lead_id_same_org"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_campaign_recipients_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_recipients")),
        sa.UniqueConstraint("campaign_id", "lead_id", name="uq_campaign_recipients_lead"),
        sa.UniqueConstraint("organization_id", "id", name="uq_campaign_recipients_org_id_id"),
    )
    op.create_index(
        "ix_campaign_recipients_campaign_status",
        "campaign_recipients",
        ["campaign_id", "status"],
        unique=False,
    )
    op.create_table(
        "email_suppressions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("campaign_id", sa.UUID(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_email_suppressions_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_suppressions")),
        sa.UniqueConstraint("organization_id", "email", name="uq_email_suppressions_email"),
        sa.UniqueConstraint("organization_id", "id", name="uq_email_suppressions_org_id_id"),
    )
    op.create_table(
        "email_tracking_events",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("recipient_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "recipient_id"],
            ["campaign_recipients.organization_id", "campaign_recipients.id"],
            name=op.f("fk_email_tracking_events_recipient_id_same_org"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_email_tracking_events_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_tracking_events")),
        sa.UniqueConstraint("organization_id", "id", name="uq_email_tracking_events_org_id_id"),
    )
    op.create_index(
        "ix_email_tracking_events_recipient",
        "email_tracking_events",
        ["organization_id", "recipient_id"],
        unique=False,
    )

    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} FOR ALL"
            " USING (organization_id = lovedcrm_current_org())"
            " WITH CHECK (organization_id = lovedcrm_current_org())"
        )
    # A lead-ads webhook arrives before any tenant is known: this answers the integration's
    # organization, provider and (encrypted) secrets, and nothing else. The function runs as
    # the owner, whom FORCE RLS also binds.
    op.execute(
        "DO $$ BEGIN EXECUTE format('CREATE POLICY owner_read ON marketing_integrations "
        "FOR SELECT TO %I USING (true)', current_user); END $$"
    )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_marketing_webhook(p_id uuid)
        RETURNS TABLE (organization_id uuid, provider text, config_data jsonb)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT m.organization_id, m.provider::text, m.config_data
              FROM marketing_integrations m
             WHERE m.id = p_id
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_marketing_webhook(uuid) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_marketing_webhook(uuid)")
    op.execute("DROP POLICY IF EXISTS owner_read ON marketing_integrations")
    for table in reversed(TABLES):
        op.drop_table(table)
