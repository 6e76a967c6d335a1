"""Security-definer functions for the few look-ups that must cross tenants.

The app role sees only its tenant's rows. Two account flows need more, and get exactly
that much through functions owned by the migration owner:
- counting recent failed log-ins for an email and address (rows with no organization);
- finding the organization of a pending invitation from its token's hash.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION lovedcrm_login_failures(p_email text, p_ip inet, p_window_seconds int)
        RETURNS TABLE (n bigint, retry_after int)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT count(*),
                   COALESCE(CEIL(EXTRACT(EPOCH FROM (min(created_at)
                       + make_interval(secs => p_window_seconds) - now())))::int, 0)
            FROM audit_logs
            WHERE action = 'login' AND success = false
              AND changes->>'email' = p_email
              AND ip_address IS NOT DISTINCT FROM p_ip
              AND created_at > now() - make_interval(secs => p_window_seconds)
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_invitation_org(p_token_hash text)
        RETURNS uuid
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT organization_id FROM invitations
            WHERE token_hash = p_token_hash
              AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()
        $$
        """
    )
    # With FORCE ROW LEVEL SECURITY the owner is subject to policies too (unless it is a
    # superuser); these let the functions above, which run as the owner, read what they need.
    op.execute(
        "DO $$ BEGIN "
        "EXECUTE format('CREATE POLICY owner_read ON audit_logs FOR SELECT TO %I USING (true)', current_user); "
        "EXECUTE format('CREATE POLICY owner_read ON invitations FOR SELECT TO %I USING (true)', current_user); "
        "END $$"
    )
    op.execute(
        "CREATE INDEX ix_audit_logs_login_failures ON audit_logs ((changes->>'email'), created_at) WHERE action = 'login' AND success = false"
    )
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_login_failures(text, inet, int) FROM PUBLIC")
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_invitation_org(text) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_audit_logs_login_failures")
    op.execute("DROP POLICY IF EXISTS owner_read ON invitations")
    op.execute("DROP POLICY IF EXISTS owner_read ON audit_logs")
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_invitation_org(text)")
    op.execute("DROP FUNCTION IF EXISTS lovedcrm_login_failures(text, inet, int)")
