"""Hot reads on the driver connection (db.reads) give the rows SQLAlchemy gives: the same
names, the same values of the same Python types, in the same transaction and tenant."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import (
    Float,
    Integer,
    Numeric,
    String,
    bindparam,
    cast,
    event,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from lovedcrm.auth.authentication import principal_for_member
from lovedcrm.db import reads
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import set_tenant
from lovedcrm.leads import lists
from tests.factories import create_lead, signup

FIXED_UUID = "6f1c2a4e-0d3b-4c5a-9e8f-7a6b5c4d3e2f"


async def _both(database: Database, statement: Any, params: dict[str, Any]) -> tuple[Any, Any]:
    async with database.sessionmaker() as session, session.begin():
        prepared = reads.prepare(statement, session.get_bind().dialect)
        assert prepared is not None
        lean = await reads.fetch(session, prepared, params)
        usual = (await session.execute(statement, params)).all()
    return lean, usual


def _same(lean: list[Any], usual: list[Any]) -> None:
    assert [row._fields for row in lean] == [tuple(row._fields) for row in usual]
    for a, b in zip(lean, usual, strict=True):
        assert tuple(a) == tuple(b)
        assert [type(v) for v in a] == [type(v) for v in b]


async def test_values_and_types_as_sqlalchemy_reads_them(database: Database) -> None:
    statement = select(
        literal(1, Integer).label("n"),
        literal("texto", String).label("s"),
        # SQLAlchemy turns a NUMERIC read as float into a float, and a float8 read as
        # Decimal into a Decimal: by the type PostgreSQL answers with.
        cast(literal("2.50"), Numeric(asdecimal=False)).label("as_float"),
        cast(literal("2.25"), Float(asdecimal=True)).label("as_decimal"),
        cast(literal("7.10"), Numeric()).label("plain"),
        cast(literal('{"k": [1, 2.5, null], "b": true}'), JSONB).label("j"),
        text("'2020-01-02T03:04:05.678Z'::timestamptz AS at"),
        text(f"'{FIXED_UUID}'::uuid AS id"),
        bindparam("given", type_=JSONB).label("given"),
    )
    lean, usual = await _both(database, statement, {"given": {"a": [1, "b"]}})
    _same(lean, usual)
    row = lean[0]
    assert isinstance(row.as_float, float) and row.as_float == 2.5
    assert row.as_decimal == Decimal("2.25") and row.plain == Decimal("7.10")
    assert row.id == uuid.UUID(FIXED_UUID) and row.given == {"a": [1, "b"]}


async def test_a_textual_statement_and_bound_names(database: Database) -> None:
    statement = text(
        "SELECT CAST(:a AS int) + 1 AS total, CAST(:b AS text) AS word, 50 % 7 AS rest"
    )
    lean, usual = await _both(database, statement, {"a": 41, "b": "olá"})
    _same(lean, usual)
    assert tuple(lean[0]) == (42, "olá", 1)


def test_what_only_sqlalchemy_can_run_is_not_prepared(database: Database) -> None:
    dialect = database.app_engine.dialect
    expanding = select(literal(1)).where(literal(1).in_(bindparam("xs", expanding=True)))
    assert reads.prepare(expanding, dialect) is None
    twice = select(literal(1).label("a"), literal(2).label("a"))
    assert reads.prepare(twice, dialect) is None


@pytest.fixture
async def org(client: httpx.AsyncClient) -> dict[str, Any]:
    admin = await signup(client, full_name="Ana Reads")
    for name, company in [("Ana Paula", "ACME"), ("Bruno", None), ("Carla Ana", "Beta")]:
        await create_lead(
            client, admin["headers"], full_name=name, company=company, estimated_value="10.50"
        )
    return admin


@pytest.mark.parametrize(
    "sort, q",
    [
        (None, None),
        ("full_name", None),
        ("-lead_score", None),
        ("estimated_value", None),
        ("stage", None),
        ("-assignee", None),
        (None, "ana"),
        ("full_name", "ana"),
    ],
)
async def test_a_page_of_leads_is_the_same_either_way(
    database: Database,
    org: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    sort: str | None,
    q: str | None,
) -> None:
    org_id = uuid.UUID(org["organization_id"])
    user_id = uuid.UUID(org["user"]["id"])

    async def page() -> list[Any]:
        lists._PAGES.clear()
        async with database.sessionmaker() as session, session.begin():
            await set_tenant(session, org_id, user_id)
            principal = await principal_for_member(session, org_id, user_id)
            assert principal is not None
            found = await lists.list_leads(session, principal, limit=10, sort=sort, q=q)
        return found.items

    lean = await page()
    monkeypatch.setattr(reads, "prepare", lambda statement, dialect: None)
    usual = await page()
    assert lean and all(not hasattr(row, "_mapping") for row in lean)  # the lean rows
    assert all(hasattr(row, "_mapping") for row in usual)
    _same(lean, usual)


async def test_the_engine_listeners_see_the_statements(database: Database) -> None:
    """The query-plan guard (tests/db/test_query_plans.py) and tracing listen to the engine."""
    seen: list[str] = []

    def grab(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    def done(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append("after " + statement)

    engine = database.app_engine.sync_engine
    event.listen(engine, "before_cursor_execute", grab)
    event.listen(engine, "after_cursor_execute", done)
    try:
        lean, usual = await _both(database, select(literal(5).label("five")), {})
    finally:
        event.remove(engine, "before_cursor_execute", grab)
        event.remove(engine, "after_cursor_execute", done)
    _same(lean, usual)
    assert len(seen) == 4 and seen[0] == seen[2] and "five" in seen[0]
    assert seen[1] == seen[3] == "after " + seen[0]
