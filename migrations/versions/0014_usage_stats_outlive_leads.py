"""A template's use outlives the lead it was used with: deleting the lead sets
``template_usage_stats.lead_id`` to NULL (the count and success rate keep the use) instead
of refusing the delete, which answered 500 for any lead a template had been sent to.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "fk_template_usage_stats_lead_id_same_org"


def upgrade() -> None:
    op.execute(f"ALTER TABLE template_usage_stats DROP CONSTRAINT {FK}")
    op.execute(
        f"ALTER TABLE template_usage_stats ADD CONSTRAINT {FK}"
        " FOREIGN KEY (organization_id, lead_id) REFERENCES leads (organization_id, id)"
        " ON DELETE SET NULL (lead_id)"
    )


def downgrade() -> None:
    op.execute(f"ALTER TABLE template_usage_stats DROP CONSTRAINT {FK}")
    op.execute(
        f"ALTER TABLE template_usage_stats ADD CONSTRAINT {FK}"
        " FOREIGN KEY (organization_id, lead_id) REFERENCES leads (organization_id, id)"
    )
