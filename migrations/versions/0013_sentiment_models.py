"""Sentiment on messages (issue 15, part 1): each organization's own sentiment model.

- ``ai_sentiment_models``: one row per organization, the model trained on its corrections
  (``ai_training_data`` rows of ``data_type = 'sentiment_label'``), whether it is active (it
  beat the default analyser on held-out corrections) and both accuracies. Tenant table with
  row-level security like the others. The artifact is compressed JSON numbers, never pickle.

The inbox's "urgent" and "negative" filters read the latest inbound message of each
conversation on the existing ``ix_messages_org_lead``.

The messages' scores use the spec's ``sentiment_score``, ``urgency_score`` and
``ai_processed_at``; the label and signals go in ``messages.metadata -> 'sentiment'``
(docs/schema-deviations.md).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE ai_sentiment_models (
            id uuid DEFAULT gen_random_uuid() NOT NULL,
            is_active boolean DEFAULT false NOT NULL,
            trained_rows integer DEFAULT 0 NOT NULL,
            heldout_rows integer DEFAULT 0 NOT NULL,
            heldout_accuracy double precision,
            default_heldout_accuracy double precision,
            details jsonb DEFAULT '{}'::jsonb NOT NULL,
            artifact bytea,
            trained_at timestamptz,
            created_at timestamptz DEFAULT now(),
            updated_at timestamptz DEFAULT now(),
            organization_id uuid NOT NULL,
            CONSTRAINT pk_ai_sentiment_models PRIMARY KEY (id),
            CONSTRAINT uq_ai_sentiment_models_org_id_id UNIQUE (organization_id, id),
            CONSTRAINT uq_ai_sentiment_models_org UNIQUE (organization_id),
            CONSTRAINT fk_ai_sentiment_models_organization_id_organizations
                FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE
        )
        """
    )
    op.execute("ALTER TABLE ai_sentiment_models ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE ai_sentiment_models FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON ai_sentiment_models"
        " USING (organization_id = lovedcrm_current_org())"
        " WITH CHECK (organization_id = lovedcrm_current_org())"
    )


def downgrade() -> None:
    op.execute("DROP TABLE ai_sentiment_models")
