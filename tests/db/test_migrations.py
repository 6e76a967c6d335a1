"""The migration chain on a fresh database: up, all the way down, and up again."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import create_engine, inspect, pool, text

from lovedcrm.db.migrate import downgrade, upgrade
from lovedcrm.models import metadata


def _state(url: str) -> tuple[set[str], set[str]]:
    """(tables in public, lovedcrm_* functions)."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            functions = set(
                conn.execute(
                    text(
                        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n"
                        " ON n.oid = p.pronamespace"
                        " WHERE n.nspname = 'public' AND p.proname LIKE 'lovedcrm\\_%'"
                    )
                ).scalars()
            )
            return tables, functions
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_database: Callable[[], str]) -> None:
    url = empty_database()
    expected = set(metadata.tables)

    upgrade(url, "head")
    tables, functions = _state(url)
    assert expected <= tables
    assert {"lovedcrm_current_org", "lovedcrm_current_user"} <= functions

    downgrade(url, "base")
    tables, functions = _state(url)
    assert tables & expected == set()
    assert tables <= {"alembic_version"}
    assert functions == set()

    upgrade(url, "head")
    tables, functions = _state(url)
    assert expected <= tables
    assert {"lovedcrm_current_org", "lovedcrm_current_user"} <= functions
