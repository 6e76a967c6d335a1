"""Agenda (issue 17): the WhatsApp reminder to the lead.

- ``calendar_events.whatsapp_reminder`` (JSONB, nullable): ``{"template_id": uuid,
  "minutes": 60 | 180 | 1440}``, the approved message template sent to the meeting's lead
  that long before the start (job ``calendar.whatsapp_reminder``). The table already has
  RLS (tenant policy) from the initial schema.
- ``lovedcrm_calendar_pull_targets()``: the Google integrations to pull (signed in, not in
  error) with their organization, to system jobs only (``app.scope = 'system'``), so the
  15-minute ``calendar.pull_all`` reads them in one statement instead of walking every
  organization. SECURITY DEFINER; ids only.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "calendar_events",
        sa.Column("whatsapp_reminder", postgresql.JSONB(), nullable=True),
    )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_calendar_pull_targets()
        RETURNS TABLE (organization_id uuid, id uuid) LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = public, pg_temp AS $$
            SELECT i.organization_id, i.id FROM calendar_integrations AS i
             WHERE current_setting('app.scope', true) = 'system'
               AND i.provider = 'google' AND i.refresh_token IS NOT NULL
               AND i.sync_status = 'active'
             ORDER BY i.organization_id, i.id
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_calendar_pull_targets() FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION lovedcrm_calendar_pull_targets()")
    op.drop_column("calendar_events", "whatsapp_reminder")
