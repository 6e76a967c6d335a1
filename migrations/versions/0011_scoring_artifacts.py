"""Lead scoring: trained models' artifacts, and the organizations a nightly job visits.

- ``lead_scoring_models.artifact`` (bytea) and ``.artifact_signature`` (varchar 64): a trained
  model as compressed JSON numbers (never pickle) and its HMAC-SHA256, keyed per
  organization from the application's secret (``scoring.artifacts``). A row whose signature
  does not verify is refused, never loaded.
- ``lovedcrm_scoring_organizations()``: the ids of every organization, to system jobs only
  (``app.scope = 'system'``; anyone else gets no rows). SECURITY DEFINER: under row-level
  security a system job sees no organization; the nightly rescore and the weekly retraining
  queue one job per organization from it (``scoring.jobs``). It returns ids only.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("lead_scoring_models", sa.Column("artifact", sa.LargeBinary(), nullable=True))
    op.add_column(
        "lead_scoring_models", sa.Column("artifact_signature", sa.String(64), nullable=True)
    )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_scoring_organizations()
        RETURNS TABLE (id uuid) LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = public, pg_temp AS $$
            SELECT o.id FROM organizations AS o
             WHERE current_setting('app.scope', true) = 'system'
             ORDER BY o.id
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_scoring_organizations() FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION lovedcrm_scoring_organizations()")
    op.drop_column("lead_scoring_models", "artifact_signature")
    op.drop_column("lead_scoring_models", "artifact")
