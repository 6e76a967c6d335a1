"""The leads' search indexes take each new lead at once instead of through a pending list.

A GIN index with ``fastupdate`` on (PostgreSQL's default) puts new entries in a pending list
that every search reads row by row until a vacuum, or the insert that fills it past
``gin_pending_list_limit`` (4 MB), moves them into the index. An organization that adds
leads steadily (imports, lead ads, the API) therefore slowed every search of every
organization, and once in a while one insert paid for merging the whole list. On a big
organization (``benchmarks/bench_endpoints.py``: 20,000 leads among 1,000,000) a few
thousand API creates halved the search's throughput, and creating with the list merging now
and then was slower than inserting each entry directly. Autovacuum would only merge it after
a fifth of the table changed.

With ``fastupdate`` off each insert adds its entries to the index itself (a little more work
per insert, always the same), and a search reads only the index. The pending list already
there is merged first.

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_INDEXES = (
    "ix_leads_search_text",
    "ix_leads_search_keys",
    "ix_leads_search_email",
    "ix_leads_search_phone",
    "ix_leads_search_company",
)


def upgrade() -> None:
    for name in SEARCH_INDEXES:
        op.execute(f"SELECT gin_clean_pending_list('{name}'::regclass)")
        op.execute(f"ALTER INDEX {name} SET (fastupdate = off)")


def downgrade() -> None:
    for name in SEARCH_INDEXES:
        op.execute(f"ALTER INDEX {name} RESET (fastupdate)")
