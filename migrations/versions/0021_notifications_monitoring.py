"""Notifications and monitoring (issue 20, part A).

- ``notifications``: one per member (RLS, tenant policy): type, title, body, link, the lead it
  is about, ``read_at``, ``digest_pending`` (waits for the daily digest), ``emailed_at``, and a
  ``dedupe_key`` unique per member (a task's "due" notification is made once).
- ``notification_preferences``: per member per type, ``channel`` in_app | email | digest | off
  (RLS, tenant policy).
- ``lovedcrm_notification_orgs()``: organizations with a digest waiting or an open task, to
  system jobs only (``app.scope = 'system'``), so the periodic jobs read them in one
  statement. SECURITY DEFINER; ids only.
- ``lovedcrm_queue_figures()``: the job queue's counts and oldest waiting time per type and
  status, across organizations, for ``/metrics`` (aggregates only, no row). SECURITY DEFINER.
- ``lovedcrm_webhook_failures()``: failed outgoing webhook deliveries, counted (aggregate).

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("notifications", "notification_preferences")


def _tenant(table: str) -> None:
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} FOR ALL"
        " USING (organization_id = lovedcrm_current_org())"
        " WITH CHECK (organization_id = lovedcrm_current_org())"
    )


def _common(table: str) -> list[sa.SchemaItem]:
    return [
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("notification_type", sa.String(50), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=f"fk_{table}_organization_id_organizations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
        sa.UniqueConstraint("organization_id", "id", name=f"uq_{table}_org_id_id"),
    ]


def upgrade() -> None:
    op.create_table(
        "notifications",
        *_common("notifications"),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("link", sa.String(500), nullable=True),
        sa.Column("lead_id", sa.UUID(), nullable=True),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("dedupe_key", sa.String(200), nullable=True),
        sa.Column("digest_pending", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("emailed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_index(
        "uq_notifications_dedupe",
        "notifications",
        ["organization_id", "user_id", "dedupe_key"],
        unique=True,
        postgresql_where=sa.text("dedupe_key IS NOT NULL"),
    )
    op.create_index(
        "ix_notifications_user_created",
        "notifications",
        ["organization_id", "user_id", "created_at"],
    )
    op.create_index(
        "ix_notifications_unread",
        "notifications",
        ["organization_id", "user_id"],
        postgresql_where=sa.text("read_at IS NULL"),
    )
    op.create_index(
        "ix_notifications_digest",
        "notifications",
        ["organization_id", "user_id"],
        postgresql_where=sa.text("digest_pending"),
    )
    op.create_table(
        "notification_preferences",
        *_common("notification_preferences"),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "channel IN ('in_app', 'email', 'digest', 'off')",
            name="ck_notification_preferences_channel",
        ),
    )
    op.create_index(
        "uq_notification_preferences_user_type",
        "notification_preferences",
        ["organization_id", "user_id", "notification_type"],
        unique=True,
    )
    for table in _TABLES:
        _tenant(table)
    op.execute(
        """
        CREATE FUNCTION lovedcrm_notification_orgs()
        RETURNS TABLE (organization_id uuid) LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = public, pg_temp AS $$
            SELECT DISTINCT o.organization_id FROM (
                SELECT n.organization_id FROM notifications AS n WHERE n.digest_pending
                UNION ALL
                SELECT a.organization_id FROM lead_activities AS a
                 WHERE a.activity_type = 'task'
                   AND COALESCE(a.metadata->>'done', 'false') <> 'true'
                   AND a.metadata ? 'due_at'
            ) AS o
             WHERE current_setting('app.scope', true) = 'system'
             ORDER BY 1
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_queue_figures()
        RETURNS TABLE (job_type text, status text, n bigint, oldest timestamptz)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT j.job_type, COALESCE(j.status, 'pending'), count(*),
                   min(COALESCE(j.scheduled_for, j.created_at))
              FROM background_jobs AS j
             GROUP BY 1, 2
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_webhook_failures()
        RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = public, pg_temp AS $$
            SELECT count(*) FROM webhook_deliveries AS d WHERE NOT d.succeeded
        $$
        """
    )
    for fn in (
        "lovedcrm_notification_orgs()",
        "lovedcrm_queue_figures()",
        "lovedcrm_webhook_failures()",
    ):
        op.execute(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC")


def downgrade() -> None:
    for fn in (
        "lovedcrm_webhook_failures()",
        "lovedcrm_queue_figures()",
        "lovedcrm_notification_orgs()",
    ):
        op.execute(f"DROP FUNCTION {fn}")
    op.drop_table("notification_preferences")
    op.drop_table("notifications")
