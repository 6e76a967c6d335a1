"""Kanban board order, optimistic concurrency, and accent-insensitive typo-tolerant search.

- leads.board_position (float8): a card's place in its column, ascending. New leads default
  to minus the creation time in seconds, so a new card lands at the top of its column
  without the application doing anything (imports included); a move puts the card halfway
  between its new neighbours, and a column is renumbered when the gap gets too small.
- leads.version: bumped by a BEFORE UPDATE trigger on every update of the row (a move
  refuses a stale ``expected_version``). A column renumbering sets
  ``lovedcrm.skip_version`` so rewriting positions does not make every open card stale.
- ix_leads_board: the board query (organization, stage, position) over active leads.
- lovedcrm_unaccent(text): an IMMUTABLE wrapper around unaccent (which is only STABLE
  because its dictionary could change) so expressions on it can be indexed.
- GIN trigram indexes per organization (btree_gin for the organization_id key) on the
  folded name and company, the lower-cased e-mail and the phone.
- lovedcrm_search_leads(pattern, needle, digits_pattern, e164): the ids of the current
  organization's leads matching a search. SECURITY DEFINER because under row-level security
  PostgreSQL will not use an index for a non-LEAKPROOF operator (LIKE, pg_trgm's ``<%``)
  ahead of the policy, so the same search as the app role scans the whole organization
  (~300 ms for 20,000 leads instead of ~10 ms). It reads only
  ``organization_id = lovedcrm_current_org()`` and returns ids, which the caller's query
  (under RLS as usual) joins; EXECUTE is revoked from PUBLIC (the app role gets it from the
  bootstrap). ``owner_read`` lets a non-superuser owner read leads inside it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BOARD_POSITION_DEFAULT = "((- EXTRACT(epoch FROM clock_timestamp())))::double precision"

SEARCH_INDEXES = {
    "ix_leads_search_name": "lovedcrm_unaccent(lower((full_name)::text))",
    "ix_leads_search_company": "lovedcrm_unaccent(lower((company)::text))",
    "ix_leads_search_email": "lower((email)::text)",
    "ix_leads_search_phone": "phone",
}


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    op.execute(
        "CREATE FUNCTION lovedcrm_unaccent(text) RETURNS text"
        " LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT"
        " AS $$ SELECT public.unaccent('public.unaccent'::regdictionary, $1) $$"
    )
    op.add_column(
        "leads",
        sa.Column(
            "board_position",
            sa.Double(),
            server_default=sa.text(BOARD_POSITION_DEFAULT),
            nullable=False,
        ),
    )
    op.add_column(
        "leads", sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False)
    )
    # Existing cards: newest first, as new ones will be.
    op.execute(
        "UPDATE leads SET board_position = - EXTRACT(epoch FROM coalesce(created_at, now()))"
    )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_leads_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF coalesce(current_setting('lovedcrm.skip_version', true), '') <> 'on' THEN
                NEW.version := OLD.version + 1;
            ELSE
                NEW.version := OLD.version;
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER leads_version BEFORE UPDATE ON leads"
        " FOR EACH ROW EXECUTE FUNCTION lovedcrm_leads_version()"
    )
    op.create_index(
        "ix_leads_board",
        "leads",
        ["organization_id", "stage_id", "board_position"],
        postgresql_where=sa.text("status = 'active'"),
    )
    for name, expression in SEARCH_INDEXES.items():
        op.execute(
            f"CREATE INDEX {name} ON leads USING gin (organization_id, ({expression}) gin_trgm_ops)"
        )
    op.execute(
        """
        CREATE FUNCTION lovedcrm_search_leads(
            pattern text, needle text, digits_pattern text, e164 text
        ) RETURNS SETOF uuid LANGUAGE sql STABLE SECURITY DEFINER ROWS 200
        SET search_path = public, pg_temp AS $$
            SELECT id FROM leads
            WHERE organization_id = lovedcrm_current_org()
              AND (lovedcrm_unaccent(lower(full_name::text)) LIKE pattern
                   OR lovedcrm_unaccent(lower(company::text)) LIKE pattern
                   OR lower(email::text) LIKE pattern
                   OR phone::text LIKE pattern
                   OR needle <% lovedcrm_unaccent(lower(full_name::text))
                   OR needle <% lovedcrm_unaccent(lower(company::text))
                   OR phone::text LIKE digits_pattern
                   OR phone::text = e164)
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_search_leads(text, text, text, text) FROM PUBLIC")
    op.execute(
        "DO $$ BEGIN EXECUTE format('CREATE POLICY owner_read ON leads "
        "FOR SELECT TO %I USING (true)', current_user); END $$"
    )


def downgrade() -> None:
    op.execute("DROP POLICY IF EXISTS owner_read ON leads")
    op.execute("DROP FUNCTION lovedcrm_search_leads(text, text, text, text)")
    for name in SEARCH_INDEXES:
        op.drop_index(name, table_name="leads")
    op.drop_index("ix_leads_board", table_name="leads")
    op.execute("DROP TRIGGER leads_version ON leads")
    op.execute("DROP FUNCTION lovedcrm_leads_version()")
    op.drop_column("leads", "version")
    op.drop_column("leads", "board_position")
    op.execute("DROP FUNCTION lovedcrm_unaccent(text)")
