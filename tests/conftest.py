"""Test fixtures: a fresh database per run, on the embedded server by default or on the
server named by LOVEDCRM_DATABASE_URL (CI runs both). Tests connect as the app's own
non-owner role, so row-level security is really exercised."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from lovedcrm.app import create_app
from lovedcrm.config import Settings
from lovedcrm.core.clock import ManualClock, use_clock
from lovedcrm.db.bootstrap import create_database, drop_database, ensure_app_role
from lovedcrm.db.embedded import start_embedded
from lovedcrm.db.engine import Database, as_psycopg
from lovedcrm.db.engine import create_database as create_db_handle
from lovedcrm.db.migrate import upgrade

pytest.register_assert_rewrite("tests.factories")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
IN_CI = os.environ.get("CI") == "true"


def shared_path(relative: str) -> Path:
    """A file under ../shared: skipped outside the workplace, a failure under CI."""
    path = SHARED / relative
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing under CI")
        pytest.skip(f"{path} not present (../shared exists only in the Loved CRM workplace)")
    return path


@pytest.fixture(scope="session")
def server_url() -> str:
    raw = os.environ.get("LOVEDCRM_DATABASE_URL")
    if not raw:
        raw = start_embedded(ROOT / "var" / "test-postgres")
    return as_psycopg(make_url(raw)).render_as_string(hide_password=False)


def _with_db(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def owner_url(server_url: str) -> Iterator[str]:
    name = f"lovedcrm_test_{uuid.uuid4().hex[:10]}"
    create_database(server_url, name)
    url = _with_db(server_url, name)
    upgrade(url)
    ensure_app_role(url, "lovedcrm_app")
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="session")
def owner(owner_url: str) -> Iterator[sa.Engine]:
    """The database owner's connection (no row-level security: sees every row, like a DBA);
    use it with `tests.factories.owner_sql`."""
    engine = sa.create_engine(owner_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def empty_database(server_url: str) -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def _make() -> str:
        name = f"lovedcrm_empty_{uuid.uuid4().hex[:10]}"
        create_database(server_url, name)
        made.append(name)
        return _with_db(server_url, name)

    yield _make
    for name in made:
        drop_database(server_url, name)


@pytest.fixture(scope="session")
def settings(owner_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        env="test",
        database_url=owner_url,
        data_dir=tmp_path_factory.mktemp("data"),
        mail_backend="file",
        embedded_worker=False,
        log_json=False,
        log_level="WARNING",
        secret_key="test-secret-key-0123456789abcdefghijklmnopqrstuv",  # type: ignore[arg-type]
        # The fake providers listen on loopback: allowed explicitly, as an installation would
        # allow its own WAHA (tests/core/test_outbound.py checks what happens without it).
        outbound_allow=("127.0.0.1",),
    )


@pytest.fixture(scope="session")
async def database(settings: Settings, owner_url: str) -> AsyncIterator[Database]:
    db = create_db_handle(settings, owner=make_url(owner_url))
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
def app(settings: Settings, database: Database) -> Any:
    return create_app(settings, database=database)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def manual_clock(owner: sa.Engine) -> Iterator[ManualClock]:
    """The product's clock (``lovedcrm.core.clock``) stands still for this test: delayed jobs
    (sandbox receipts, deferred sends) become due only when the test calls ``advance`` (or
    ``run_wa_jobs(..., due_now=True)``), never because the machine was slow.

    It starts at the database's time, so whatever the database stamped before the test
    (``now()``) is already in its past, whichever machine's clock the server reads."""
    with owner.connect() as conn:
        start = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
    with use_clock(ManualClock(start)) as clock:
        assert isinstance(clock, ManualClock)
        yield clock
