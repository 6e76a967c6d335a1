"""``enqueue`` with a dedupe key already queued in the same transaction answers None without
an INSERT (many events of one unit of work asking for the same debounced job cost one
statement), and a savepoint rolled back forgets the keys it queued."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy import event

import tests.jobs.handlers  # noqa: F401 - registers test.record
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.jobs.queue import enqueue
from tests.factories import owner_sql, signup


async def test_a_dedupe_key_queued_in_this_transaction_costs_no_second_insert(
    client: httpx.AsyncClient, database: Database, owner: sa.Engine
) -> None:
    org = uuid.UUID((await signup(client))["organization_id"])
    key, other = f"k-{uuid.uuid4().hex}", f"k-{uuid.uuid4().hex}"
    inserts: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if "INSERT INTO background_jobs" in statement:
            inserts.append(statement)

    engine = database.app_engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        async with tenant_transaction(database.sessionmaker, org) as session:
            first = await enqueue(
                session, "test.record", {"tag": "a"}, organization_id=org, dedupe_key=key
            )
            again = [
                await enqueue(
                    session, "test.record", {"tag": "a"}, organization_id=org, dedupe_key=key
                )
                for _ in range(5)
            ]
            assert first is not None and again == [None] * 5
            assert len(inserts) == 1
            # A savepoint that queued a key and rolled back: the key is free again.
            nested = await session.begin_nested()
            assert (
                await enqueue(
                    session, "test.record", {"tag": "b"}, organization_id=org, dedupe_key=other
                )
                is not None
            )
            await nested.rollback()
            kept = await enqueue(
                session, "test.record", {"tag": "c"}, organization_id=org, dedupe_key=other
            )
            assert kept is not None and len(inserts) == 3
        # A later transaction asks the database again (and finds the key taken).
        async with tenant_transaction(database.sessionmaker, org) as session:
            assert (
                await enqueue(
                    session, "test.record", {"tag": "a"}, organization_id=org, dedupe_key=key
                )
                is None
            )
            assert len(inserts) == 4
    finally:
        event.remove(engine, "before_cursor_execute", count)
    rows = owner_sql(
        owner,
        "SELECT dedupe_key, job_data->>'tag' AS tag FROM background_jobs"
        " WHERE organization_id = :o ORDER BY dedupe_key",
        o=org,
    )
    assert sorted((r.dedupe_key, r.tag) for r in rows) == sorted([(key, "a"), (other, "c")])
    owner_sql(owner, "DELETE FROM background_jobs WHERE organization_id = :o", o=org)
