"""``organizations.active_webhooks``: how many active webhook subscriptions the organization has.

Every domain event looked up the organization's active webhook subscriptions, one SELECT per
unit of work; most organizations have none, and a lead's create read the organization
already (its settings). The count on the organization's row lets the webhooks' subscriber
skip the look-up when it is zero and the row is at hand. A trigger on
``webhook_subscriptions`` keeps it (every insert, delete, and change of ``is_active`` or of
the organization recounts it), so no code path can forget it. The trigger's function is
SECURITY DEFINER: the organization's row is the operator's to write.

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECOUNT = """
    CREATE FUNCTION lovedcrm_count_webhooks() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        org uuid;
    BEGIN
        FOREACH org IN ARRAY ARRAY[
            CASE WHEN TG_OP <> 'INSERT' THEN OLD.organization_id END,
            CASE WHEN TG_OP <> 'DELETE' THEN NEW.organization_id END
        ] LOOP
            CONTINUE WHEN org IS NULL;
            UPDATE organizations SET active_webhooks = (
                SELECT count(*) FROM webhook_subscriptions
                 WHERE organization_id = org AND is_active IS TRUE
            ) WHERE id = org;
        END LOOP;
        RETURN NULL;
    END $$
"""


def upgrade() -> None:
    op.execute("ALTER TABLE organizations ADD COLUMN active_webhooks integer NOT NULL DEFAULT 0")
    op.execute(
        "UPDATE organizations AS o SET active_webhooks = ("
        " SELECT count(*) FROM webhook_subscriptions AS s"
        " WHERE s.organization_id = o.id AND s.is_active IS TRUE)"
    )
    op.execute(RECOUNT)
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_count_webhooks() FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER webhook_subscriptions_count"
        " AFTER INSERT OR DELETE OR UPDATE OF is_active, organization_id"
        " ON webhook_subscriptions FOR EACH ROW EXECUTE FUNCTION lovedcrm_count_webhooks()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER webhook_subscriptions_count ON webhook_subscriptions")
    op.execute("DROP FUNCTION lovedcrm_count_webhooks()")
    op.execute("ALTER TABLE organizations DROP COLUMN active_webhooks")
