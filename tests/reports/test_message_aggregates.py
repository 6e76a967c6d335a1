"""WhatsApp first response through the product's own paths: a customer writes (the sandbox
provider, processed by the WhatsApp jobs like a webhook), a member answers; the lead's facts
are kept at each commit and equal a recomputation, and the report counts the conversation as
answered."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa

from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from tests.factories import activate_sandbox, owner_sql, run_wa_jobs, signup

FACTS = (
    "SELECT lead_id, owner_id, status, first_inbound_at, first_reply_at FROM report_lead_facts"
    " WHERE organization_id = :o ORDER BY lead_id"
)


async def test_first_response_kept_at_commit(
    client: httpx.AsyncClient, owner: sa.Engine, database: Database, settings: Settings
) -> None:
    admin = await signup(client)
    org, h = admin["organization_id"], admin["headers"]
    await activate_sandbox(client, h)
    for phone, text in (("+5511987650001", "Oi, quero um orçamento"), ("+5511987650002", "Olá")):
        r = await client.post(
            "/api/v1/whatsapp/sandbox/inbound",
            headers=h,
            json={"from_number": phone, "content": text},
        )
        assert r.status_code == 202, r.text
    await run_wa_jobs(database, settings)
    rows: list[Any] = owner_sql(owner, FACTS, o=org)
    assert len(rows) == 2 and all(r.first_inbound_at and not r.first_reply_at for r in rows)

    lead = str(
        owner_sql(
            owner,
            "SELECT id FROM leads WHERE phone = '+5511987650001' AND organization_id = :o",
            o=org,
        )[0][0]
    )
    r = await client.post(f"/api/v1/leads/{lead}/messages", headers=h, json={"content": "Oi!"})
    assert r.status_code == 202, r.text
    await run_wa_jobs(database, settings)
    kept = owner_sql(owner, FACTS, o=org)
    answered = [r for r in kept if str(r.lead_id) == lead]
    assert answered[0].first_reply_at > answered[0].first_inbound_at

    r = await client.post("/api/v1/reports/recompute", headers=h)
    assert r.status_code == 200, r.text
    assert owner_sql(owner, FACTS, o=org) == kept

    body = (await client.get("/api/v1/reports/whatsapp", headers=h)).json()
    assert (body["total"]["conversations"], body["total"]["answered"]) == (2, 1)
    assert body["total"]["answer_rate"] == 0.5
