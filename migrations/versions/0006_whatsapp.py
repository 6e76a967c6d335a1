"""WhatsApp: a sandbox provider, idempotent provider message ids, early statuses, Meta
template names, and the webhook's configuration look-up.

- ``chk_whatsapp_provider_config`` also admits ``sandbox`` (the offline provider the demo uses).
- ``ux_messages_org_provider_message``: one row per provider message id, so a redelivered
  webhook cannot store a message twice (``INSERT … ON CONFLICT DO NOTHING``).
- ``whatsapp_status_backlog``: a status that arrives before its message is kept here and
  applied when the message's provider id appears.
- ``message_templates.whatsapp_template_name`` / ``whatsapp_language``: the Meta-approved
  template a library template maps to.
- ``lovedcrm_whatsapp_webhook_config(id)``: a webhook arrives before any tenant is known;
  this narrow security-definer function returns only what verification needs.
- ``lovedcrm_store_webhook(org, type, data, max_attempts)``: stores a verified inbound
  webhook as a job in one round trip.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SPEC_CHECK = (
    "(provider_type = 'business_api' AND business_phone_id IS NOT NULL"
    " AND access_token IS NOT NULL)"
    " OR (provider_type = 'web_unofficial' AND session_id IS NOT NULL)"
)


def upgrade() -> None:
    op.drop_constraint(op.f("chk_whatsapp_provider_config"), "whatsapp_configs", type_="check")
    op.create_check_constraint(
        op.f("chk_whatsapp_provider_config"),
        "whatsapp_configs",
        f"{_SPEC_CHECK} OR (provider_type = 'sandbox')",
    )
    op.create_index(
        "ux_messages_org_provider_message",
        "messages",
        ["organization_id", "provider_type", "provider_message_id"],
        unique=True,
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )
    op.add_column(
        "message_templates", sa.Column("whatsapp_template_name", sa.String(512), nullable=True)
    )
    op.add_column("message_templates", sa.Column("whatsapp_language", sa.String(20), nullable=True))
    op.create_table(
        "whatsapp_status_backlog",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("provider_type", sa.String(50), nullable=False),
        sa.Column("provider_message_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error_code", sa.String(50), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_whatsapp_status_backlog_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_whatsapp_status_backlog")),
        sa.UniqueConstraint("organization_id", "id", name="uq_whatsapp_status_backlog_org_id_id"),
    )
    op.create_index(
        "ix_whatsapp_status_backlog_message",
        "whatsapp_status_backlog",
        ["organization_id", "provider_type", "provider_message_id"],
    )
    op.execute("ALTER TABLE whatsapp_status_backlog ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE whatsapp_status_backlog FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON whatsapp_status_backlog "
        "USING (organization_id = lovedcrm_current_org()) "
        "WITH CHECK (organization_id = lovedcrm_current_org())"
    )
    op.execute(
        "DO $$ BEGIN EXECUTE format('CREATE POLICY owner_read ON whatsapp_configs "
        "FOR SELECT TO %I USING (true)', current_user); END $$"
    )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_whatsapp_webhook_config(p_id uuid)
        RETURNS TABLE (
            organization_id uuid, provider_type text, webhook_verify_token text,
            config_data jsonb, updated_at timestamptz)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT c.organization_id, c.provider_type::text, c.webhook_verify_token::text,
                   c.config_data, c.updated_at
              FROM whatsapp_configs c
             WHERE c.id = p_id
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_whatsapp_webhook_config(uuid) FROM PUBLIC")
    # A verified webhook is stored in one round trip (no tenant set-up, no transaction
    # block): the provider's acknowledgement waits on this alone. Only inbound job types.
    op.execute(
        """
        CREATE FUNCTION lovedcrm_store_webhook(
            p_org uuid, p_type text, p_data jsonb, p_max_attempts int)
        RETURNS uuid
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE v_id uuid;
        BEGIN
            IF p_type NOT LIKE '%.inbound' THEN
                RAISE EXCEPTION 'lovedcrm_store_webhook stores inbound webhooks only, not %',
                    p_type;
            END IF;
            INSERT INTO background_jobs
                (organization_id, job_type, job_data, status, scheduled_for, max_attempts)
            VALUES (p_org, p_type, p_data, 'pending', now(), p_max_attempts)
            RETURNING id INTO v_id;
            RETURN v_id;
        END $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_store_webhook(uuid, text, jsonb, int) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_store_webhook(uuid, text, jsonb, int)")
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_whatsapp_webhook_config(uuid)")
    op.execute("DROP POLICY IF EXISTS owner_read ON whatsapp_configs")
    op.drop_table("whatsapp_status_backlog")
    op.drop_column("message_templates", "whatsapp_language")
    op.drop_column("message_templates", "whatsapp_template_name")
    op.drop_index("ux_messages_org_provider_message", table_name="messages")
    op.execute("DELETE FROM whatsapp_configs WHERE provider_type = 'sandbox'")
    op.drop_constraint(op.f("chk_whatsapp_provider_config"), "whatsapp_configs", type_="check")
    op.create_check_constraint(
        op.f("chk_whatsapp_provider_config"), "whatsapp_configs", _SPEC_CHECK
    )
