"""LGPD and the audit trail on screen (issue 20, part B).

- ``lead_consents``: the append-only history of a lead's consents (purpose, legal basis,
  granted/withdrawn, source, evidence, who and when). RLS, tenant policy.
- ``privacy_requests``: a lead's export or erasure, the whole organization's export or
  deletion (grace period in ``scheduled_for``), each a job with a receipt; an export's
  single-use, expiring link is stored as the SHA-256 of its token. RLS, tenant policy.
- ``leads.erased_at``: set when the person's data was erased (the row stays, anonymised,
  so report totals stay; jobs that would contact the lead send nothing).
- ``audit_logs`` stays append-only for the app role. Two SECURITY DEFINER functions, each
  limited to the caller's current organization, are the only ways to change it:
  ``lovedcrm_audit_purge(org, before)`` (the retention setting) and
  ``lovedcrm_audit_redact(org, lead, terms)`` (an erasure: the diffs that name the person).
  Security events are audit rows (``action`` ``security.*`` with ``risk_score``).
- ``lovedcrm_member_login_failures(org, since)``: the failed log-ins (kept without an
  organization) into the accounts of the current organization's members, for its audit page.
- ``lovedcrm_privacy_retention_targets()``: the organizations with a retention setting
  (``organizations.settings.privacy``), to system jobs only (``app.scope = 'system'``), so the
  daily retention job queues one job per such organization. Ids only.

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TENANT_POLICY = (
    "CREATE POLICY tenant_isolation ON {table} FOR ALL"
    " USING (organization_id = lovedcrm_current_org())"
    " WITH CHECK (organization_id = lovedcrm_current_org())"
)


def upgrade() -> None:
    op.execute("ALTER TABLE leads ADD COLUMN erased_at timestamptz")
    op.execute(
        """
        CREATE TABLE lead_consents (
            id uuid DEFAULT gen_random_uuid() NOT NULL,
            organization_id uuid NOT NULL,
            lead_id uuid NOT NULL,
            purpose varchar(40) NOT NULL,
            legal_basis varchar(40) NOT NULL,
            status varchar(20) NOT NULL,
            source varchar(100) NOT NULL,
            evidence jsonb DEFAULT '{}'::jsonb NOT NULL,
            recorded_by uuid,
            recorded_at timestamptz NOT NULL,
            created_at timestamptz DEFAULT clock_timestamp() NOT NULL,
            CONSTRAINT pk_lead_consents PRIMARY KEY (id),
            CONSTRAINT uq_lead_consents_org_id_id UNIQUE (organization_id, id),
            CONSTRAINT fk_lead_consents_organization_id_organizations
                FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE,
            CONSTRAINT fk_lead_consents_lead_id_same_org FOREIGN KEY (organization_id, lead_id)
                REFERENCES leads (organization_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_lead_consents_recorded_by_users
                FOREIGN KEY (recorded_by) REFERENCES users (id) ON DELETE SET NULL,
            CONSTRAINT lead_consents_purpose CHECK
                (purpose IN ('email_marketing', 'whatsapp_marketing', 'data_processing')),
            CONSTRAINT lead_consents_legal_basis CHECK (legal_basis IN
                ('consent', 'legitimate_interest', 'contract', 'legal_obligation')),
            CONSTRAINT lead_consents_status CHECK (status IN ('granted', 'withdrawn'))
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_lead_consents_lead_purpose ON lead_consents"
        " (organization_id, lead_id, purpose, recorded_at, created_at)"
    )
    op.execute(
        """
        CREATE TABLE privacy_requests (
            id uuid DEFAULT gen_random_uuid() NOT NULL,
            organization_id uuid NOT NULL,
            lead_id uuid,
            kind varchar(20) NOT NULL,
            status varchar(20) DEFAULT 'pending' NOT NULL,
            requested_by uuid,
            receipt jsonb DEFAULT '{}'::jsonb NOT NULL,
            file_key text,
            token_hash varchar(64),
            expires_at timestamptz,
            downloaded_at timestamptz,
            scheduled_for timestamptz,
            error text,
            created_at timestamptz DEFAULT now() NOT NULL,
            completed_at timestamptz,
            CONSTRAINT pk_privacy_requests PRIMARY KEY (id),
            CONSTRAINT uq_privacy_requests_org_id_id UNIQUE (organization_id, id),
            CONSTRAINT fk_privacy_requests_organization_id_organizations
                FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE,
            CONSTRAINT fk_privacy_requests_lead_id_same_org FOREIGN KEY (organization_id, lead_id)
                REFERENCES leads (organization_id, id) ON DELETE SET NULL (lead_id),
            CONSTRAINT fk_privacy_requests_requested_by_users
                FOREIGN KEY (requested_by) REFERENCES users (id) ON DELETE SET NULL,
            CONSTRAINT privacy_requests_kind CHECK
                (kind IN ('lead_export', 'lead_erasure', 'org_export', 'org_deletion')),
            CONSTRAINT privacy_requests_status CHECK
                (status IN ('pending', 'running', 'done', 'failed', 'cancelled'))
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_privacy_requests_org_created ON privacy_requests"
        " (organization_id, created_at)"
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_privacy_requests_token_hash ON privacy_requests (token_hash)"
        " WHERE token_hash IS NOT NULL"
    )
    for table in ("lead_consents", "privacy_requests"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(_TENANT_POLICY.format(table=table))

    # The functions below run as the owner, whom FORCE RLS also binds (no UPDATE or DELETE
    # policy for anyone else: the app role still cannot change the trail directly).
    op.execute(
        "DO $$ BEGIN EXECUTE format('CREATE POLICY owner_update ON audit_logs "
        "FOR UPDATE TO %I USING (true) WITH CHECK (true)', current_user); "
        "EXECUTE format('CREATE POLICY owner_delete ON audit_logs "
        "FOR DELETE TO %I USING (true)', current_user); END $$"
    )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_audit_purge(p_org uuid, p_before timestamptz)
        RETURNS integer
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE v_count integer;
        BEGIN
            IF p_org IS NULL OR p_org IS DISTINCT FROM lovedcrm_current_org() THEN
                RAISE EXCEPTION 'lovedcrm_audit_purge: not the current organization';
            END IF;
            DELETE FROM audit_logs WHERE organization_id = p_org AND created_at < p_before;
            GET DIAGNOSTICS v_count = ROW_COUNT;
            RETURN v_count;
        END $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_audit_purge(uuid, timestamptz) FROM PUBLIC")
    op.execute(
        """
        CREATE FUNCTION lovedcrm_audit_redact(p_org uuid, p_lead uuid, p_terms text[])
        RETURNS integer
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE v_count integer;
        BEGIN
            IF p_org IS NULL OR p_org IS DISTINCT FROM lovedcrm_current_org() THEN
                RAISE EXCEPTION 'lovedcrm_audit_redact: not the current organization';
            END IF;
            UPDATE audit_logs AS a
               SET changes = jsonb_build_object('redacted', true)
             WHERE a.organization_id = p_org
               AND NOT (a.changes ? 'redacted' AND a.changes->>'redacted' = 'true')
               AND (a.resource_id = p_lead
                    OR EXISTS (SELECT 1 FROM unnest(p_terms) AS t
                                WHERE length(t) > 0
                                  AND strpos(lower(a.changes::text), lower(t)) > 0));
            GET DIAGNOSTICS v_count = ROW_COUNT;
            RETURN v_count;
        END $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_audit_redact(uuid, uuid, text[]) FROM PUBLIC")
    op.execute(
        """
        CREATE FUNCTION lovedcrm_privacy_retention_targets()
        RETURNS TABLE (id uuid) LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = public, pg_temp AS $$
            SELECT o.id FROM organizations AS o
             WHERE current_setting('app.scope', true) = 'system'
               AND jsonb_typeof(o.settings->'privacy') = 'object'
               AND EXISTS (SELECT 1 FROM jsonb_each(o.settings->'privacy') AS e
                            WHERE jsonb_typeof(e.value) = 'number')
             ORDER BY o.id
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_privacy_retention_targets() FROM PUBLIC")
    op.execute(
        """
        CREATE FUNCTION lovedcrm_member_login_failures(p_org uuid, p_since timestamptz)
        RETURNS TABLE (id uuid, user_id uuid, ip_address inet, user_agent text,
                       failure_reason text, risk_score integer, created_at timestamptz)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT a.id, a.user_id, a.ip_address, a.user_agent, a.failure_reason,
                   a.risk_score, a.created_at
              FROM audit_logs AS a
             WHERE p_org = lovedcrm_current_org()
               AND a.organization_id IS NULL AND a.action = 'login' AND a.success = false
               AND a.created_at >= p_since
               AND a.user_id IN (SELECT m.user_id FROM organization_members AS m
                                  WHERE m.organization_id = p_org)
             ORDER BY a.created_at DESC
             LIMIT 500
        $$
        """
    )
    op.execute(
        "REVOKE ALL ON FUNCTION lovedcrm_member_login_failures(uuid, timestamptz) FROM PUBLIC"
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_member_login_failures(uuid, timestamptz)")
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_privacy_retention_targets()")
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_audit_redact(uuid, uuid, text[])")
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_audit_purge(uuid, timestamptz)")
    op.execute("DROP POLICY IF EXISTS owner_delete ON audit_logs")
    op.execute("DROP POLICY IF EXISTS owner_update ON audit_logs")
    op.execute("DROP TABLE IF EXISTS privacy_requests")
    op.execute("DROP TABLE IF EXISTS lead_consents")
    op.execute("ALTER TABLE leads DROP COLUMN IF EXISTS erased_at")
