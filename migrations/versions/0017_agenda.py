"""Agenda (issue 17): meetings, Google Calendar sync, ICS invitations and feeds.

- ``calendar_events``: ``ics_sequence`` (RFC 5545 SEQUENCE, raised on every change sent to
  attendees), ``source`` ('crm' or 'google': where the event was made), ``sync_state`` /
  ``sync_error`` (the push to Google: pending, synced, failed with the reason),
  ``reminder_minutes`` (the member's e-mail reminder, minutes before the start) and a unique
  index on (organization, integration, external id) so a pulled Google event is stored once.
- ``calendar_integrations``: ``sync_token`` (Google's incremental sync cursor), the OAuth
  ``oauth_state_hash`` (SHA-256 of the ``state`` sent to Google), ``pkce_verifier``
  (encrypted) and ``oauth_started_at``.
- ``calendar_feeds``: a member's secret ICS feed URL, stored as the SHA-256 of its token
  (RLS, tenant policy). ``lovedcrm_calendar_feed(hash)`` (SECURITY DEFINER) answers the
  organization and member of a token before any tenant is known, and nothing else.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "calendar_events",
        sa.Column("ics_sequence", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "calendar_events",
        sa.Column("source", sa.String(20), server_default=sa.text("'crm'"), nullable=False),
    )
    op.add_column("calendar_events", sa.Column("sync_state", sa.String(20), nullable=True))
    op.add_column("calendar_events", sa.Column("sync_error", sa.Text(), nullable=True))
    op.add_column("calendar_events", sa.Column("reminder_minutes", sa.Integer(), nullable=True))
    op.create_index(
        "uq_calendar_events_external",
        "calendar_events",
        ["organization_id", "calendar_integration_id", "external_event_id"],
        unique=True,
        postgresql_where=sa.text("external_event_id IS NOT NULL"),
    )
    op.create_index(
        "ix_calendar_events_org_creator_start",
        "calendar_events",
        ["organization_id", "created_by", "start_time"],
    )
    op.add_column("calendar_integrations", sa.Column("sync_token", sa.Text(), nullable=True))
    op.add_column(
        "calendar_integrations", sa.Column("oauth_state_hash", sa.String(64), nullable=True)
    )
    op.add_column("calendar_integrations", sa.Column("pkce_verifier", sa.Text(), nullable=True))
    op.add_column(
        "calendar_integrations",
        sa.Column("oauth_started_at", sa.DateTime(timezone=True), nullable=True),
    )

    op.create_table(
        "calendar_feeds",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_calendar_feeds_organization_id_organizations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_calendar_feeds_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_calendar_feeds"),
        sa.UniqueConstraint("organization_id", "id", name="uq_calendar_feeds_org_id_id"),
        sa.UniqueConstraint("token_hash", name="uq_calendar_feeds_token_hash"),
        sa.UniqueConstraint("organization_id", "user_id", name="uq_calendar_feeds_org_user"),
    )
    op.execute("ALTER TABLE calendar_feeds ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE calendar_feeds FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON calendar_feeds FOR ALL"
        " USING (organization_id = lovedcrm_current_org())"
        " WITH CHECK (organization_id = lovedcrm_current_org())"
    )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_calendar_feed(p_hash text)
        RETURNS TABLE (organization_id uuid, user_id uuid)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT f.organization_id, f.user_id FROM calendar_feeds AS f
             WHERE f.token_hash = p_hash
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_calendar_feed(text) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION lovedcrm_calendar_feed(text)")
    op.drop_table("calendar_feeds")
    for column in ("oauth_started_at", "pkce_verifier", "oauth_state_hash", "sync_token"):
        op.drop_column("calendar_integrations", column)
    op.drop_index("ix_calendar_events_org_creator_start", table_name="calendar_events")
    op.drop_index("uq_calendar_events_external", table_name="calendar_events")
    for column in ("reminder_minutes", "sync_error", "sync_state", "source", "ics_sequence"):
        op.drop_column("calendar_events", column)
