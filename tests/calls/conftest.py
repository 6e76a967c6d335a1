"""Fixtures of the calls tests: an organization whose admin has a phone, a lead with one,
and running the calls' jobs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.factories import catch_up_with_database, create_lead, signup

from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle

CALL_JOBS = [
    "calls.sandbox_step",
    "calls.apply_events",
    "calls.apply_pending",
    "calls.finished",
    "calls.recording",
    "calls.bridge",
    "calls.inbound_answer",
]
AGENT_PHONE = "+5511977776666"
LEAD_PHONE = "+5511988887777"


@pytest.fixture
async def org(client: httpx.AsyncClient) -> dict[str, Any]:
    """An admin with their own phone (calls ring it first)."""
    data = await signup(client, full_name="Bia Vendas")
    r = await client.patch(
        "/api/v1/auth/me/profile", headers=data["headers"], json={"phone": AGENT_PHONE}
    )
    assert r.status_code == 200, r.text
    data["user_id"] = r.json()["id"]
    return data


@pytest.fixture
async def lead(client: httpx.AsyncClient, org: dict[str, Any]) -> dict[str, Any]:
    return await create_lead(client, org["headers"], full_name="João Cliente", phone=LEAD_PHONE)


async def run_calls(database: Database, settings: Settings) -> int:
    """Run the calls' jobs that are due (callbacks are stored with the database's time)."""
    catch_up_with_database(database)
    return await run_until_idle(database, settings, types=CALL_JOBS, timeout=30)


def owner_rows(database: Database, sql: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(database.owner_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(sql), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture
def calls_jobs(database: Database, settings: Settings) -> Any:
    async def run() -> int:
        return await run_calls(database, settings)

    return run


@pytest.fixture
def owner_query(database: Database) -> Any:
    def query(sql: str, **params: Any) -> list[Any]:
        return owner_rows(database, sql, **params)

    return query
