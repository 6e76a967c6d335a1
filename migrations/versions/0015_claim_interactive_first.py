"""Job claims serve interactive work before bulk work, in every organization.

0008 ordered organizations by their oldest ready job and looked at the first 1,000 of them by
id. A nightly fan-out (one rescore per organization, queued a moment earlier) then put every
organization's bulk job ahead of a webhook delivery or a WhatsApp send queued a second later,
and with more than 1,000 organizations waiting, one whose id sorts late was not looked at
until the bulk work drained: its interactive jobs waited minutes.

Now jobs with a negative ``priority`` are *bulk* (``jobs.queue.BULK_PRIORITY``: periodic
fan-outs, rebuilds, retraining) and the claim works in two tiers: first the organizations
with interactive jobs ready (``priority >= 0``), an equal share each, oldest-waiting first;
then, with the slots left, the organizations with bulk jobs, the same way. Each tier finds its
organizations by a loose scan of its own partial index, so a backlog of bulk jobs costs the
interactive scan nothing. System jobs (no organization: the periodic schedulers) go first,
one at a time per worker, so four of them due at once cannot take every slot.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READY = "status IN ('pending', 'retrying')"

# One tier: the organizations with ready jobs of the tier (a loose scan, longest-waiting first,
# at most 1,000), then an equal share of the slots left for each.
TIER = """
            v_orgs := NULL;
            WITH RECURSIVE orgs(id) AS (
                (SELECT organization_id FROM background_jobs
                  WHERE {ready} AND {tier} AND scheduled_for <= v_now
                    AND organization_id IS NOT NULL
                    AND (p_types IS NULL OR job_type = ANY(p_types))
                  ORDER BY organization_id LIMIT 1)
                UNION ALL
                SELECT (SELECT organization_id FROM background_jobs
                         WHERE {ready} AND {tier} AND scheduled_for <= v_now
                           AND organization_id > orgs.id
                           AND (p_types IS NULL OR job_type = ANY(p_types))
                         ORDER BY organization_id LIMIT 1)
                  FROM orgs WHERE orgs.id IS NOT NULL
            )
            SELECT array_agg(o.id ORDER BY (
                       SELECT b.scheduled_for FROM background_jobs b
                        WHERE b.organization_id = o.id AND b.{ready} AND b.{tier}
                          AND b.scheduled_for <= v_now
                          AND (p_types IS NULL OR b.job_type = ANY(p_types))
                        ORDER BY b.scheduled_for LIMIT 1))
              INTO v_orgs
              FROM (SELECT id FROM orgs WHERE id IS NOT NULL LIMIT 1000) o;

            IF v_orgs IS NOT NULL AND v_left > 0 THEN
                v_share := GREATEST(1, CEIL(v_left::numeric / array_length(v_orgs, 1)));
                FOREACH v_org IN ARRAY v_orgs LOOP
                    EXIT WHEN v_left <= 0;
                    RETURN QUERY
                    UPDATE background_jobs j
                       SET status = 'running', locked_by = p_worker,
                           locked_until = now() + make_interval(secs => p_lease_seconds),
                           started_at = now(), attempts = j.attempts + 1, updated_at = now()
                      FROM (SELECT id FROM background_jobs
                             WHERE {ready} AND {tier} AND scheduled_for <= v_now
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
"""

CLAIM = (
    """
        CREATE FUNCTION lovedcrm_claim_jobs(
            p_worker text, p_limit int, p_lease_seconds int, p_types text[] DEFAULT NULL,
            p_now timestamptz DEFAULT NULL)
        RETURNS SETOF background_jobs
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            v_orgs uuid[];
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

            -- System jobs (the periodic schedulers: cleanup, fan-outs over every
            -- organization) first, but one at a time per worker: several due at once (a
            -- worker starting after a pause) must not take every slot from the organizations.
            SELECT count(*) INTO v_n FROM background_jobs
             WHERE status = 'running' AND locked_by = p_worker AND organization_id IS NULL;
            IF v_n = 0 THEN
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
                     LIMIT 1 FOR UPDATE SKIP LOCKED) c
             WHERE j.id = c.id
            RETURNING j.*;
            GET DIAGNOSTICS v_n = ROW_COUNT;
            v_left := v_left - v_n;
            END IF;
"""
    + TIER.format(ready=READY, tier="priority >= 0")
    + TIER.format(ready=READY, tier="priority < 0")
    + """
        END $$
"""
)

INDEXES = {
    "ix_background_jobs_ready_interactive": "priority >= 0",
    "ix_background_jobs_ready_bulk": "priority < 0",
}
SIGNATURE = "lovedcrm_claim_jobs(text, int, int, text[], timestamptz)"


def upgrade() -> None:
    for name, tier in INDEXES.items():
        op.execute(
            f"CREATE INDEX {name} ON background_jobs (organization_id, scheduled_for)"
            f" WHERE {READY} AND {tier}"
        )
    op.execute("DROP INDEX IF EXISTS ix_background_jobs_claimable")
    op.execute(f"DROP FUNCTION {SIGNATURE}")
    op.execute(CLAIM)
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")


def downgrade() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("0008_claim_as_of.py")
    spec = importlib.util.spec_from_file_location("claim_as_of_0008", path)
    assert spec is not None and spec.loader is not None
    previous = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(previous)
    op.execute(f"DROP FUNCTION {SIGNATURE}")
    op.execute(previous.CLAIM_AS_OF)
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(
        "CREATE INDEX ix_background_jobs_claimable ON background_jobs"
        " (organization_id, priority DESC, scheduled_for) WHERE status IN ('pending', 'retrying')"
    )
    for name in INDEXES:
        op.execute(f"DROP INDEX {name}")
