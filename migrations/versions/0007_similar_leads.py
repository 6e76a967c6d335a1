"""The duplicate rule's candidates by company, on the trigram index.

- lovedcrm_similar_companies(companies text[]): the ids of the current organization's leads
  whose folded company is trigram-similar (pg_trgm ``%`` at 0.45, below the rule's 0.6) to
  one of ``companies``. SECURITY DEFINER for the same reason as ``lovedcrm_search_leads`` (0004):
  under row-level security PostgreSQL will not use the GIN index ``ix_leads_search_company``
  for the non-LEAKPROOF ``%`` ahead of the policy, and a similarity test of every lead of the
  organization per imported row would be far too slow. It reads only
  ``organization_id = lovedcrm_current_org()`` and returns ids that the caller's query
  (under RLS as usual) joins. The final decision is ``leads.dedup.match_reason``'s.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION lovedcrm_similar_companies(companies text[])
        RETURNS SETOF uuid LANGUAGE sql STABLE SECURITY DEFINER ROWS 50
        SET search_path = public, pg_temp
        SET pg_trgm.similarity_threshold = 0.45 AS $$
            SELECT DISTINCT l.id
            FROM unnest(companies) AS c(company)
            JOIN leads AS l
              ON l.organization_id = lovedcrm_current_org()
             AND lovedcrm_unaccent(lower(l.company::text)) % c.company
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_similar_companies(text[]) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION lovedcrm_similar_companies(text[])")
