"""Owner-side set-up, run after migrations: the app's own database role and its grants.

The app role has LOGIN but neither SUPERUSER nor BYPASSRLS, so every query it runs is
subject to the row-level security policies created by the migrations.
"""

from __future__ import annotations

import re

from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ProgrammingError

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def ensure_app_role(owner: URL | str, role: str, password: str | None = None) -> None:
    if not _IDENT.match(role):
        raise ValueError(f"invalid database role name: {role!r}")
    engine = create_engine(owner, poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
            ).scalar()
            if not exists:
                # Roles are cluster-wide: two databases on one server may share the role.
                try:
                    with conn.begin_nested():
                        conn.execute(text(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS"))
                except ProgrammingError as exc:
                    if "already exists" not in str(exc):
                        raise
            conn.execute(text(f"ALTER ROLE {role} NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB"))
            if password:
                # Identifiers cannot be bound; the password is a literal, quoted by the server.
                quoted = conn.execute(text("SELECT quote_literal(:p)"), {"p": password}).scalar()
                conn.execute(text(f"ALTER ROLE {role} PASSWORD {quoted}"))
            db = conn.execute(text("SELECT current_database()")).scalar()
            conn.execute(text(f'GRANT CONNECT, TEMPORARY ON DATABASE "{db}" TO {role}'))
            conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
            conn.execute(
                text(
                    f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
                )
            )
            conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"))
            conn.execute(text(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role}"))
            # The migration history is the owner's business.
            conn.execute(text(f"REVOKE ALL ON TABLE alembic_version FROM {role}"))
            conn.execute(text(f"GRANT SELECT ON TABLE alembic_version TO {role}"))
    finally:
        engine.dispose()


def _run_on_server(server_url: URL | str, name: str, statement: str) -> None:
    """Run one statement about database ``name`` outside a transaction (CREATE/DROP DATABASE
    cannot run inside one)."""
    if not _IDENT.match(name):
        raise ValueError(f"invalid database name: {name!r}")
    engine = create_engine(server_url, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def create_database(server_url: URL | str, name: str) -> None:
    _run_on_server(server_url, name, f'CREATE DATABASE "{name}"')


def drop_database(server_url: URL | str, name: str) -> None:
    _run_on_server(server_url, name, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
