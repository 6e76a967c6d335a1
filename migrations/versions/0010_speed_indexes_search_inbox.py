"""Speed: an index under every list order, a search that is fast and forgives a typo, and the
inbox's conversations kept as they change.

- Sort keys: the lists order by ``(key, id)`` where the key is the column with NULL replaced
  by a value below all others: ``GREATEST(column, floor)`` (GREATEST skips NULLs). Not
  COALESCE: under row-level security PostgreSQL uses a condition on an index only when it
  cannot leak, and it counts COALESCE as an unknown function but GREATEST as a comparison of
  the type (leakproof for timestamps, integers, text), so the next page's
  ``(key, id) < (…)`` stays an index condition. The floors are those the lists used before
  (an empty value sorted as the lowest date, 0, or ''), and print the same in every time
  zone: ``'-infinity'``, ``0`` for the score and the value (never negative), ``''``. One btree per offered order, ``organization_id``
  first, the row id last: ``ix_leads_org_created``, ``_updated``, ``_name``, ``_score_key``,
  ``_company``, ``_value``, ``_activity``; and the default order under the filters a list is
  most often cut by (``_stage_created``, ``_assigned_created`` -- also every member who sees
  only their own leads --, ``_status_created``). ``ix_leads_board`` gains the id
  (the board's ``(board_position, id)``); the timeline gets
  ``ix_lead_activities_org_lead_created``, the jobs list ``ix_background_jobs_org_created`` (a
  status filter reads it too; no second index on a table every job updates several times).
- Search: ``leads.search_text`` (stored, generated: the folded name and company, so a search
  never folds a row again) with a trigram GIN index (``ix_leads_search_text``, replacing
  ``ix_leads_search_name``), and ``lovedcrm_search_keys(search_text)``: each word of two
  letters or more, plus ``~`` and the word less one letter for each word of four letters or
  more, as a ``tsvector`` in a GIN index (``ix_leads_search_keys``). A query word matches a
  lead's word within one edit (a letter missing, extra, changed or two swapped) exactly when
  their keys meet (``lovedcrm_search_query``: the word, ``~word``, and each
  word-less-one-letter with and without ``~``), so "Marana" finds Mariana and "Fernada"
  Fernanda on the index, with nothing to verify row by row. ``lovedcrm_search_leads``
  returns ``(id, rank)``: rank 0 when the text as typed is in the name, company, e-mail or
  phone, or every word is there exactly; rank 1 when every word is there within one edit;
  newest first within a rank (the rank is one bigint that orders all that).
- ``inbox_conversations``: one row per lead with messages (last message, its time, the count
  of unread inbound messages), kept by a trigger on ``messages`` in the same transaction as
  each insert, status change, move or delete, so the inbox lists conversations from an index
  instead of finding the latest message of every lead. Row-level security like every tenant
  table; the trigger runs as the caller (who can only write their own organization's
  messages).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEVER = "'-infinity'::timestamptz"


def _key(column: str, floor: str) -> str:
    """``column``, or ``floor`` where it is NULL (GREATEST ignores NULLs; ``floor`` is below
    every value the column can hold)."""
    return f"GREATEST({column}, {floor})"


CREATED = _key("created_at", NEVER)
COMPANY = _key("company", "''")


BTREE_INDEXES: dict[str, tuple[str, str]] = {
    "ix_leads_org_created": ("leads", f"organization_id, {CREATED}, id"),
    "ix_leads_org_updated": ("leads", f"organization_id, {_key('updated_at', NEVER)}, id"),
    "ix_leads_org_name": ("leads", "organization_id, full_name, id"),
    "ix_leads_org_score_key": ("leads", f"organization_id, {_key('lead_score', '0')}, id"),
    "ix_leads_org_company": ("leads", f"organization_id, {COMPANY}, id"),
    "ix_leads_org_value": (
        "leads",
        f"organization_id, {_key('estimated_value', '0')}, id",
    ),
    "ix_leads_org_activity": ("leads", f"organization_id, {_key('last_activity_at', NEVER)}, id"),
    "ix_leads_org_stage_created": ("leads", f"organization_id, stage_id, {CREATED}, id"),
    "ix_leads_org_assigned_created": ("leads", f"organization_id, assigned_to, {CREATED}, id"),
    "ix_leads_org_status_created": ("leads", f"organization_id, status, {CREATED}, id"),
    "ix_lead_activities_org_lead_created": (
        "lead_activities",
        "organization_id, lead_id, created_at, id",
    ),
    "ix_background_jobs_org_created": ("background_jobs", "organization_id, created_at, id"),
}

SEARCH_TEXT = (
    "lovedcrm_unaccent(lower((full_name)::text)) || ' '"
    " || COALESCE(lovedcrm_unaccent(lower((company)::text)), '')"
)

SEARCH_KEYS = """
    CREATE FUNCTION lovedcrm_search_keys(doc text) RETURNS tsvector
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE STRICT AS $$
    DECLARE
        w text;
        keys text[] := '{}';
    BEGIN
        FOREACH w IN ARRAY regexp_split_to_array(doc, '[^[:alnum:]]+') LOOP
            CONTINUE WHEN length(w) < 2;
            keys := keys || w;
            IF length(w) BETWEEN 4 AND 24 THEN
                FOR i IN 1 .. length(w) LOOP
                    keys := keys || ('~' || left(w, i - 1) || substr(w, i + 1));
                END LOOP;
            END IF;
        END LOOP;
        RETURN array_to_tsvector(keys);
    END $$
"""

SEARCH_QUERY = """
    CREATE FUNCTION lovedcrm_search_query(needle text, fuzzy boolean) RETURNS tsquery
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE STRICT AS $$
    DECLARE
        w text;
        v text;
        words text[] := '{}';
        variants text[];
        parts text[] := '{}';
    BEGIN
        FOREACH w IN ARRAY regexp_split_to_array(needle, '[^[:alnum:]]+') LOOP
            CONTINUE WHEN length(w) < 3 OR length(w) > 24 OR w = ANY (words);
            EXIT WHEN cardinality(words) >= 8;
            words := words || w;
            variants := ARRAY[w];
            IF fuzzy THEN
                variants := variants || ('~' || w);
                IF length(w) >= 4 THEN
                    FOR i IN 1 .. length(w) LOOP
                        v := left(w, i - 1) || substr(w, i + 1);
                        variants := variants || v || ('~' || v);
                    END LOOP;
                END IF;
            END IF;
            parts := parts || ('(' || array_to_string(
                ARRAY(SELECT DISTINCT quote_literal(x) FROM unnest(variants) AS x), ' | ') || ')');
        END LOOP;
        IF cardinality(parts) = 0 THEN
            RETURN NULL;
        END IF;
        RETURN array_to_string(parts, ' & ')::tsquery;
    END $$
"""

SEARCH_LEADS = """
    CREATE FUNCTION lovedcrm_search_leads(
        needle text, pattern text, digits_pattern text, e164 text
    ) RETURNS TABLE (id uuid, rank bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 200
    SET search_path = public, pg_temp
    -- One plan per session, whatever is searched; a match list is read from the GIN indexes
    -- as a bitmap, never by walking an organization's rows on another index.
    SET plan_cache_mode = force_generic_plan
    SET enable_indexscan = off AS $$
    DECLARE
        v_org uuid := lovedcrm_current_org();
        v_folded text := lovedcrm_unaccent(lower(needle));
        v_pattern text := lovedcrm_unaccent(lower(pattern));
        v_exact tsquery := lovedcrm_search_query(v_folded, false);
        v_fuzzy tsquery := lovedcrm_search_query(v_folded, true);
        -- One plain word is found as typed by the pattern already.
        v_words boolean := v_exact IS NOT NULL AND v_folded !~ '^\\s*[[:alnum:]]+\\s*$';
    BEGIN
        IF v_org IS NULL THEN
            RETURN;
        END IF;
        IF v_exact IS NOT NULL THEN
            v_fuzzy := v_fuzzy && !! v_exact;  -- a typo somewhere, or it is rank 0
        END IF;
        RETURN QUERY
        SELECT h.id,
               min(h.tier) * 10000000000000 + 10000000000000
               - floor(extract(epoch FROM max(h.created)) * 1000)::bigint
          FROM (
            SELECT l.id, COALESCE(l.created_at, 'epoch') AS created, 0 AS tier
              FROM leads l
             WHERE l.organization_id = v_org
               AND (l.search_text LIKE v_pattern
                    OR lower(l.email::text) LIKE v_pattern
                    OR l.phone::text LIKE v_pattern
                    OR l.phone::text LIKE digits_pattern
                    OR l.phone::text = e164)
            UNION ALL
            SELECT l.id, COALESCE(l.created_at, 'epoch'), 0
              FROM leads l
             WHERE v_words AND l.organization_id = v_org
               AND lovedcrm_search_keys(l.search_text) @@ v_exact
            UNION ALL
            SELECT l.id, COALESCE(l.created_at, 'epoch'), 1
              FROM leads l
             WHERE l.organization_id = v_org
               AND lovedcrm_search_keys(l.search_text) @@ v_fuzzy
          ) AS h
         GROUP BY h.id;
    END $$
"""

# 0004's function, restored by the downgrade.
PREVIOUS_SEARCH = """
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

INBOX_REFRESH = """
    CREATE FUNCTION lovedcrm_inbox_refresh(p_org uuid, p_lead uuid) RETURNS void
    LANGUAGE plpgsql AS $$
    DECLARE
        v_last messages%ROWTYPE;
    BEGIN
        SELECT * INTO v_last FROM messages
         WHERE organization_id = p_org AND lead_id = p_lead
         ORDER BY created_at DESC NULLS LAST, id DESC LIMIT 1;
        IF NOT FOUND THEN
            DELETE FROM inbox_conversations WHERE organization_id = p_org AND lead_id = p_lead;
            RETURN;
        END IF;
        INSERT INTO inbox_conversations AS c
               (organization_id, lead_id, last_message_id, last_message_at, unread_count)
        VALUES (p_org, p_lead, v_last.id, COALESCE(v_last.created_at, now()),
                (SELECT count(*) FROM messages
                  WHERE organization_id = p_org AND lead_id = p_lead
                    AND direction = 'inbound' AND status = 'delivered'))
        ON CONFLICT (organization_id, lead_id) DO UPDATE
           SET last_message_id = EXCLUDED.last_message_id,
               last_message_at = EXCLUDED.last_message_at,
               unread_count = EXCLUDED.unread_count;
    END $$
"""

INBOX_TRACK = """
    CREATE FUNCTION lovedcrm_inbox_track() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        v_unread_old int := 0;
        v_unread_new int := 0;
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            v_unread_old := (OLD.direction = 'inbound' AND OLD.status = 'delivered')::int;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            v_unread_new := (NEW.direction = 'inbound' AND NEW.status = 'delivered')::int;
        END IF;
        IF TG_OP = 'INSERT' THEN
            INSERT INTO inbox_conversations AS c
                   (organization_id, lead_id, last_message_id, last_message_at, unread_count)
            VALUES (NEW.organization_id, NEW.lead_id, NEW.id, COALESCE(NEW.created_at, now()),
                    v_unread_new)
            ON CONFLICT (organization_id, lead_id) DO UPDATE
               SET last_message_id = CASE
                       WHEN (EXCLUDED.last_message_at, EXCLUDED.last_message_id)
                            > (c.last_message_at, c.last_message_id)
                       THEN EXCLUDED.last_message_id ELSE c.last_message_id END,
                   last_message_at = GREATEST(c.last_message_at, EXCLUDED.last_message_at),
                   unread_count = c.unread_count + EXCLUDED.unread_count;
        ELSIF TG_OP = 'DELETE' THEN
            PERFORM lovedcrm_inbox_refresh(OLD.organization_id, OLD.lead_id);
        ELSIF OLD.lead_id IS DISTINCT FROM NEW.lead_id
              OR OLD.created_at IS DISTINCT FROM NEW.created_at THEN
            IF OLD.lead_id IS NOT NULL THEN
                PERFORM lovedcrm_inbox_refresh(OLD.organization_id, OLD.lead_id);
            END IF;
            IF NEW.lead_id IS NOT NULL AND NEW.lead_id IS DISTINCT FROM OLD.lead_id THEN
                PERFORM lovedcrm_inbox_refresh(NEW.organization_id, NEW.lead_id);
            END IF;
        ELSE
            UPDATE inbox_conversations SET unread_count = unread_count + v_unread_new - v_unread_old
             WHERE organization_id = NEW.organization_id AND lead_id = NEW.lead_id;
        END IF;
        RETURN NULL;
    END $$
"""

INBOX_TRIGGERS = (
    """CREATE TRIGGER inbox_track_insert AFTER INSERT ON messages
        FOR EACH ROW WHEN (NEW.lead_id IS NOT NULL)
        EXECUTE FUNCTION lovedcrm_inbox_track()""",
    """CREATE TRIGGER inbox_track_update AFTER UPDATE OF lead_id, created_at, status, direction
        ON messages FOR EACH ROW
        WHEN (OLD.lead_id IS DISTINCT FROM NEW.lead_id
              OR OLD.created_at IS DISTINCT FROM NEW.created_at
              OR (OLD.lead_id IS NOT NULL
                  AND (OLD.direction = 'inbound' AND OLD.status = 'delivered')
                      IS DISTINCT FROM (NEW.direction = 'inbound' AND NEW.status = 'delivered')))
        EXECUTE FUNCTION lovedcrm_inbox_track()""",
    """CREATE TRIGGER inbox_track_delete AFTER DELETE ON messages
        FOR EACH ROW WHEN (OLD.lead_id IS NOT NULL)
        EXECUTE FUNCTION lovedcrm_inbox_track()""",
)


def upgrade() -> None:
    for name, (table, columns) in BTREE_INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON {table} ({columns})")
    op.drop_index("ix_leads_board", table_name="leads")
    op.execute(
        "CREATE INDEX ix_leads_board ON leads (organization_id, stage_id, board_position, id)"
        " WHERE status = 'active'"
    )

    # Search.
    op.execute(
        f"ALTER TABLE leads ADD COLUMN search_text text GENERATED ALWAYS AS ({SEARCH_TEXT}) STORED"
    )
    op.drop_index("ix_leads_search_name", table_name="leads")
    op.execute(
        "CREATE INDEX ix_leads_search_text ON leads"
        " USING gin (organization_id, search_text gin_trgm_ops)"
    )
    op.execute(SEARCH_KEYS)
    op.execute(SEARCH_QUERY)
    op.execute(
        "CREATE INDEX ix_leads_search_keys ON leads"
        " USING gin (organization_id, lovedcrm_search_keys(search_text))"
    )
    op.execute("DROP FUNCTION lovedcrm_search_leads(text, text, text, text)")
    op.execute(SEARCH_LEADS)
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_search_leads(text, text, text, text) FROM PUBLIC")

    # The inbox's conversations.
    op.execute(
        """
        CREATE TABLE inbox_conversations (
            id uuid DEFAULT gen_random_uuid() NOT NULL,
            organization_id uuid NOT NULL,
            lead_id uuid NOT NULL,
            last_message_id uuid NOT NULL,
            last_message_at timestamptz NOT NULL,
            unread_count integer DEFAULT 0 NOT NULL,
            CONSTRAINT pk_inbox_conversations PRIMARY KEY (id),
            CONSTRAINT uq_inbox_conversations_org_id_id UNIQUE (organization_id, id),
            CONSTRAINT uq_inbox_conversations_org_lead UNIQUE (organization_id, lead_id),
            CONSTRAINT fk_inbox_conversations_organization_id_organizations
                FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE,
            CONSTRAINT fk_inbox_conversations_lead_id_same_org
                FOREIGN KEY (organization_id, lead_id) REFERENCES leads (organization_id, id)
                ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_inbox_conversations_recent ON inbox_conversations"
        " (organization_id, last_message_at DESC, lead_id)"
    )
    op.execute(
        "CREATE INDEX ix_inbox_conversations_unread ON inbox_conversations"
        " (organization_id, last_message_at DESC, lead_id) WHERE unread_count > 0"
    )
    op.execute("ALTER TABLE inbox_conversations ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE inbox_conversations FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON inbox_conversations"
        " USING (organization_id = lovedcrm_current_org())"
        " WITH CHECK (organization_id = lovedcrm_current_org())"
    )
    op.execute(INBOX_REFRESH)
    op.execute(INBOX_TRACK)
    for trigger in INBOX_TRIGGERS:
        op.execute(trigger)
    # The conversations so far: the owner reads every organization's messages for this once.
    op.execute("ALTER TABLE messages NO FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE inbox_conversations NO FORCE ROW LEVEL SECURITY")
    op.execute(
        """
        INSERT INTO inbox_conversations
               (organization_id, lead_id, last_message_id, last_message_at, unread_count)
        SELECT DISTINCT ON (m.organization_id, m.lead_id)
               m.organization_id, m.lead_id, m.id, COALESCE(m.created_at, now()),
               count(*) FILTER (WHERE m.direction = 'inbound' AND m.status = 'delivered')
                   OVER (PARTITION BY m.organization_id, m.lead_id)
          FROM messages m
         WHERE m.lead_id IS NOT NULL
         ORDER BY m.organization_id, m.lead_id, m.created_at DESC NULLS LAST, m.id DESC
        """
    )
    op.execute("ALTER TABLE messages FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE inbox_conversations FORCE ROW LEVEL SECURITY")


def downgrade() -> None:
    op.execute("DROP TRIGGER inbox_track_delete ON messages")
    op.execute("DROP TRIGGER inbox_track_update ON messages")
    op.execute("DROP TRIGGER inbox_track_insert ON messages")
    op.execute("DROP FUNCTION lovedcrm_inbox_track()")
    op.execute("DROP FUNCTION lovedcrm_inbox_refresh(uuid, uuid)")
    op.execute("DROP TABLE inbox_conversations")

    op.execute("DROP FUNCTION lovedcrm_search_leads(text, text, text, text)")
    op.execute(PREVIOUS_SEARCH)
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_search_leads(text, text, text, text) FROM PUBLIC")
    op.drop_index("ix_leads_search_keys", table_name="leads")
    op.execute("DROP FUNCTION lovedcrm_search_query(text, boolean)")
    op.execute("DROP FUNCTION lovedcrm_search_keys(text)")
    op.drop_index("ix_leads_search_text", table_name="leads")
    op.execute(
        "CREATE INDEX ix_leads_search_name ON leads"
        " USING gin (organization_id, (lovedcrm_unaccent(lower((full_name)::text))) gin_trgm_ops)"
    )
    op.drop_column("leads", "search_text")

    op.drop_index("ix_leads_board", table_name="leads")
    op.execute(
        "CREATE INDEX ix_leads_board ON leads (organization_id, stage_id, board_position)"
        " WHERE status = 'active'"
    )
    for name, (table, _) in BTREE_INDEXES.items():
        op.drop_index(name, table_name=table)
