"""Reports read aggregates, not the activity timeline (issue 14):

- ``report_lead_facts``: one row per lead with what the reports group and count (owner,
  source, stage, status, value, opened and closed, first WhatsApp message in and the first
  answer out);
- ``report_stage_spans``: each stay of a lead in a stage (entered, left), from the stage
  history in ``analytics_events`` (``lead_created`` and ``pipeline_conversion``);
- ``report_activity_counts``: activities a member logged per hour (UTC) and kind;
- ``ix_analytics_events_org_lead``: one lead's history events in order, to rebuild its rows;
- ``trg_lead_activities_report_uncount``: deleted activities (which emit no event) leave
  their hours' counts in the same statement.

Tenant tables with row-level security like the others. They are kept in the transaction of
each change by ``reports.events`` and rebuilt by ``reports.aggregates.recompute`` (the
organizations that existed before this migration: an admin's
``POST /api/v1/reports/recompute``). No data is copied here.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("report_lead_facts", "report_stage_spans", "report_activity_counts")

# Deleting activities (one, or a lead's by cascade) emits no event: a statement trigger takes
# them off their hours' counts in the same transaction (a rare path; adding is the
# subscriber's).
UNCOUNT = """
CREATE FUNCTION lovedcrm_report_activity_uncount() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE report_activity_counts AS c SET count = c.count - o.n
      FROM (SELECT organization_id, date_trunc('hour', created_at) AS bucket, user_id,
                   activity_type, count(*) AS n
              FROM old_rows WHERE user_id IS NOT NULL
             GROUP BY 1, 2, 3, 4) AS o
     WHERE c.organization_id = o.organization_id AND c.bucket = o.bucket
       AND c.user_id = o.user_id AND c.activity_type = o.activity_type;
    DELETE FROM report_activity_counts AS c
     USING (SELECT DISTINCT organization_id, date_trunc('hour', created_at) AS bucket
              FROM old_rows WHERE user_id IS NOT NULL) AS o
     WHERE c.organization_id = o.organization_id AND c.bucket = o.bucket AND c.count <= 0;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE report_lead_facts (
            id uuid DEFAULT gen_random_uuid() NOT NULL,
            lead_id uuid NOT NULL,
            owner_id uuid,
            source varchar(100),
            stage_id uuid NOT NULL,
            status varchar(50) NOT NULL,
            value numeric(10, 2),
            created_at timestamptz NOT NULL,
            closed_at timestamptz,
            first_inbound_at timestamptz,
            first_reply_at timestamptz,
            organization_id uuid NOT NULL,
            CONSTRAINT pk_report_lead_facts PRIMARY KEY (id),
            CONSTRAINT uq_report_lead_facts_org_id_id UNIQUE (organization_id, id),
            CONSTRAINT uq_report_lead_facts_org_lead UNIQUE (organization_id, lead_id),
            CONSTRAINT fk_report_lead_facts_lead_id_same_org
                FOREIGN KEY (organization_id, lead_id) REFERENCES leads (organization_id, id)
                ON DELETE CASCADE,
            CONSTRAINT fk_report_lead_facts_organization_id_organizations
                FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_report_lead_facts_created ON report_lead_facts"
        " (organization_id, created_at)"
    )
    op.execute(
        "CREATE INDEX ix_report_lead_facts_closed ON report_lead_facts"
        " (organization_id, closed_at) WHERE closed_at IS NOT NULL"
    )
    op.execute(
        """
        CREATE TABLE report_stage_spans (
            id uuid DEFAULT gen_random_uuid() NOT NULL,
            lead_id uuid NOT NULL,
            stage_id uuid NOT NULL,
            entered_at timestamptz NOT NULL,
            left_at timestamptz,
            organization_id uuid NOT NULL,
            CONSTRAINT pk_report_stage_spans PRIMARY KEY (id),
            CONSTRAINT uq_report_stage_spans_org_id_id UNIQUE (organization_id, id),
            CONSTRAINT fk_report_stage_spans_lead_id_same_org
                FOREIGN KEY (organization_id, lead_id) REFERENCES leads (organization_id, id)
                ON DELETE CASCADE,
            CONSTRAINT fk_report_stage_spans_organization_id_organizations
                FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_report_stage_spans_lead ON report_stage_spans"
        " (organization_id, lead_id, entered_at)"
    )
    op.execute(
        "CREATE INDEX ix_report_stage_spans_left ON report_stage_spans (organization_id, left_at)"
    )
    op.execute(
        "CREATE INDEX ix_report_stage_spans_open ON report_stage_spans"
        " (organization_id, stage_id) WHERE left_at IS NULL"
    )
    op.execute(
        """
        CREATE TABLE report_activity_counts (
            id uuid DEFAULT gen_random_uuid() NOT NULL,
            bucket timestamptz NOT NULL,
            user_id uuid NOT NULL,
            activity_type varchar(50) NOT NULL,
            count integer DEFAULT 0 NOT NULL,
            organization_id uuid NOT NULL,
            CONSTRAINT pk_report_activity_counts PRIMARY KEY (id),
            CONSTRAINT uq_report_activity_counts_org_id_id UNIQUE (organization_id, id),
            CONSTRAINT uq_report_activity_counts_key
                UNIQUE (organization_id, bucket, user_id, activity_type),
            CONSTRAINT fk_report_activity_counts_organization_id_organizations
                FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE
        )
        """
    )
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table}"
            " USING (organization_id = lovedcrm_current_org())"
            " WITH CHECK (organization_id = lovedcrm_current_org())"
        )
    op.execute(UNCOUNT)
    op.execute(
        "CREATE TRIGGER trg_lead_activities_report_uncount AFTER DELETE ON lead_activities"
        " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"
        " EXECUTE FUNCTION lovedcrm_report_activity_uncount()"
    )
    op.execute(
        "CREATE INDEX ix_analytics_events_org_lead ON analytics_events"
        " (organization_id, (event_data ->> 'lead_id'), occurred_at)"
        " WHERE event_type IN ('lead_created', 'pipeline_conversion', 'lead_won', 'lead_lost')"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_analytics_events_org_lead")
    op.execute("DROP TRIGGER trg_lead_activities_report_uncount ON lead_activities")
    op.execute("DROP FUNCTION lovedcrm_report_activity_uncount()")
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table}")
