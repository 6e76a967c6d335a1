"""An organization whose leads predate the aggregates (made before migration 0012): the first
report it opens queues a rebuild, and once that has run the reports count every lead."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle
from tests.factories import create_lead, owner_sql, signup


async def test_leads_older_than_the_aggregates_are_rebuilt_in_the_background(
    client: httpx.AsyncClient, database: Database, settings: Settings, owner: sa.Engine
) -> None:
    admin = await signup(client)
    h = admin["headers"]
    org = admin["organization_id"]
    for _ in range(3):
        await create_lead(client, h)
    # As if the leads had been there before the aggregates existed.
    for table in ("report_lead_facts", "report_stage_spans"):
        owner_sql(owner, f"DELETE FROM {table} WHERE organization_id = :o", o=org)

    r = await client.get("/api/v1/reports/overview", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["current"]["leads_created"] == 0  # not rebuilt yet
    queued = owner_sql(
        owner,
        "SELECT count(*) FROM background_jobs WHERE organization_id = :o"
        " AND job_type = 'reports.recompute'",
        o=org,
    )
    assert queued == [(1,)]
    # A second look queues nothing more (one rebuild an hour at most).
    await client.get("/api/v1/reports/funnel", headers=h)
    assert owner_sql(
        owner,
        "SELECT count(*) FROM background_jobs WHERE organization_id = :o"
        " AND job_type = 'reports.recompute'",
        o=org,
    ) == [(1,)]

    await run_until_idle(database, settings, types=["reports.recompute"])
    r = await client.get("/api/v1/reports/overview", headers=h)
    assert r.json()["current"]["leads_created"] == 3
    facts = owner_sql(
        owner, "SELECT count(*) FROM report_lead_facts WHERE organization_id = :o", o=org
    )
    assert facts == [(3,)]
