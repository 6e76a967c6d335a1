"""Search keys of each organization's own, and search indexes without a pending list.

Two things made a search cost more than its organization's size explains:

- **Shared keys.** The search indexes were GIN indexes of ``(organization_id, trigrams)`` and
  ``(organization_id, words)``: a key (the trigram ``mar``, the word ``maria``) had one list
  of rows for the whole installation, so finding "maria" among one organization's 20,000
  leads read every organization's rows with "maria", and the organization's own list of all
  its rows, to intersect them. Among 1,000 organizations a search of a name read 400-800
  index pages. Now every key starts with a tag of its organization (eight hex digits of
  ``md5(organization_id)``), so each key lists only that organization's rows and there is
  no organization key to intersect. A search reads its own organization's lists.
  Two organizations sharing a tag (about one pair in 4,000 at 1,000 organizations) only
  share lists: the organization is still a condition of every query.
- **The pending list.** With ``fastupdate`` on (PostgreSQL's default) new entries wait in a
  pending list that every search reads row by row until a vacuum, or the insert that fills
  it past ``gin_pending_list_limit`` (4 MB), merges it. A few thousand API creates halved
  the search's throughput; autovacuum merges only after a fifth of the table changed. The
  indexes are now built with ``fastupdate`` off: each insert adds its entries at once.

The trigrams are now the search's own (``lovedcrm_search_grams``): every three characters of
the folded name and company (``search_text``), the lower-cased e-mail and the phone, tagged.
The text as typed is found by the needle's trigrams (all of them must be there; at most the
first 24) and then checked with the same ``LIKE`` as before, so the matches are exactly the
same. A needle under three characters has no trigram: it is matched against the
organization's rows directly. One index replaces the three trigram indexes of
``search_text``, e-mail and phone (a create updates two GIN indexes fewer). The words index
(``lovedcrm_search_words``, the words and their one-letter-less forms, as
``lovedcrm_search_keys``) is tagged the same way. ``ix_leads_search_company`` (the duplicate
rule's similar companies, pg_trgm's ``%``) stays as it was, without a pending list.

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TAG = """
    CREATE FUNCTION lovedcrm_search_tag(org uuid) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$
        SELECT left(md5(org::text), 8)
    $$
"""

# Every three characters of each part (apart: no trigram spans two of them), tagged.
GRAMS = """
    CREATE FUNCTION lovedcrm_search_grams(org uuid, doc text, email text, phone text)
    RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT array_to_tsvector(coalesce(array_agg(DISTINCT t.tag || substr(p.part, i, 3)), '{}'))
          FROM (SELECT public.lovedcrm_search_tag(org) AS tag) AS t,
               unnest(ARRAY[doc, email, phone]) AS p(part),
               generate_series(1, length(p.part) - 2) AS i
    $$
"""

# The needle's trigrams, all required (the first 24 distinct ones); NULL under three
# characters. A lexeme is quoted, its quotes and backslashes doubled (tsquery's syntax).
GRAMS_QUERY = """
    CREATE FUNCTION lovedcrm_search_grams_query(org uuid, needle text) RETURNS tsquery
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$
        SELECT nullif(array_to_string(ARRAY(
                   SELECT '''' || replace(replace(public.lovedcrm_search_tag(org) || g.gram,
                                                  '\\', '\\\\'), '''', '''''') || ''''
                     FROM (SELECT DISTINCT ON (substr(needle, i, 3)) substr(needle, i, 3) AS gram, i
                             FROM generate_series(1, length(needle) - 2) AS i
                            ORDER BY substr(needle, i, 3), i) AS g
                    ORDER BY g.i
                    LIMIT 24), ' & '), '')::tsquery
    $$
"""

WORDS = """
    CREATE FUNCTION lovedcrm_search_words(org uuid, doc text) RETURNS tsvector
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE STRICT AS $$
    DECLARE
        tag text := public.lovedcrm_search_tag(org);
        w text;
        keys text[] := '{}';
    BEGIN
        FOREACH w IN ARRAY regexp_split_to_array(doc, '[^[:alnum:]]+') LOOP
            CONTINUE WHEN length(w) < 2;
            keys := keys || (tag || w);
            IF length(w) BETWEEN 4 AND 24 THEN
                FOR i IN 1 .. length(w) LOOP
                    keys := keys || (tag || '~' || left(w, i - 1) || substr(w, i + 1));
                END LOOP;
            END IF;
        END LOOP;
        RETURN array_to_tsvector(keys);
    END $$
"""

WORDS_QUERY = """
    CREATE FUNCTION lovedcrm_search_words_query(org uuid, needle text, fuzzy boolean)
    RETURNS tsquery LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE STRICT AS $$
    DECLARE
        tag text := public.lovedcrm_search_tag(org);
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
                ARRAY(SELECT DISTINCT quote_literal(tag || x) FROM unnest(variants) AS x), ' | ')
                || ')');
        END LOOP;
        IF cardinality(parts) = 0 THEN
            RETURN NULL;
        END IF;
        RETURN array_to_string(parts, ' & ')::tsquery;
    END $$
"""

GRAMS_OF_ROW = (
    "lovedcrm_search_grams(l.organization_id, l.search_text, lower(l.email::text), l.phone::text)"
)
WORDS_OF_ROW = "lovedcrm_search_words(l.organization_id, l.search_text)"

# The text as typed in the name, company, e-mail or phone; a phone by its digits or E.164.
AS_TYPED = """(l.search_text LIKE v_pattern
                    OR lower(l.email::text) LIKE v_pattern
                    OR l.phone::text LIKE v_pattern
                    OR l.phone::text LIKE digits_pattern
                    OR l.phone::text = e164)"""


# Where a key index finds the rows, the organization is checked on them (its text form is
# not indexed): a generic plan would otherwise AND the key's few rows with a bitmap of all
# the organization's rows.
OF_ORG = "l.organization_id::text = v_org::text"

SEARCH_BY_KEYS = f"""
        RETURN QUERY
        SELECT h.id,
               min(h.tier) * 10000000000000 + 10000000000000
               - floor(extract(epoch FROM max(h.created)) * 1000)::bigint
          FROM (
            SELECT l.id, COALESCE(l.created_at, 'epoch') AS created, 0 AS tier
              FROM leads l
             WHERE {GRAMS_OF_ROW} @@ v_grams AND {OF_ORG} AND {AS_TYPED}
            UNION ALL
            SELECT l.id, COALESCE(l.created_at, 'epoch'), 0
              FROM leads l
             WHERE v_words AND {WORDS_OF_ROW} @@ v_exact AND {OF_ORG}
            UNION ALL
            SELECT l.id, COALESCE(l.created_at, 'epoch'), 1
              FROM leads l
             WHERE {WORDS_OF_ROW} @@ v_fuzzy AND {OF_ORG}
          ) AS h
         GROUP BY h.id;
"""

# Under three characters there is no trigram, and no word to match with a typo: the text as
# typed, in the organization's rows.
SEARCH_SHORT = f"""
        RETURN QUERY
        SELECT l.id, 10000000000000 - floor(extract(epoch FROM COALESCE(l.created_at, 'epoch'))
                                            * 1000)::bigint
          FROM leads l
         WHERE l.organization_id = v_org AND {AS_TYPED};
"""


SEARCH_LEADS = f"""
    CREATE OR REPLACE FUNCTION lovedcrm_search_leads(
        needle text, pattern text, digits_pattern text, e164 text
    ) RETURNS TABLE (id uuid, rank bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 200
    SET search_path = public, pg_temp
    -- One plan per session, whatever is searched; a match list is read from the GIN indexes
    -- as a bitmap, never by walking an organization's rows on another index.
    SET plan_cache_mode = force_generic_plan
    SET enable_indexscan = off
    -- A search reads a few pages: starting parallel workers would take longer than that.
    SET max_parallel_workers_per_gather = 0 AS $$
    DECLARE
        v_org uuid := lovedcrm_current_org();
        v_folded text := lovedcrm_unaccent(lower(needle));
        v_pattern text := lovedcrm_unaccent(lower(pattern));
        v_exact tsquery := lovedcrm_search_words_query(v_org, v_folded, false);
        v_fuzzy tsquery := lovedcrm_search_words_query(v_org, v_folded, true);
        -- The rows that can hold the text as typed: those with all its trigrams (or, for
        -- a phone, those of its digits or of its E.164 form).
        v_grams tsquery := lovedcrm_search_grams_query(v_org, v_folded);
        v_digits tsquery := lovedcrm_search_grams_query(v_org, trim(BOTH '%' FROM digits_pattern));
        v_e164 tsquery := lovedcrm_search_grams_query(v_org, e164);
        -- One plain word is found as typed by the pattern already.
        v_words boolean := v_exact IS NOT NULL AND v_folded !~ '^\\s*[[:alnum:]]+\\s*$';
    BEGIN
        IF v_org IS NULL THEN
            RETURN;
        END IF;
        IF v_exact IS NOT NULL THEN
            v_fuzzy := v_fuzzy && !! v_exact;  -- a typo somewhere, or it is rank 0
        END IF;
        IF v_digits IS NOT NULL THEN
            v_grams := coalesce(v_grams || v_digits, v_digits);
        END IF;
        IF v_e164 IS NOT NULL THEN
            v_grams := coalesce(v_grams || v_e164, v_e164);
        END IF;
        IF v_grams IS NOT NULL THEN
            {SEARCH_BY_KEYS}
        ELSE
            {SEARCH_SHORT}
        END IF;
    END $$
"""

DROPPED_INDEXES = (
    "ix_leads_search_text",
    "ix_leads_search_keys",
    "ix_leads_search_email",
    "ix_leads_search_phone",
)


def upgrade() -> None:
    for definition in (TAG, GRAMS, GRAMS_QUERY, WORDS, WORDS_QUERY):
        op.execute(definition)
    op.execute(
        f"CREATE INDEX ix_leads_search_grams ON leads USING gin"
        f" (({GRAMS_OF_ROW.replace('l.', '')})) WITH (fastupdate = off)"
    )
    op.execute(
        f"CREATE INDEX ix_leads_search_words ON leads USING gin"
        f" (({WORDS_OF_ROW.replace('l.', '')})) WITH (fastupdate = off)"
    )
    op.execute(SEARCH_LEADS)
    for name in DROPPED_INDEXES:
        op.execute(f"DROP INDEX {name}")
    op.execute("SELECT gin_clean_pending_list('ix_leads_search_company'::regclass)")
    op.execute("ALTER INDEX ix_leads_search_company SET (fastupdate = off)")


def _migration_0010() -> ModuleType:
    path = next(Path(__file__).parent.glob("0010_*.py"))
    spec = importlib.util.spec_from_file_location("lovedcrm_migration_0010", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    previous = _migration_0010()
    op.execute("ALTER INDEX ix_leads_search_company RESET (fastupdate)")
    op.execute(
        "CREATE INDEX ix_leads_search_text ON leads"
        " USING gin (organization_id, search_text gin_trgm_ops)"
    )
    op.execute(
        "CREATE INDEX ix_leads_search_keys ON leads"
        " USING gin (organization_id, lovedcrm_search_keys(search_text))"
    )
    op.execute(
        "CREATE INDEX ix_leads_search_email ON leads"
        " USING gin (organization_id, lower(email::text) gin_trgm_ops)"
    )
    op.execute(
        "CREATE INDEX ix_leads_search_phone ON leads USING gin (organization_id, phone gin_trgm_ops)"
    )
    op.execute("DROP FUNCTION lovedcrm_search_leads(text, text, text, text)")
    op.execute(previous.SEARCH_LEADS)
    op.execute("REVOKE ALL ON FUNCTION lovedcrm_search_leads(text, text, text, text) FROM PUBLIC")
    op.execute("DROP INDEX ix_leads_search_grams")
    op.execute("DROP INDEX ix_leads_search_words")
    for name in (
        "lovedcrm_search_words_query(uuid, text, boolean)",
        "lovedcrm_search_words(uuid, text)",
        "lovedcrm_search_grams_query(uuid, text)",
        "lovedcrm_search_grams(uuid, text, text, text)",
        "lovedcrm_search_tag(uuid)",
    ):
        op.execute(f"DROP FUNCTION {name}")
