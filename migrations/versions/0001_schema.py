"""The schema of ../shared/spec/database-schema.md (27 tables) plus the account tables.

Extensions, the tenant-context functions, every table with its constraints and indexes,
then row-level security on every table that has an ``organization_id`` column.
Deviations from the spec are listed in docs/schema-deviations.md.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXTENSIONS = (
    "pg_trgm",
    "unaccent",
    "citext",
    "btree_gist",
)  # gen_random_uuid() is built in (PG 13+)

# Creation order (each table after the tables it references); downgrade drops in reverse.
TABLES: tuple[str, ...] = (
    "organizations",
    "users",
    "ai_training_data",
    "analytics_events",
    "api_keys",
    "audit_logs",
    "background_jobs",
    "calendar_integrations",
    "invitations",
    "lead_scoring_models",
    "marketing_integrations",
    "message_templates",
    "organization_members",
    "pipeline_stages",
    "provider_migrations",
    "subscriptions",
    "usage_metrics",
    "user_sessions",
    "user_tokens",
    "voip_configs",
    "whatsapp_configs",
    "leads",
    "webhook_subscriptions",
    "ai_conversations",
    "calendar_events",
    "call_logs",
    "lead_activities",
    "messages",
    "message_attachments",
    "template_usage_stats",
)

# Tables whose policies are not the plain tenant_isolation one.
SPECIAL_POLICIES: dict[str, tuple[str, ...]] = {
    "organizations": (
        """CREATE POLICY org_visible ON organizations FOR SELECT USING (
            id = lovedcrm_current_org()
            OR id IN (
                SELECT organization_id FROM organization_members
                WHERE user_id = lovedcrm_current_user() AND is_active
            )
        )""",
        "CREATE POLICY org_write ON organizations FOR INSERT"
        " WITH CHECK (id = lovedcrm_current_org())",
        "CREATE POLICY org_update ON organizations FOR UPDATE"
        " USING (id = lovedcrm_current_org()) WITH CHECK (id = lovedcrm_current_org())",
        "CREATE POLICY org_delete ON organizations FOR DELETE USING (id = lovedcrm_current_org())",
    ),
    "organization_members": (
        "CREATE POLICY tenant_isolation ON organization_members FOR ALL"
        " USING (organization_id = lovedcrm_current_org())"
        " WITH CHECK (organization_id = lovedcrm_current_org())",
        "CREATE POLICY own_memberships ON organization_members FOR SELECT"
        " USING (user_id = lovedcrm_current_user())",
    ),
    # Append-only: no UPDATE or DELETE policy, so those affect no rows.
    "audit_logs": (
        "CREATE POLICY audit_read ON audit_logs FOR SELECT"
        " USING (organization_id = lovedcrm_current_org())",
        "CREATE POLICY audit_insert ON audit_logs FOR INSERT"
        " WITH CHECK (organization_id IS NULL OR organization_id = lovedcrm_current_org())",
    ),
    "background_jobs": (
        "CREATE POLICY tenant_isolation ON background_jobs FOR ALL"
        " USING (organization_id = lovedcrm_current_org())"
        " WITH CHECK (organization_id = lovedcrm_current_org())",
        "CREATE POLICY system_jobs ON background_jobs FOR ALL"
        " USING (organization_id IS NULL AND current_setting('app.scope', true) = 'system')"
        " WITH CHECK (organization_id IS NULL AND current_setting('app.scope', true) = 'system')",
    ),
}


def _enable_rls(table: str) -> None:
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")


def upgrade() -> None:
    for extension in EXTENSIONS:
        op.execute(f"CREATE EXTENSION IF NOT EXISTS {extension}")
    # The tenant context: transaction-local settings written by lovedcrm.db.tenant.
    op.execute(
        "CREATE FUNCTION lovedcrm_current_org() RETURNS uuid LANGUAGE sql STABLE AS"
        " $$ SELECT NULLIF(current_setting('app.organization_id', true), '')::uuid $$"
    )
    op.execute(
        "CREATE FUNCTION lovedcrm_current_user() RETURNS uuid LANGUAGE sql STABLE AS"
        " $$ SELECT NULLIF(current_setting('app.user_id', true), '')::uuid $$"
    )

    created: list[sa.Table] = []
    created.append(
        op.create_table(
            "organizations",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("name", sa.String(length=255), nullable=False),
            sa.Column("slug", sa.String(length=100), nullable=False),
            sa.Column(
                "plan_tier",
                sa.String(length=50),
                server_default=sa.text("'starter'"),
                nullable=False,
            ),
            sa.Column(
                "settings",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column(
                "features_enabled",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.CheckConstraint(
                "plan_tier IN ('starter', 'pro', 'enterprise')",
                name=op.f("ck_organizations_plan_tier"),
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
            sa.UniqueConstraint("slug", name=op.f("uq_organizations_slug")),
        )
    )
    created.append(
        op.create_table(
            "users",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("email", sa.String(length=255), nullable=False),
            sa.Column("password_hash", sa.String(length=255), nullable=False),
            sa.Column("full_name", sa.String(length=255), nullable=False),
            sa.Column("phone", sa.String(length=50), nullable=True),
            sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=True),
            sa.Column(
                "email_verified", sa.Boolean(), server_default=sa.text("false"), nullable=True
            ),
            sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
            sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        )
    )
    created.append(
        op.create_table(
            "ai_training_data",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("created_by", sa.UUID(), nullable=False),
            sa.Column("data_type", sa.String(length=50), nullable=False),
            sa.Column("category", sa.String(length=100), nullable=True),
            sa.Column("input_text", sa.Text(), nullable=False),
            sa.Column("expected_output", sa.Text(), nullable=False),
            sa.Column("is_approved", sa.Boolean(), server_default=sa.text("false"), nullable=True),
            sa.Column("approved_by", sa.UUID(), nullable=True),
            sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("usage_count", sa.Integer(), server_default=sa.text("0"), nullable=True),
            sa.Column("success_rate", sa.Double(), server_default=sa.text("0"), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.ForeignKeyConstraint(
                ["approved_by"], ["users.id"], name=op.f("fk_ai_training_data_approved_by_users")
            ),
            sa.ForeignKeyConstraint(
                ["created_by"], ["users.id"], name=op.f("fk_ai_training_data_created_by_users")
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_ai_training_data_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_training_data")),
            sa.UniqueConstraint("organization_id", "id", name="uq_ai_training_data_org_id_id"),
        )
    )
    op.create_index(
        "ix_ai_training_data_category",
        "ai_training_data",
        ["organization_id", "category"],
        unique=False,
    )
    op.create_index(
        "ix_ai_training_data_org_id", "ai_training_data", ["organization_id"], unique=False
    )
    created.append(
        op.create_table(
            "analytics_events",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("user_id", sa.UUID(), nullable=True),
            sa.Column("event_type", sa.String(length=100), nullable=False),
            sa.Column(
                "event_data",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=False,
            ),
            sa.Column(
                "occurred_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_analytics_events_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                ["user_id"], ["users.id"], name=op.f("fk_analytics_events_user_id_users")
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_events")),
            sa.UniqueConstraint("organization_id", "id", name="uq_analytics_events_org_id_id"),
        )
    )
    op.create_index(
        "ix_analytics_events_occurred_at",
        "analytics_events",
        [sa.literal_column("occurred_at DESC")],
        unique=False,
    )
    op.create_index(
        "ix_analytics_events_org_type",
        "analytics_events",
        ["organization_id", "event_type"],
        unique=False,
    )
    created.append(
        op.create_table(
            "api_keys",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("created_by", sa.UUID(), nullable=False),
            sa.Column("key_name", sa.String(length=255), nullable=False),
            sa.Column("api_key_hash", sa.String(length=255), nullable=False),
            sa.Column("api_key_prefix", sa.String(length=20), nullable=False),
            sa.Column(
                "scopes",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'[]'::jsonb"),
                nullable=False,
            ),
            sa.Column(
                "rate_limit_per_hour", sa.Integer(), server_default=sa.text("1000"), nullable=True
            ),
            sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("total_requests", sa.Integer(), server_default=sa.text("0"), nullable=True),
            sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=True),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.ForeignKeyConstraint(
                ["created_by"], ["users.id"], name=op.f("fk_api_keys_created_by_users")
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_api_keys_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
            sa.UniqueConstraint("api_key_hash", name=op.f("uq_api_keys_api_key_hash")),
            sa.UniqueConstraint("organization_id", "id", name="uq_api_keys_org_id_id"),
        )
    )
    op.create_index("ix_api_keys_hash", "api_keys", ["api_key_hash"], unique=False)
    op.create_index(
        "ix_api_keys_org_active",
        "api_keys",
        ["organization_id", "is_active"],
        unique=False,
        postgresql_where=sa.text("is_active = TRUE"),
    )
    op.create_index("ix_api_keys_org_id", "api_keys", ["organization_id"], unique=False)
    op.create_index("ix_api_keys_prefix", "api_keys", ["api_key_prefix"], unique=False)
    created.append(
        op.create_table(
            "audit_logs",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("organization_id", sa.UUID(), nullable=True),
            sa.Column("user_id", sa.UUID(), nullable=True),
            sa.Column("action", sa.String(length=100), nullable=False),
            sa.Column("resource_type", sa.String(length=100), nullable=False),
            sa.Column("resource_id", sa.UUID(), nullable=True),
            sa.Column("ip_address", postgresql.INET(), nullable=True),
            sa.Column("user_agent", sa.Text(), nullable=True),
            sa.Column("request_id", sa.UUID(), nullable=True),
            sa.Column(
                "changes",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column("success", sa.Boolean(), server_default=sa.text("true"), nullable=True),
            sa.Column("failure_reason", sa.Text(), nullable=True),
            sa.Column("risk_score", sa.Integer(), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.CheckConstraint(
                "risk_score >= 0 AND risk_score <= 100", name=op.f("ck_audit_logs_risk_score")
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_audit_logs_organization_id_organizations"),
                ondelete="SET NULL",
            ),
            sa.ForeignKeyConstraint(
                ["user_id"],
                ["users.id"],
                name=op.f("fk_audit_logs_user_id_users"),
                ondelete="SET NULL",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_logs")),
            sa.UniqueConstraint("organization_id", "id", name="uq_audit_logs_org_id_id"),
        )
    )
    op.create_index("ix_audit_logs_action", "audit_logs", ["action"], unique=False)
    op.create_index(
        "ix_audit_logs_created_at",
        "audit_logs",
        [sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_index(
        "ix_audit_logs_org_action_created",
        "audit_logs",
        ["organization_id", "action", sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_index("ix_audit_logs_org_id", "audit_logs", ["organization_id"], unique=False)
    op.create_index(
        "ix_audit_logs_resource", "audit_logs", ["resource_type", "resource_id"], unique=False
    )
    op.create_index(
        "ix_audit_logs_security_risk",
        "audit_logs",
        ["organization_id", sa.literal_column("risk_score DESC")],
        unique=False,
        postgresql_where=sa.text("risk_score > 50"),
    )
    op.create_index("ix_audit_logs_user_id", "audit_logs", ["user_id"], unique=False)
    created.append(
        op.create_table(
            "background_jobs",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("organization_id", sa.UUID(), nullable=True),
            sa.Column("job_type", sa.String(length=100), nullable=False),
            sa.Column(
                "job_data",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=False,
            ),
            sa.Column(
                "status", sa.String(length=50), server_default=sa.text("'pending'"), nullable=True
            ),
            sa.Column(
                "scheduled_for",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=True),
            sa.Column("max_attempts", sa.Integer(), server_default=sa.text("3"), nullable=True),
            sa.Column(
                "result_data",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column("error_message", sa.Text(), nullable=True),
            sa.Column("locked_by", sa.String(length=255), nullable=True),
            sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
            sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.CheckConstraint(
                "status IN ('pending', 'running', 'completed', 'failed', 'retrying')",
                name=op.f("ck_background_jobs_status"),
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_background_jobs_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_background_jobs")),
            sa.UniqueConstraint("organization_id", "id", name="uq_background_jobs_org_id_id"),
        )
    )
    op.create_index(
        "ix_background_jobs_org_id", "background_jobs", ["organization_id"], unique=False
    )
    op.create_index(
        "ix_background_jobs_org_status_scheduled",
        "background_jobs",
        ["organization_id", "status", "scheduled_for"],
        unique=False,
    )
    op.create_index(
        "ix_background_jobs_pending_scheduled",
        "background_jobs",
        ["status", "scheduled_for"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_background_jobs_scheduled", "background_jobs", ["scheduled_for"], unique=False
    )
    op.create_index("ix_background_jobs_status", "background_jobs", ["status"], unique=False)
    op.create_index("ix_background_jobs_type", "background_jobs", ["job_type"], unique=False)
    created.append(
        op.create_table(
            "calendar_integrations",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("user_id", sa.UUID(), nullable=False),
            sa.Column("provider", sa.String(length=50), nullable=False),
            sa.Column("provider_user_id", sa.String(length=255), nullable=True),
            sa.Column("access_token", sa.Text(), nullable=True),
            sa.Column("refresh_token", sa.Text(), nullable=True),
            sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("calendar_id", sa.String(length=255), nullable=True),
            sa.Column("calendar_name", sa.String(length=255), nullable=True),
            sa.Column(
                "sync_status",
                sa.String(length=50),
                server_default=sa.text("'active'"),
                nullable=True,
            ),
            sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("sync_error", sa.Text(), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_calendar_integrations_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                ["user_id"], ["users.id"], name=op.f("fk_calendar_integrations_user_id_users")
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_integrations")),
            sa.UniqueConstraint("organization_id", "id", name="uq_calendar_integrations_org_id_id"),
        )
    )
    op.create_index(
        "ix_calendar_integrations_org_id",
        "calendar_integrations",
        ["organization_id"],
        unique=False,
    )
    op.create_index(
        "ix_calendar_integrations_org_sync_status",
        "calendar_integrations",
        ["organization_id", "sync_status"],
        unique=False,
    )
    op.create_index(
        "ix_calendar_integrations_user_id", "calendar_integrations", ["user_id"], unique=False
    )
    created.append(
        op.create_table(
            "invitations",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("email", sa.String(length=255), nullable=False),
            sa.Column("role", sa.String(length=50), nullable=False),
            sa.Column("token_hash", sa.String(length=64), nullable=False),
            sa.Column("invited_by", sa.UUID(), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("accepted_by", sa.UUID(), nullable=True),
            sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=False,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.CheckConstraint(
                "role IN ('admin', 'manager', 'sales', 'viewer')", name=op.f("ck_invitations_role")
            ),
            sa.ForeignKeyConstraint(
                ["accepted_by"], ["users.id"], name=op.f("fk_invitations_accepted_by_users")
            ),
            sa.ForeignKeyConstraint(
                ["invited_by"], ["users.id"], name=op.f("fk_invitations_invited_by_users")
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_invitations_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
            sa.UniqueConstraint("organization_id", "id", name="uq_invitations_org_id_id"),
            sa.UniqueConstraint("token_hash", name=op.f("uq_invitations_token_hash")),
        )
    )
    op.create_index(
        "ix_invitations_pending_email",
        "invitations",
        ["organization_id", "email"],
        unique=True,
        postgresql_where=sa.text("accepted_at IS NULL AND revoked_at IS NULL"),
    )
    created.append(
        op.create_table(
            "lead_scoring_models",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("model_name", sa.String(length=255), nullable=False),
            sa.Column("model_version", sa.String(length=50), nullable=False),
            sa.Column("model_type", sa.String(length=50), nullable=False),
            sa.Column(
                "config_data",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=False,
            ),
            sa.Column(
                "scoring_factors",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=False,
            ),
            sa.Column("accuracy_score", sa.Double(), nullable=True),
            sa.Column("precision_score", sa.Double(), nullable=True),
            sa.Column("recall_score", sa.Double(), nullable=True),
            sa.Column("is_active", sa.Boolean(), server_default=sa.text("false"), nullable=True),
            sa.Column("training_completed_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_lead_scoring_models_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_scoring_models")),
            sa.UniqueConstraint("organization_id", "id", name="uq_lead_scoring_models_org_id_id"),
        )
    )
    op.create_index(
        "ix_lead_scoring_models_org_id", "lead_scoring_models", ["organization_id"], unique=False
    )
    op.create_index(
        "ix_one_active_scoring_model_per_org",
        "lead_scoring_models",
        ["organization_id"],
        unique=True,
        postgresql_where=sa.text("is_active = TRUE"),
    )
    created.append(
        op.create_table(
            "marketing_integrations",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("provider", sa.String(length=50), nullable=False),
            sa.Column("access_token", sa.Text(), nullable=True),
            sa.Column("refresh_token", sa.Text(), nullable=True),
            sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("account_id", sa.String(length=255), nullable=True),
            sa.Column("account_name", sa.String(length=255), nullable=True),
            sa.Column(
                "config_data",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column(
                "sync_status",
                sa.String(length=50),
                server_default=sa.text("'active'"),
                nullable=True,
            ),
            sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("sync_error", sa.Text(), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_marketing_integrations_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_marketing_integrations")),
            sa.UniqueConstraint(
                "organization_id", "id", name="uq_marketing_integrations_org_id_id"
            ),
        )
    )
    op.create_index(
        "ix_marketing_integrations_org_id",
        "marketing_integrations",
        ["organization_id"],
        unique=False,
    )
    created.append(
        op.create_table(
            "message_templates",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("created_by", sa.UUID(), nullable=False),
            sa.Column("name", sa.String(length=255), nullable=False),
            sa.Column("category", sa.String(length=100), nullable=False),
            sa.Column("content", sa.Text(), nullable=False),
            sa.Column(
                "variables",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'[]'::jsonb"),
                nullable=True,
            ),
            sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=True),
            sa.Column("parent_template_id", sa.UUID(), nullable=True),
            sa.Column("usage_count", sa.Integer(), server_default=sa.text("0"), nullable=True),
            sa.Column("success_rate", sa.Double(), server_default=sa.text("0"), nullable=True),
            sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=True),
            sa.Column("is_shared", sa.Boolean(), server_default=sa.text("false"), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.ForeignKeyConstraint(
                ["created_by"], ["users.id"], name=op.f("fk_message_templates_created_by_users")
            ),
            sa.ForeignKeyConstraint(
                ["organization_id", "parent_template_id"],
                ["message_templates.organization_id", "message_templates.id"],
                name=op.f("fk_message_templates_parent_template_id_same_org"),
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_message_templates_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_message_templates")),
            sa.UniqueConstraint("organization_id", "id", name="uq_message_templates_org_id_id"),
        )
    )
    op.create_index(
        "ix_message_templates_category",
        "message_templates",
        ["organization_id", "category"],
        unique=False,
    )
    op.create_index(
        "ix_message_templates_created_by", "message_templates", ["created_by"], unique=False
    )
    op.create_index(
        "ix_message_templates_org_category_active",
        "message_templates",
        ["organization_id", "category", "is_active"],
        unique=False,
        postgresql_where=sa.text("is_active = TRUE"),
    )
    op.create_index(
        "ix_message_templates_org_id", "message_templates", ["organization_id"], unique=False
    )
    created.append(
        op.create_table(
            "organization_members",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("user_id", sa.UUID(), nullable=False),
            sa.Column(
                "role", sa.String(length=50), server_default=sa.text("'sales'"), nullable=False
            ),
            sa.Column(
                "permissions",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=True),
            sa.Column(
                "joined_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.CheckConstraint(
                "role IN ('admin', 'manager', 'sales', 'viewer')",
                name=op.f("ck_organization_members_role"),
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_organization_members_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                ["user_id"],
                ["users.id"],
                name=op.f("fk_organization_members_user_id_users"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_organization_members")),
            sa.UniqueConstraint("organization_id", "id", name="uq_organization_members_org_id_id"),
            sa.UniqueConstraint(
                "organization_id",
                "user_id",
                name=op.f("uq_organization_members_organization_id_user_id"),
            ),
        )
    )
    op.create_index(
        "ix_organization_members_org_id", "organization_members", ["organization_id"], unique=False
    )
    op.create_index(
        "ix_organization_members_user_id", "organization_members", ["user_id"], unique=False
    )
    created.append(
        op.create_table(
            "pipeline_stages",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("name", sa.String(length=100), nullable=False),
            sa.Column("stage_order", sa.Integer(), nullable=False),
            sa.Column(
                "color", sa.String(length=7), server_default=sa.text("'#6366f1'"), nullable=True
            ),
            sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=True),
            sa.Column(
                "stage_type",
                sa.String(length=50),
                server_default=sa.text("'custom'"),
                nullable=True,
            ),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.CheckConstraint("color ~ '^#[0-9a-fA-F]{6}$'", name=op.f("valid_color_format")),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_pipeline_stages_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_stages")),
            sa.UniqueConstraint("organization_id", "id", name="uq_pipeline_stages_org_id_id"),
            sa.UniqueConstraint(
                "organization_id",
                "stage_order",
                name=op.f("uq_pipeline_stages_organization_id_stage_order"),
            ),
        )
    )
    op.create_index(
        "ix_pipeline_stages_org_id", "pipeline_stages", ["organization_id"], unique=False
    )
    op.create_index(
        "ix_pipeline_stages_org_order",
        "pipeline_stages",
        ["organization_id", "stage_order"],
        unique=False,
    )
    created.append(
        op.create_table(
            "provider_migrations",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("migration_type", sa.String(length=50), nullable=False),
            sa.Column("from_provider", sa.String(length=50), nullable=False),
            sa.Column("to_provider", sa.String(length=50), nullable=False),
            sa.Column(
                "status", sa.String(length=50), server_default=sa.text("'pending'"), nullable=True
            ),
            sa.Column(
                "migration_data",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column(
                "backup_data",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_provider_migrations_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_migrations")),
            sa.UniqueConstraint("organization_id", "id", name="uq_provider_migrations_org_id_id"),
        )
    )
    op.create_index(
        "ix_provider_migrations_org_id", "provider_migrations", ["organization_id"], unique=False
    )
    created.append(
        op.create_table(
            "subscriptions",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("stripe_subscription_id", sa.String(length=255), nullable=True),
            sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
            sa.Column("plan_tier", sa.String(length=50), nullable=False),
            sa.Column("billing_cycle", sa.String(length=20), nullable=False),
            sa.Column("amount_cents", sa.Integer(), nullable=False),
            sa.Column(
                "currency", sa.String(length=3), server_default=sa.text("'USD'"), nullable=True
            ),
            sa.Column("status", sa.String(length=50), nullable=False),
            sa.Column("current_period_start", sa.DateTime(timezone=True), nullable=False),
            sa.Column("current_period_end", sa.DateTime(timezone=True), nullable=False),
            sa.Column("trial_end", sa.DateTime(timezone=True), nullable=True),
            sa.Column("canceled_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.CheckConstraint(
                "plan_tier IN ('starter', 'pro', 'enterprise')",
                name=op.f("ck_subscriptions_plan_tier"),
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_subscriptions_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
            sa.UniqueConstraint("organization_id", "id", name="uq_subscriptions_org_id_id"),
            sa.UniqueConstraint(
                "stripe_subscription_id", name=op.f("uq_subscriptions_stripe_subscription_id")
            ),
        )
    )
    op.create_index("ix_subscriptions_org_id", "subscriptions", ["organization_id"], unique=False)
    op.create_index("ix_subscriptions_status", "subscriptions", ["status"], unique=False)
    op.create_index(
        "ix_subscriptions_stripe_id", "subscriptions", ["stripe_subscription_id"], unique=False
    )
    created.append(
        op.create_table(
            "usage_metrics",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("metric_type", sa.String(length=100), nullable=False),
            sa.Column("metric_value", sa.Integer(), nullable=False),
            sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
            sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
            sa.Column(
                "metadata",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_usage_metrics_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_metrics")),
            sa.UniqueConstraint("organization_id", "id", name="uq_usage_metrics_org_id_id"),
        )
    )
    op.create_index("ix_usage_metrics_org_id", "usage_metrics", ["organization_id"], unique=False)
    op.create_index(
        "ix_usage_metrics_org_type_period",
        "usage_metrics",
        ["organization_id", "metric_type", sa.literal_column("period_start DESC")],
        unique=False,
    )
    op.create_index(
        "ix_usage_metrics_period", "usage_metrics", ["period_start", "period_end"], unique=False
    )
    op.create_index("ix_usage_metrics_type", "usage_metrics", ["metric_type"], unique=False)
    created.append(
        op.create_table(
            "user_sessions",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("user_id", sa.UUID(), nullable=False),
            sa.Column("kind", sa.String(length=20), nullable=False),
            sa.Column("token_hash", sa.String(length=64), nullable=False),
            sa.Column("active_organization_id", sa.UUID(), nullable=True),
            sa.Column("ip_address", postgresql.INET(), nullable=True),
            sa.Column("user_agent", sa.Text(), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=False,
            ),
            sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
            sa.CheckConstraint("kind IN ('web', 'api')", name=op.f("ck_user_sessions_kind")),
            sa.ForeignKeyConstraint(
                ["active_organization_id"],
                ["organizations.id"],
                name=op.f("fk_user_sessions_active_organization_id_organizations"),
                ondelete="SET NULL",
            ),
            sa.ForeignKeyConstraint(
                ["user_id"],
                ["users.id"],
                name=op.f("fk_user_sessions_user_id_users"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_user_sessions")),
            sa.UniqueConstraint("token_hash", name=op.f("uq_user_sessions_token_hash")),
        )
    )
    op.create_index("ix_user_sessions_user_id", "user_sessions", ["user_id"], unique=False)
    created.append(
        op.create_table(
            "user_tokens",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("user_id", sa.UUID(), nullable=False),
            sa.Column("purpose", sa.String(length=30), nullable=False),
            sa.Column("token_hash", sa.String(length=64), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=False,
            ),
            sa.CheckConstraint(
                "purpose IN ('verify_email', 'reset_password')", name=op.f("ck_user_tokens_purpose")
            ),
            sa.ForeignKeyConstraint(
                ["user_id"],
                ["users.id"],
                name=op.f("fk_user_tokens_user_id_users"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_user_tokens")),
            sa.UniqueConstraint("token_hash", name=op.f("uq_user_tokens_token_hash")),
        )
    )
    op.create_index("ix_user_tokens_user_id", "user_tokens", ["user_id"], unique=False)
    created.append(
        op.create_table(
            "voip_configs",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("provider_type", sa.String(length=50), nullable=False),
            sa.Column("is_active", sa.Boolean(), server_default=sa.text("false"), nullable=True),
            sa.Column("account_sid", sa.String(length=100), nullable=True),
            sa.Column("auth_token", sa.Text(), nullable=True),
            sa.Column("api_key", sa.Text(), nullable=True),
            sa.Column(
                "business_numbers",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'[]'::jsonb"),
                nullable=True,
            ),
            sa.Column(
                "config_data",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column("cost_per_minute", sa.Numeric(precision=6, scale=4), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.CheckConstraint(
                "(provider_type = 'twilio' AND account_sid IS NOT NULL AND auth_token IS NOT NULL) OR (provider_type = 'telnyx' AND api_key IS NOT NULL)",
                name=op.f("chk_voip_provider_config"),
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_voip_configs_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_voip_configs")),
            sa.UniqueConstraint("organization_id", "id", name="uq_voip_configs_org_id_id"),
        )
    )
    op.create_index("ix_voip_configs_org_id", "voip_configs", ["organization_id"], unique=False)
    op.create_index(
        "ix_voip_one_active_per_org",
        "voip_configs",
        ["organization_id"],
        unique=True,
        postgresql_where=sa.text("is_active = TRUE"),
    )
    created.append(
        op.create_table(
            "whatsapp_configs",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("provider_type", sa.String(length=50), nullable=False),
            sa.Column("is_active", sa.Boolean(), server_default=sa.text("false"), nullable=True),
            sa.Column("business_phone_id", sa.String(length=100), nullable=True),
            sa.Column("access_token", sa.Text(), nullable=True),
            sa.Column("webhook_verify_token", sa.String(length=255), nullable=True),
            sa.Column("business_account_id", sa.String(length=100), nullable=True),
            sa.Column("session_id", sa.String(length=100), nullable=True),
            sa.Column("qr_code_data", sa.Text(), nullable=True),
            sa.Column(
                "connection_status",
                sa.String(length=50),
                server_default=sa.text("'disconnected'"),
                nullable=True,
            ),
            sa.Column("last_connected_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column(
                "config_data",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column(
                "rate_limits",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.CheckConstraint(
                "(provider_type = 'business_api' AND business_phone_id IS NOT NULL AND access_token IS NOT NULL) OR (provider_type = 'web_unofficial' AND session_id IS NOT NULL)",
                name=op.f("chk_whatsapp_provider_config"),
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_whatsapp_configs_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_whatsapp_configs")),
            sa.UniqueConstraint("organization_id", "id", name="uq_whatsapp_configs_org_id_id"),
        )
    )
    op.create_index(
        "ix_whatsapp_configs_org_id", "whatsapp_configs", ["organization_id"], unique=False
    )
    op.create_index(
        "ix_whatsapp_one_active_per_org",
        "whatsapp_configs",
        ["organization_id"],
        unique=True,
        postgresql_where=sa.text("is_active = TRUE"),
    )
    created.append(
        op.create_table(
            "leads",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("full_name", sa.String(length=255), nullable=False),
            sa.Column("email", sa.String(length=255), nullable=True),
            sa.Column("phone", sa.String(length=50), nullable=True),
            sa.Column("company", sa.String(length=255), nullable=True),
            sa.Column("job_title", sa.String(length=255), nullable=True),
            sa.Column("stage_id", sa.UUID(), nullable=False),
            sa.Column("assigned_to", sa.UUID(), nullable=True),
            sa.Column("source", sa.String(length=100), nullable=True),
            sa.Column("lead_score", sa.Integer(), server_default=sa.text("0"), nullable=True),
            sa.Column("score_last_calculated_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("estimated_value", sa.Numeric(precision=10, scale=2), nullable=True),
            sa.Column(
                "probability_percentage", sa.Integer(), server_default=sa.text("0"), nullable=True
            ),
            sa.Column(
                "custom_fields",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column(
                "status", sa.String(length=50), server_default=sa.text("'active'"), nullable=True
            ),
            sa.Column("converted_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("lost_reason", sa.String(length=255), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.CheckConstraint(
                "status IN ('active', 'inactive', 'converted', 'lost')",
                name=op.f("ck_leads_status"),
            ),
            sa.CheckConstraint(
                "lead_score >= 0 AND lead_score <= 100", name=op.f("chk_lead_score_valid")
            ),
            sa.CheckConstraint(
                "lead_score >= 0 AND lead_score <= 100", name=op.f("ck_leads_lead_score")
            ),
            sa.CheckConstraint(
                "probability_percentage >= 0 AND probability_percentage <= 100",
                name=op.f("ck_leads_probability_percentage"),
            ),
            sa.ForeignKeyConstraint(
                ["assigned_to"], ["users.id"], name=op.f("fk_leads_assigned_to_users")
            ),
            sa.ForeignKeyConstraint(
                ["organization_id", "stage_id"],
                ["pipeline_stages.organization_id", "pipeline_stages.id"],
                name=op.f("fk_leads_stage_id_same_org"),
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_leads_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_leads")),
            sa.UniqueConstraint("organization_id", "id", name="uq_leads_org_id_id"),
        )
    )
    op.create_index(
        "ix_leads_email",
        "leads",
        ["email"],
        unique=False,
        postgresql_where=sa.text("email IS NOT NULL"),
    )
    op.create_index(
        "ix_leads_org_assigned", "leads", ["organization_id", "assigned_to"], unique=False
    )
    op.create_index(
        "ix_leads_org_assigned_active",
        "leads",
        ["organization_id", "assigned_to"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index(
        "ix_leads_org_score",
        "leads",
        ["organization_id", sa.literal_column("lead_score DESC")],
        unique=False,
    )
    op.create_index("ix_leads_org_stage", "leads", ["organization_id", "stage_id"], unique=False)
    op.create_index(
        "ix_leads_org_stage_score",
        "leads",
        ["organization_id", "stage_id", sa.literal_column("lead_score DESC")],
        unique=False,
    )
    op.create_index("ix_leads_organization_id", "leads", ["organization_id"], unique=False)
    op.create_index(
        "ix_leads_phone",
        "leads",
        ["phone"],
        unique=False,
        postgresql_where=sa.text("phone IS NOT NULL"),
    )
    created.append(
        op.create_table(
            "webhook_subscriptions",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("api_key_id", sa.UUID(), nullable=False),
            sa.Column("webhook_url", sa.Text(), nullable=False),
            sa.Column(
                "events",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'[]'::jsonb"),
                nullable=False,
            ),
            sa.Column("secret_token", sa.String(length=255), nullable=False),
            sa.Column("max_retries", sa.Integer(), server_default=sa.text("3"), nullable=True),
            sa.Column(
                "retry_backoff_seconds", sa.Integer(), server_default=sa.text("300"), nullable=True
            ),
            sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=True),
            sa.Column("last_triggered_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("failure_count", sa.Integer(), server_default=sa.text("0"), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.ForeignKeyConstraint(
                ["organization_id", "api_key_id"],
                ["api_keys.organization_id", "api_keys.id"],
                name=op.f("fk_webhook_subscriptions_api_key_id_same_org"),
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_webhook_subscriptions_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriptions")),
            sa.UniqueConstraint("organization_id", "id", name="uq_webhook_subscriptions_org_id_id"),
        )
    )
    op.create_index(
        "ix_webhook_subscriptions_api_key", "webhook_subscriptions", ["api_key_id"], unique=False
    )
    op.create_index(
        "ix_webhook_subscriptions_org_id",
        "webhook_subscriptions",
        ["organization_id"],
        unique=False,
    )
    created.append(
        op.create_table(
            "ai_conversations",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("lead_id", sa.UUID(), nullable=True),
            sa.Column("conversation_title", sa.String(length=255), nullable=True),
            sa.Column("context_summary", sa.Text(), nullable=True),
            sa.Column("total_messages", sa.Integer(), server_default=sa.text("0"), nullable=True),
            sa.Column(
                "status", sa.String(length=50), server_default=sa.text("'active'"), nullable=True
            ),
            sa.Column("handed_off_to", sa.UUID(), nullable=True),
            sa.Column("handed_off_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column(
                "total_tokens_used", sa.Integer(), server_default=sa.text("0"), nullable=True
            ),
            sa.Column("context_tokens", sa.Integer(), server_default=sa.text("0"), nullable=True),
            sa.Column("qualification_score", sa.Integer(), nullable=True),
            sa.Column("success_outcome", sa.Boolean(), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.CheckConstraint(
                "qualification_score >= 0 AND qualification_score <= 100",
                name=op.f("ck_ai_conversations_qualification_score"),
            ),
            sa.ForeignKeyConstraint(
                ["handed_off_to"],
                ["users.id"],
                name=op.f("fk_ai_conversations_handed_off_to_users"),
            ),
            sa.ForeignKeyConstraint(
                ["organization_id", "lead_id"],
                ["leads.organization_id", "leads.id"],
                name=op.f("fk_ai_conversations_lead_id_same_org"),
                ondelete="SET NULL (lead_id)",
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_ai_conversations_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_conversations")),
            sa.UniqueConstraint("organization_id", "id", name="uq_ai_conversations_org_id_id"),
        )
    )
    op.create_index("ix_ai_conversations_lead_id", "ai_conversations", ["lead_id"], unique=False)
    op.create_index(
        "ix_ai_conversations_org_active",
        "ai_conversations",
        ["organization_id", "status"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index(
        "ix_ai_conversations_org_id", "ai_conversations", ["organization_id"], unique=False
    )
    created.append(
        op.create_table(
            "calendar_events",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("lead_id", sa.UUID(), nullable=True),
            sa.Column("created_by", sa.UUID(), nullable=False),
            sa.Column("title", sa.String(length=255), nullable=False),
            sa.Column("description", sa.Text(), nullable=True),
            sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
            sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
            sa.Column("timezone", sa.String(length=100), nullable=False),
            sa.Column("meeting_url", sa.Text(), nullable=True),
            sa.Column("meeting_password", sa.String(length=100), nullable=True),
            sa.Column("external_event_id", sa.String(length=255), nullable=True),
            sa.Column("calendar_integration_id", sa.UUID(), nullable=True),
            sa.Column(
                "attendees",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'[]'::jsonb"),
                nullable=True,
            ),
            sa.Column(
                "status", sa.String(length=50), server_default=sa.text("'scheduled'"), nullable=True
            ),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.ForeignKeyConstraint(
                ["created_by"], ["users.id"], name=op.f("fk_calendar_events_created_by_users")
            ),
            sa.ForeignKeyConstraint(
                ["organization_id", "calendar_integration_id"],
                ["calendar_integrations.organization_id", "calendar_integrations.id"],
                name=op.f("fk_calendar_events_calendar_integration_id_same_org"),
            ),
            sa.ForeignKeyConstraint(
                ["organization_id", "lead_id"],
                ["leads.organization_id", "leads.id"],
                name=op.f("fk_calendar_events_lead_id_same_org"),
                ondelete="SET NULL (lead_id)",
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_calendar_events_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_events")),
            sa.UniqueConstraint("organization_id", "id", name="uq_calendar_events_org_id_id"),
        )
    )
    op.create_index("ix_calendar_events_lead_id", "calendar_events", ["lead_id"], unique=False)
    op.create_index(
        "ix_calendar_events_org_id", "calendar_events", ["organization_id"], unique=False
    )
    op.create_index(
        "ix_calendar_events_org_start_time",
        "calendar_events",
        ["organization_id", sa.literal_column("start_time DESC")],
        unique=False,
    )
    op.create_index(
        "ix_calendar_events_start_time", "calendar_events", ["start_time"], unique=False
    )
    created.append(
        op.create_table(
            "call_logs",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("lead_id", sa.UUID(), nullable=True),
            sa.Column("user_id", sa.UUID(), nullable=True),
            sa.Column("provider_type", sa.String(length=50), nullable=False),
            sa.Column("provider_call_id", sa.String(length=255), nullable=True),
            sa.Column("direction", sa.String(length=10), nullable=False),
            sa.Column("from_number", sa.String(length=50), nullable=True),
            sa.Column("to_number", sa.String(length=50), nullable=True),
            sa.Column("status", sa.String(length=50), nullable=True),
            sa.Column("duration_seconds", sa.Integer(), server_default=sa.text("0"), nullable=True),
            sa.Column("quality_score", sa.Double(), nullable=True),
            sa.Column("recording_url", sa.Text(), nullable=True),
            sa.Column("recording_duration_seconds", sa.Integer(), nullable=True),
            sa.Column("transcription", sa.Text(), nullable=True),
            sa.Column("cost_cents", sa.Integer(), nullable=True),
            sa.Column(
                "cost_currency", sa.String(length=3), server_default=sa.text("'USD'"), nullable=True
            ),
            sa.Column(
                "metadata",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.CheckConstraint(
                "direction IN ('inbound', 'outbound')", name=op.f("ck_call_logs_direction")
            ),
            sa.ForeignKeyConstraint(
                ["organization_id", "lead_id"],
                ["leads.organization_id", "leads.id"],
                name=op.f("fk_call_logs_lead_id_same_org"),
                ondelete="SET NULL (lead_id)",
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_call_logs_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                ["user_id"], ["users.id"], name=op.f("fk_call_logs_user_id_users")
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_call_logs")),
            sa.UniqueConstraint("organization_id", "id", name="uq_call_logs_org_id_id"),
        )
    )
    op.create_index(
        "ix_call_logs_created_at", "call_logs", [sa.literal_column("created_at DESC")], unique=False
    )
    op.create_index("ix_call_logs_lead_id", "call_logs", ["lead_id"], unique=False)
    op.create_index(
        "ix_call_logs_org_lead_created",
        "call_logs",
        ["organization_id", "lead_id", sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_index("ix_call_logs_organization_id", "call_logs", ["organization_id"], unique=False)
    op.create_index(
        "ix_call_logs_provider", "call_logs", ["provider_type", "provider_call_id"], unique=False
    )
    op.create_index("ix_call_logs_user_id", "call_logs", ["user_id"], unique=False)
    created.append(
        op.create_table(
            "lead_activities",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("lead_id", sa.UUID(), nullable=False),
            sa.Column("user_id", sa.UUID(), nullable=True),
            sa.Column("activity_type", sa.String(length=50), nullable=False),
            sa.Column("title", sa.String(length=255), nullable=False),
            sa.Column("description", sa.Text(), nullable=True),
            sa.Column(
                "metadata",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column("duration_minutes", sa.Integer(), nullable=True),
            sa.Column("external_id", sa.String(length=255), nullable=True),
            sa.Column("external_provider", sa.String(length=50), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.ForeignKeyConstraint(
                ["organization_id", "lead_id"],
                ["leads.organization_id", "leads.id"],
                name=op.f("fk_lead_activities_lead_id_same_org"),
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_lead_activities_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                ["user_id"], ["users.id"], name=op.f("fk_lead_activities_user_id_users")
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_activities")),
            sa.UniqueConstraint("organization_id", "id", name="uq_lead_activities_org_id_id"),
        )
    )
    op.create_index(
        "ix_lead_activities_created_at",
        "lead_activities",
        [sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_index("ix_lead_activities_lead_id", "lead_activities", ["lead_id"], unique=False)
    op.create_index(
        "ix_lead_activities_org_id", "lead_activities", ["organization_id"], unique=False
    )
    op.create_index(
        "ix_lead_activities_org_recent",
        "lead_activities",
        ["organization_id", sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_index(
        "ix_lead_activities_org_type",
        "lead_activities",
        ["organization_id", "activity_type"],
        unique=False,
    )
    created.append(
        op.create_table(
            "messages",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("lead_id", sa.UUID(), nullable=True),
            sa.Column("conversation_id", sa.UUID(), nullable=True),
            sa.Column("provider_type", sa.String(length=50), nullable=False),
            sa.Column("provider_message_id", sa.String(length=255), nullable=True),
            sa.Column("direction", sa.String(length=10), nullable=False),
            sa.Column(
                "message_type",
                sa.String(length=50),
                server_default=sa.text("'text'"),
                nullable=True,
            ),
            sa.Column("content", sa.Text(), nullable=True),
            sa.Column("from_number", sa.String(length=50), nullable=True),
            sa.Column("to_number", sa.String(length=50), nullable=True),
            sa.Column("contact_name", sa.String(length=255), nullable=True),
            sa.Column(
                "status", sa.String(length=50), server_default=sa.text("'pending'"), nullable=True
            ),
            sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("failed_reason", sa.Text(), nullable=True),
            sa.Column("sentiment_score", sa.Double(), nullable=True),
            sa.Column("urgency_score", sa.Integer(), nullable=True),
            sa.Column("ai_summary", sa.Text(), nullable=True),
            sa.Column("ai_processed_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column(
                "metadata",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'{}'::jsonb"),
                nullable=True,
            ),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.CheckConstraint(
                "direction IN ('inbound', 'outbound')", name=op.f("ck_messages_direction")
            ),
            sa.CheckConstraint(
                "status IN ('pending', 'sent', 'delivered', 'read', 'failed')",
                name=op.f("ck_messages_status"),
            ),
            sa.CheckConstraint(
                "sentiment_score >= -1 AND sentiment_score <= 1",
                name=op.f("ck_messages_sentiment_score"),
            ),
            sa.CheckConstraint(
                "sentiment_score IS NULL OR (sentiment_score >= -1.0 AND sentiment_score <= 1.0)",
                name=op.f("chk_message_sentiment_valid"),
            ),
            sa.CheckConstraint(
                "urgency_score >= 0 AND urgency_score <= 100",
                name=op.f("ck_messages_urgency_score"),
            ),
            sa.ForeignKeyConstraint(
                ["organization_id", "lead_id"],
                ["leads.organization_id", "leads.id"],
                name=op.f("fk_messages_lead_id_same_org"),
                ondelete="SET NULL (lead_id)",
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_messages_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
            sa.UniqueConstraint("organization_id", "id", name="uq_messages_org_id_id"),
        )
    )
    op.create_index(
        "ix_messages_created_at", "messages", [sa.literal_column("created_at DESC")], unique=False
    )
    op.create_index("ix_messages_from_number", "messages", ["from_number"], unique=False)
    op.create_index(
        "ix_messages_org_conversation",
        "messages",
        ["organization_id", "conversation_id"],
        unique=False,
    )
    op.create_index(
        "ix_messages_org_lead", "messages", ["organization_id", "lead_id"], unique=False
    )
    op.create_index(
        "ix_messages_org_lead_created",
        "messages",
        ["organization_id", "lead_id", sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_index(
        "ix_messages_org_sentiment",
        "messages",
        ["organization_id", "sentiment_score"],
        unique=False,
        postgresql_where=sa.text("sentiment_score IS NOT NULL"),
    )
    op.create_index(
        "ix_messages_org_unread",
        "messages",
        ["organization_id", "status"],
        unique=False,
        postgresql_where=sa.text("status IN ('delivered', 'pending')"),
    )
    op.create_index("ix_messages_organization_id", "messages", ["organization_id"], unique=False)
    op.create_index(
        "ix_messages_provider", "messages", ["provider_type", "provider_message_id"], unique=False
    )
    created.append(
        op.create_table(
            "message_attachments",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("message_id", sa.UUID(), nullable=False),
            sa.Column("file_name", sa.String(length=255), nullable=False),
            sa.Column("file_type", sa.String(length=100), nullable=False),
            sa.Column("file_size", sa.Integer(), nullable=False),
            sa.Column("file_url", sa.Text(), nullable=False),
            sa.Column("provider_media_id", sa.String(length=255), nullable=True),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.ForeignKeyConstraint(
                ["organization_id", "message_id"],
                ["messages.organization_id", "messages.id"],
                name=op.f("fk_message_attachments_message_id_same_org"),
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_message_attachments_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_message_attachments")),
            sa.UniqueConstraint("organization_id", "id", name="uq_message_attachments_org_id_id"),
        )
    )
    op.create_index(
        "ix_message_attachments_message_id", "message_attachments", ["message_id"], unique=False
    )
    op.create_index(
        "ix_message_attachments_org_id", "message_attachments", ["organization_id"], unique=False
    )
    created.append(
        op.create_table(
            "template_usage_stats",
            sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
            sa.Column("template_id", sa.UUID(), nullable=False),
            sa.Column("user_id", sa.UUID(), nullable=False),
            sa.Column("lead_id", sa.UUID(), nullable=True),
            sa.Column("used_in_message_id", sa.UUID(), nullable=True),
            sa.Column("context_type", sa.String(length=50), nullable=True),
            sa.Column(
                "response_received", sa.Boolean(), server_default=sa.text("false"), nullable=True
            ),
            sa.Column("response_time_minutes", sa.Integer(), nullable=True),
            sa.Column(
                "led_to_conversion", sa.Boolean(), server_default=sa.text("false"), nullable=True
            ),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                server_default=sa.text("now()"),
                nullable=True,
            ),
            sa.Column("organization_id", sa.UUID(), nullable=False),
            sa.ForeignKeyConstraint(
                ["organization_id", "lead_id"],
                ["leads.organization_id", "leads.id"],
                name=op.f("fk_template_usage_stats_lead_id_same_org"),
            ),
            sa.ForeignKeyConstraint(
                ["organization_id", "template_id"],
                ["message_templates.organization_id", "message_templates.id"],
                name=op.f("fk_template_usage_stats_template_id_same_org"),
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                ["organization_id", "used_in_message_id"],
                ["messages.organization_id", "messages.id"],
                name=op.f("fk_template_usage_stats_used_in_message_id_same_org"),
            ),
            sa.ForeignKeyConstraint(
                ["organization_id"],
                ["organizations.id"],
                name=op.f("fk_template_usage_stats_organization_id_organizations"),
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                ["user_id"], ["users.id"], name=op.f("fk_template_usage_stats_user_id_users")
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_template_usage_stats")),
            sa.UniqueConstraint("organization_id", "id", name="uq_template_usage_stats_org_id_id"),
        )
    )
    op.create_index(
        "ix_template_usage_org_success",
        "template_usage_stats",
        ["organization_id", "template_id", "led_to_conversion"],
        unique=False,
    )
    op.create_index(
        "ix_template_usage_stats_org_id", "template_usage_stats", ["organization_id"], unique=False
    )
    op.create_index(
        "ix_template_usage_stats_template", "template_usage_stats", ["template_id"], unique=False
    )

    assert tuple(t.name for t in created) == TABLES

    # Row-level security: every table with an organization_id column, plus organizations.
    tenant_tables = [t.name for t in created if "organization_id" in t.c]
    for table in ["organizations", *tenant_tables]:
        _enable_rls(table)
        for statement in SPECIAL_POLICIES.get(table, ()):
            op.execute(statement)
        if table not in SPECIAL_POLICIES:
            op.execute(
                f"CREATE POLICY tenant_isolation ON {table}"
                " USING (organization_id = lovedcrm_current_org())"
                " WITH CHECK (organization_id = lovedcrm_current_org())"
            )


def downgrade() -> None:
    # org_visible reads organization_members, which is dropped first.
    op.execute("DROP POLICY IF EXISTS org_visible ON organizations")
    for table in reversed(TABLES):
        op.drop_table(table)  # its indexes, constraints and policies go with it
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_current_user()")
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_current_org()")
    # Extensions stay: other databases objects may use them and they are harmless.
