"""Job engine, delivery log, idempotency keys and rate-limit counters.

- background_jobs: ``dedupe_key`` (one job per key: periodic jobs run once per period),
  claim and lease indexes, a statement trigger that NOTIFYs workers after a commit, and the
  security-definer functions a worker uses to claim, extend and release jobs across
  organizations (it sees no tenant's data otherwise: each job then runs in a transaction
  scoped to its own organization).
- webhook_deliveries: tenant table (RLS) with one row per delivery attempt.
- idempotency_keys, rate_limit_counters: global tables keyed by a hash of the credential.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("background_jobs", sa.Column("dedupe_key", sa.String(255), nullable=True))
    op.create_index(
        "ix_background_jobs_dedupe_key",
        "background_jobs",
        ["dedupe_key"],
        unique=True,
        postgresql_where=sa.text("dedupe_key IS NOT NULL"),
    )
    op.create_index(
        "ix_background_jobs_claimable",
        "background_jobs",
        ["organization_id", sa.text("priority DESC"), "scheduled_for"],
        postgresql_where=sa.text("status IN ('pending', 'retrying')"),
    )
    op.create_index(
        "ix_background_jobs_lease",
        "background_jobs",
        ["locked_until"],
        postgresql_where=sa.text("status = 'running'"),
    )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('lovedcrm_jobs', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER background_jobs_notify AFTER INSERT ON background_jobs "
        "FOR EACH STATEMENT EXECUTE FUNCTION lovedcrm_jobs_notify()"
    )
    # Claim up to p_limit ready jobs, shared fairly between organizations: every organization
    # with ready work gets an equal share per call, so one tenant's 100,000-row import cannot
    # starve the others. Expired leases (a worker that died) are put back first.
    op.execute(
        """
        CREATE FUNCTION lovedcrm_claim_jobs(
            p_worker text, p_limit int, p_lease_seconds int, p_types text[] DEFAULT NULL)
        RETURNS SETOF background_jobs
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            v_orgs uuid[];
            v_has_system boolean;
            v_share int;
            v_left int := p_limit;
            v_org uuid;
            v_n int;
        BEGIN
            UPDATE background_jobs
               SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'retrying' END,
                   error_message = 'the worker''s lease expired (worker stopped or crashed)',
                   completed_at = CASE WHEN attempts >= max_attempts THEN now() END,
                   locked_by = NULL, locked_until = NULL, updated_at = now()
             WHERE status = 'running' AND locked_until < now();

            -- Organizations with ready work: a loose index scan, cheap however many jobs wait.
            WITH RECURSIVE orgs(id) AS (
                (SELECT organization_id FROM background_jobs
                  WHERE status IN ('pending', 'retrying') AND scheduled_for <= now()
                    AND organization_id IS NOT NULL
                    AND (p_types IS NULL OR job_type = ANY(p_types))
                  ORDER BY organization_id LIMIT 1)
                UNION ALL
                SELECT (SELECT organization_id FROM background_jobs
                         WHERE status IN ('pending', 'retrying') AND scheduled_for <= now()
                           AND organization_id > orgs.id
                           AND (p_types IS NULL OR job_type = ANY(p_types))
                         ORDER BY organization_id LIMIT 1)
                  FROM orgs WHERE orgs.id IS NOT NULL
            )
            SELECT array_agg(id) INTO v_orgs FROM (SELECT id FROM orgs WHERE id IS NOT NULL LIMIT 1000) o;

            SELECT EXISTS (SELECT 1 FROM background_jobs
                            WHERE status IN ('pending', 'retrying') AND scheduled_for <= now()
                              AND organization_id IS NULL
                              AND (p_types IS NULL OR job_type = ANY(p_types)))
              INTO v_has_system;

            v_share := GREATEST(1, CEIL(p_limit::numeric
                        / GREATEST(1, COALESCE(array_length(v_orgs, 1), 0) + v_has_system::int)));

            IF v_has_system THEN
                RETURN QUERY
                UPDATE background_jobs j
                   SET status = 'running', locked_by = p_worker,
                       locked_until = now() + make_interval(secs => p_lease_seconds),
                       started_at = now(), attempts = j.attempts + 1, updated_at = now()
                  FROM (SELECT id FROM background_jobs
                         WHERE status IN ('pending', 'retrying') AND scheduled_for <= now()
                           AND organization_id IS NULL
                           AND (p_types IS NULL OR job_type = ANY(p_types))
                         ORDER BY priority DESC, scheduled_for
                         LIMIT LEAST(v_share, v_left) FOR UPDATE SKIP LOCKED) c
                 WHERE j.id = c.id
                RETURNING j.*;
                GET DIAGNOSTICS v_n = ROW_COUNT;
                v_left := v_left - v_n;
            END IF;

            IF v_orgs IS NOT NULL THEN
                FOREACH v_org IN ARRAY v_orgs LOOP
                    EXIT WHEN v_left <= 0;
                    RETURN QUERY
                    UPDATE background_jobs j
                       SET status = 'running', locked_by = p_worker,
                           locked_until = now() + make_interval(secs => p_lease_seconds),
                           started_at = now(), attempts = j.attempts + 1, updated_at = now()
                      FROM (SELECT id FROM background_jobs
                             WHERE status IN ('pending', 'retrying') AND scheduled_for <= now()
                               AND organization_id = v_org
                               AND (p_types IS NULL OR job_type = ANY(p_types))
                             ORDER BY priority DESC, scheduled_for
                             LIMIT LEAST(v_share, v_left) FOR UPDATE SKIP LOCKED) c
                     WHERE j.id = c.id
                    RETURNING j.*;
                    GET DIAGNOSTICS v_n = ROW_COUNT;
                    v_left := v_left - v_n;
                END LOOP;
            END IF;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_extend_leases(p_worker text, p_ids uuid[], p_lease_seconds int)
        RETURNS int
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            WITH u AS (
                UPDATE background_jobs
                   SET locked_until = now() + make_interval(secs => p_lease_seconds)
                 WHERE id = ANY(p_ids) AND locked_by = p_worker AND status = 'running'
                RETURNING 1)
            SELECT count(*)::int FROM u
        $$
        """
    )
    # A worker stopping on SIGTERM gives back what it has not started: not an attempt.
    op.execute(
        """
        CREATE FUNCTION lovedcrm_release_jobs(p_worker text, p_ids uuid[])
        RETURNS int
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            WITH u AS (
                UPDATE background_jobs
                   SET status = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END,
                       attempts = GREATEST(attempts - 1, 0),
                       locked_by = NULL, locked_until = NULL, updated_at = now()
                 WHERE id = ANY(p_ids) AND locked_by = p_worker AND status = 'running'
                RETURNING 1)
            SELECT count(*)::int FROM u
        $$
        """
    )
    # An API key arrives before any tenant is known. One call finds it by prefix and hash
    # (both must match) and returns what authentication needs (the key, its creator and
    # whether the creator is still an active member); the request then runs under RLS.
    op.execute(
        """
        CREATE FUNCTION lovedcrm_api_key_auth(p_prefix text, p_hash text)
        RETURNS TABLE (
            id uuid, organization_id uuid, api_key_hash text, scopes jsonb,
            rate_limit_per_hour int, is_active boolean, expires_at timestamptz,
            user_id uuid, user_email text, user_full_name text, user_active boolean,
            member_active boolean)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT k.id, k.organization_id, k.api_key_hash::text, k.scopes,
                   k.rate_limit_per_hour, COALESCE(k.is_active, false), k.expires_at,
                   u.id, u.email::text, u.full_name::text, COALESCE(u.is_active, false),
                   COALESCE(m.is_active, false)
              FROM api_keys k
              JOIN users u ON u.id = k.created_by
              LEFT JOIN organization_members m
                     ON m.organization_id = k.organization_id AND m.user_id = k.created_by
             WHERE k.api_key_prefix = p_prefix AND k.api_key_hash = p_hash
        $$
        """
    )
    op.execute(
        "DO $$ BEGIN EXECUTE format('CREATE POLICY owner_read ON organization_members "
        "FOR SELECT TO %I USING (true)', current_user); END $$"
    )
    op.execute(
        "DO $$ BEGIN EXECUTE format('CREATE POLICY owner_read ON api_keys FOR SELECT TO %I "
        "USING (true)', current_user); END $$"
    )
    # Under FORCE ROW LEVEL SECURITY a non-superuser owner is subject to policies too; the
    # functions above run as the owner and must reach every organization's jobs.
    op.execute(
        "DO $$ BEGIN EXECUTE format('CREATE POLICY owner_all ON background_jobs TO %I "
        "USING (true) WITH CHECK (true)', current_user); END $$"
    )
    for fn in (
        "lovedcrm_claim_jobs(text, int, int, text[])",
        "lovedcrm_extend_leases(text, uuid[], int)",
        "lovedcrm_release_jobs(text, uuid[])",
        "lovedcrm_api_key_auth(text, text)",
    ):
        op.execute(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC")

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("request_body", sa.Text(), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_webhook_deliveries_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "subscription_id"],
            ["webhook_subscriptions.organization_id", "webhook_subscriptions.id"],
            name="fk_webhook_deliveries_subscription_id_same_org",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("organization_id", "id", name="uq_webhook_deliveries_org_id_id"),
    )
    op.create_index(
        "ix_webhook_deliveries_sub_created",
        "webhook_deliveries",
        ["organization_id", "subscription_id", sa.text("created_at DESC")],
    )
    op.execute("ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON webhook_deliveries "
        "USING (organization_id = lovedcrm_current_org()) "
        "WITH CHECK (organization_id = lovedcrm_current_org())"
    )

    op.create_table(
        "idempotency_keys",
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_headers", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_hash", name=op.f("pk_idempotency_keys")),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])
    op.create_table(
        "rate_limit_counters",
        sa.Column("bucket", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "window_start", name="pk_rate_limit_counters"),
        prefixes=["UNLOGGED"],
    )
    op.create_index("ix_rate_limit_counters_window", "rate_limit_counters", ["window_start"])


def downgrade() -> None:
    op.drop_table("rate_limit_counters")
    op.drop_table("idempotency_keys")
    op.drop_table("webhook_deliveries")
    op.execute("DROP POLICY IF EXISTS owner_all ON background_jobs")
    op.execute("DROP POLICY IF EXISTS owner_read ON api_keys")
    op.execute("DROP POLICY IF EXISTS owner_read ON organization_members")
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_api_key_auth(text, text)")
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_release_jobs(text, uuid[])")
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_extend_leases(text, uuid[], int)")
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_claim_jobs(text, int, int, text[])")
    op.execute("DROP TRIGGER IF EXISTS background_jobs_notify ON background_jobs")
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_jobs_notify()")
    op.drop_index("ix_background_jobs_lease", table_name="background_jobs")
    op.drop_index("ix_background_jobs_claimable", table_name="background_jobs")
    op.drop_index("ix_background_jobs_dedupe_key", table_name="background_jobs")
    op.drop_column("background_jobs", "dedupe_key")
