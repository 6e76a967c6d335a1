"""Engines for the two database roles.

- the *owner* runs migrations and the bootstrap (creates the app role, grants);
- the *app* role (no SUPERUSER, no BYPASSRLS) serves every request and job, so row-level
  security always applies to business code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pydantic_core
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from lovedcrm.config import Settings
from lovedcrm.db.embedded import start_embedded


def owner_url(settings: Settings) -> URL:
    raw = settings.database_url or start_embedded(settings.embedded_pg_dir)
    return as_psycopg(make_url(raw))


def as_psycopg(url: URL) -> URL:
    """Normalise any postgres URL to the psycopg 3 driver."""
    return url.set(drivername="postgresql+psycopg")


def app_url(settings: Settings, owner: URL) -> URL:
    if settings.app_database_url:
        return as_psycopg(make_url(settings.app_database_url))
    password = settings.db_app_password.get_secret_value() if settings.db_app_password else None
    return owner.set(username=settings.db_app_role, password=password)


@dataclass
class Database:
    owner_url: URL
    app_url: URL
    app_engine: AsyncEngine
    # A small separate pool for one-statement side work done while a request already holds
    # a connection of the main pool (rate-limit counters). Taking it from the main pool
    # would deadlock under load: every request holding one connection, waiting for a second.
    side_engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession] = field(init=False)

    def __post_init__(self) -> None:
        self.sessionmaker = async_sessionmaker(self.app_engine, expire_on_commit=False)

    async def dispose(self) -> None:
        await self.app_engine.dispose()
        await self.side_engine.dispose()


def create_database(settings: Settings, owner: URL | None = None) -> Database:
    owner = owner or owner_url(settings)
    app = app_url(settings, owner)
    engine = create_async_engine(
        app,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # No ping per checkout (a round trip on every request); connections are recycled
        # instead, and one broken by a server restart fails one request, then is replaced.
        pool_recycle=1800,
        # JSON columns parsed by pydantic-core (a tenth of ``json.loads``'s time on the small
        # objects leads carry; a page of 50 leads reads 50 of them).
        json_deserializer=pydantic_core.from_json,
    )
    side = create_async_engine(
        app,
        pool_size=settings.db_side_pool_size,
        max_overflow=settings.db_side_pool_size,
        pool_recycle=1800,
        isolation_level="AUTOCOMMIT",
    )
    return Database(owner_url=owner, app_url=app, app_engine=engine, side_engine=side)
