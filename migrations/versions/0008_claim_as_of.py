"""Job claims as of a given time: ``lovedcrm_claim_jobs(..., p_now)``.

A job is ready when ``scheduled_for <= p_now`` (``p_now`` defaults to ``now()``). Workers pass
nothing in production; a worker driven by a manual clock (``lovedcrm.core.clock``, tests) passes
its time, so delayed jobs (sandbox receipts, retries) run when the test moves the clock on and
never because the machine happened to be slow. Leases still use the database's own time.
Otherwise the function is 0005's.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIM_AS_OF = """
        CREATE FUNCTION lovedcrm_claim_jobs(
            p_worker text, p_limit int, p_lease_seconds int, p_types text[] DEFAULT NULL,
            p_now timestamptz DEFAULT NULL)
        RETURNS SETOF background_jobs
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            v_orgs uuid[];
            v_has_system boolean;
            v_share int;
            v_left int := p_limit;
            v_org uuid;
            v_n int;
            v_now timestamptz := COALESCE(p_now, now());
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
                  WHERE status IN ('pending', 'retrying') AND scheduled_for <= v_now
                    AND organization_id IS NOT NULL
                    AND (p_types IS NULL OR job_type = ANY(p_types))
                  ORDER BY organization_id LIMIT 1)
                UNION ALL
                SELECT (SELECT organization_id FROM background_jobs
                         WHERE status IN ('pending', 'retrying') AND scheduled_for <= v_now
                           AND organization_id > orgs.id
                           AND (p_types IS NULL OR job_type = ANY(p_types))
                         ORDER BY organization_id LIMIT 1)
                  FROM orgs WHERE orgs.id IS NOT NULL
            )
            -- Longest-waiting organization first: with more organizations than free slots,
            -- the ones whose oldest ready job has waited longest are served first.
            SELECT array_agg(o.id ORDER BY (
                       SELECT b.scheduled_for FROM background_jobs b
                        WHERE b.organization_id = o.id
                          AND b.status IN ('pending', 'retrying') AND b.scheduled_for <= v_now
                          AND (p_types IS NULL OR b.job_type = ANY(p_types))
                        ORDER BY b.priority DESC, b.scheduled_for LIMIT 1))
              INTO v_orgs
              FROM (SELECT id FROM orgs WHERE id IS NOT NULL LIMIT 1000) o;

            SELECT EXISTS (SELECT 1 FROM background_jobs
                            WHERE status IN ('pending', 'retrying') AND scheduled_for <= v_now
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
                         WHERE status IN ('pending', 'retrying') AND scheduled_for <= v_now
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
                             WHERE status IN ('pending', 'retrying') AND scheduled_for <= v_now
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

PREVIOUS = (
    CLAIM_AS_OF.replace(
        "p_types text[] DEFAULT NULL,\n            p_now timestamptz DEFAULT NULL)",
        "p_types text[] DEFAULT NULL)",
    )
    .replace("            v_now timestamptz := COALESCE(p_now, now());\n", "")
    .replace("scheduled_for <= v_now", "scheduled_for <= now()")
)


def upgrade() -> None:
    op.execute("DROP FUNCTION lovedcrm_claim_jobs(text, int, int, text[])")
    op.execute(CLAIM_AS_OF)
    op.execute(
        "REVOKE ALL ON FUNCTION lovedcrm_claim_jobs(text, int, int, text[], timestamptz) FROM PUBLIC"
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION lovedcrm_claim_jobs(text, int, int, text[], timestamptz)")
    op.execute(PREVIOUS)
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_claim_jobs(text, int, int, text[]) FROM PUBLIC")
