"""Alembic environment: runs as the database owner, synchronously, one transaction per run."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from lovedcrm.config import get_settings
from lovedcrm.db.engine import owner_url
from lovedcrm.models import metadata

config = context.config
target_metadata = metadata


def _url() -> str:
    explicit = config.attributes.get("url")
    if explicit is not None:
        return str(explicit)
    return owner_url(get_settings()).render_as_string(hide_password=False)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
