"""Calls (issue 16): providers, callbacks, click-to-call, inbound calls, recordings.

- ``voip_configs`` also takes the offline ``sandbox`` provider (like WhatsApp's, 0006).
- ``call_logs.cost_amount``: the exact cost (NUMERIC(12,5)) beside the rounded ``cost_cents``;
  one call per provider call id (partial unique index).
- ``call_events``: every verified provider callback, keyed (organization, provider, event
  key) so a replayed callback is stored once; ``applied`` false while its call is not known
  yet (kept, and applied when the call appears).
- ``lovedcrm_voip_webhook_config(id)``: a callback arrives before any tenant is known; this
  narrow security-definer function returns only what verification needs.
- ``lovedcrm_store_call_events(org, provider, events)``: stores a verified callback's events
  in one round trip (a replay is a no-op) and queues ``calls.apply_events`` unless one waits.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SPEC_CHECK = (
    "(provider_type = 'twilio' AND account_sid IS NOT NULL AND auth_token IS NOT NULL)"
    " OR (provider_type = 'telnyx' AND api_key IS NOT NULL)"
)


def upgrade() -> None:
    op.drop_constraint(op.f("chk_voip_provider_config"), "voip_configs", type_="check")
    op.create_check_constraint(
        op.f("chk_voip_provider_config"),
        "voip_configs",
        f"{_SPEC_CHECK} OR (provider_type = 'sandbox')",
    )
    op.execute("ALTER TABLE call_logs ADD COLUMN cost_amount numeric(12, 5)")
    op.execute(
        "CREATE UNIQUE INDEX ux_call_logs_org_provider_call ON call_logs"
        " (organization_id, provider_type, provider_call_id)"
        " WHERE provider_call_id IS NOT NULL"
    )
    op.execute(
        """
        CREATE TABLE call_events (
            id uuid DEFAULT gen_random_uuid() NOT NULL,
            organization_id uuid NOT NULL,
            provider_type varchar(50) NOT NULL,
            event_key varchar(255) NOT NULL,
            call_log_id uuid,
            provider_call_id varchar(255),
            data jsonb DEFAULT '{}'::jsonb NOT NULL,
            applied boolean DEFAULT false NOT NULL,
            created_at timestamptz DEFAULT now() NOT NULL,
            CONSTRAINT pk_call_events PRIMARY KEY (id),
            CONSTRAINT uq_call_events_org_id_id UNIQUE (organization_id, id),
            CONSTRAINT uq_call_events_event UNIQUE (organization_id, provider_type, event_key),
            CONSTRAINT fk_call_events_organization_id_organizations
                FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_call_events_pending ON call_events"
        " (organization_id, call_log_id, provider_call_id) WHERE NOT applied"
    )
    op.execute("ALTER TABLE call_events ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE call_events FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON call_events"
        " USING (organization_id = lovedcrm_current_org())"
        " WITH CHECK (organization_id = lovedcrm_current_org())"
    )
    # The security-definer function below runs as the owner, whom FORCE RLS also binds.
    op.execute(
        "DO $$ BEGIN EXECUTE format('CREATE POLICY owner_read ON voip_configs "
        "FOR SELECT TO %I USING (true)', current_user); END $$"
    )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_voip_webhook_config(p_id uuid)
        RETURNS TABLE (
            organization_id uuid, provider_type text, auth_token text, config_data jsonb)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT c.organization_id, c.provider_type::text, c.auth_token, c.config_data
              FROM voip_configs c
             WHERE c.id = p_id
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_voip_webhook_config(uuid) FROM PUBLIC")
    # A verified callback is stored in one round trip (no tenant set-up, no transaction
    # block): its events, once each (a replay is a no-op), and a job to apply them unless
    # one is already waiting.
    op.execute(
        "DO $$ BEGIN EXECUTE format('CREATE POLICY owner_all ON call_events "
        "TO %I USING (true) WITH CHECK (true)', current_user); END $$"
    )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_store_call_events(p_org uuid, p_provider text, p_events jsonb)
        RETURNS integer
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE v_stored integer;
        BEGIN
            INSERT INTO call_events
                (organization_id, provider_type, event_key, call_log_id, provider_call_id,
                 data, applied)
            SELECT p_org, p_provider, e->>'event_key', CAST(e->>'call_ref' AS uuid),
                   e->>'provider_call_id', COALESCE(e->'data', '{}'::jsonb), false
              FROM jsonb_array_elements(p_events) AS e
            ON CONFLICT ON CONSTRAINT uq_call_events_event DO NOTHING;
            GET DIAGNOSTICS v_stored = ROW_COUNT;
            IF v_stored > 0 AND NOT EXISTS (
                SELECT 1 FROM background_jobs
                 WHERE organization_id = p_org AND job_type = 'calls.apply_events'
                   AND status = 'pending')
            THEN
                INSERT INTO background_jobs
                    (organization_id, job_type, job_data, status, scheduled_for, max_attempts)
                VALUES (p_org, 'calls.apply_events', '{}'::jsonb, 'pending', now(), 10);
            END IF;
            RETURN v_stored;
        END $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_store_call_events(uuid, text, jsonb) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_store_call_events(uuid, text, jsonb)")
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_voip_webhook_config(uuid)")
    op.execute("DROP POLICY IF EXISTS owner_read ON voip_configs")
    op.execute("DROP TABLE call_events")
    op.execute("DROP INDEX IF EXISTS ux_call_logs_org_provider_call")
    op.execute("ALTER TABLE call_logs DROP COLUMN cost_amount")
    op.execute("DELETE FROM voip_configs WHERE provider_type = 'sandbox'")
    op.drop_constraint(op.f("chk_voip_provider_config"), "voip_configs", type_="check")
    op.create_check_constraint(op.f("chk_voip_provider_config"), "voip_configs", _SPEC_CHECK)
