"""Deleting a lead a template was used with: the delete succeeds and the template keeps the
use (its count and success rate), no longer tied to the lead."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from tests.factories import create_lead, create_template, owner_sql, signup


async def test_a_lead_a_template_was_used_with_can_be_deleted(
    client: httpx.AsyncClient, owner: sa.Engine
) -> None:
    admin = await signup(client)
    headers = admin["headers"]
    lead = await create_lead(client, headers)
    template = await create_template(client, headers)
    owner_sql(
        owner,
        "INSERT INTO template_usage_stats"
        " (organization_id, template_id, user_id, lead_id, context_type)"
        " VALUES (:o, :t, :u, :l, 'whatsapp')",
        o=admin["organization_id"],
        u=admin["user"]["id"],
        t=template["id"],
        l=lead["id"],
    )
    r = await client.delete(f"/api/v1/leads/{lead['id']}", headers=headers)
    assert r.status_code == 204, r.text
    rows = owner_sql(
        owner, "SELECT lead_id FROM template_usage_stats WHERE template_id = :t", t=template["id"]
    )
    assert rows == [(None,)]
