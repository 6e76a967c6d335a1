"""Duplicate leads: refused on create (409 with the candidates) unless allowed, and merged
into one (timeline moved, empty fields filled, the other deleted, one audit row)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.factories import create_lead, join_and_login, signup


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> dict[str, Any]:
    return await signup(client, full_name="Admin Dedup")


async def create(c: httpx.AsyncClient, h: dict[str, str], **body: Any) -> httpx.Response:
    return await c.post("/api/v1/leads", headers=h, json=body)


def candidates(r: httpx.Response) -> dict[str, list[str]]:
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["code"] == "duplicate_lead"
    return {c["id"]: c["matched_on"] for c in body["candidates"]}


async def test_same_email_is_a_duplicate(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    h = admin["headers"]
    first = await create_lead(client, h, full_name="Maria Souza", email="maria@example.com")
    r = await create(client, h, full_name="M. Souza", email="Maria@Example.com")
    assert candidates(r) == {first["id"]: ["email"]}
    assert r.json()["candidates"][0]["full_name"] == "Maria Souza"


async def test_same_phone_in_another_format_is_a_duplicate(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    h = admin["headers"]
    first = await create_lead(client, h, full_name="Pedro", phone="+55 11 98765-0001")
    r = await create(client, h, full_name="Outro Nome", phone="(11) 98765-0001")
    assert candidates(r) == {first["id"]: ["phone"]}


async def test_similar_name_and_company_is_a_duplicate(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    h = admin["headers"]
    first = await create_lead(client, h, full_name="João da Silva", company="Padaria Pão Quente")
    r = await create(client, h, full_name="Joao da Silva", company="Padaria Pao Quente Ltda")
    assert candidates(r) == {first["id"]: ["name_and_company"]}
    # Same name elsewhere, or someone else at the same company: not a duplicate.
    await create_lead(client, h, full_name="João da Silva", company="Oficina Central")
    await create_lead(client, h, full_name="Carla Mendes", company="Padaria Pão Quente")


async def test_allow_duplicate_creates_it(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    h = admin["headers"]
    await create_lead(client, h, full_name="Ana", email="ana@example.com")
    second = await create_lead(
        client, h, full_name="Ana", email="ana@example.com", allow_duplicate=True
    )
    assert second["email"] == "ana@example.com"


async def test_other_organizations_leads_are_not_duplicates(client: httpx.AsyncClient) -> None:
    a, b = await signup(client), await signup(client)
    await create_lead(client, a["headers"], full_name="Zé", email="ze@example.com")
    await create_lead(client, b["headers"], full_name="Zé", email="ze@example.com")


async def test_sales_sees_only_their_own_candidates(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    await create_lead(client, admin["headers"], full_name="Lia", email="lia@example.com")
    sales = await join_and_login(client, admin["headers"], "sales")
    r = await create(client, sales, full_name="Lia", email="lia@example.com")
    assert r.status_code == 409, r.text
    assert r.json()["candidates"] == [] and r.json()["hidden_candidates"] == 1


async def test_merge_moves_the_timeline_and_deletes_the_other(
    client: httpx.AsyncClient, admin: dict[str, Any], owner: sa.Engine
) -> None:
    h = admin["headers"]
    keep = await create_lead(client, h, full_name="Bruno Lima", email="bruno@example.com")
    other = await create_lead(
        client,
        h,
        full_name="Bruno L.",
        phone="(21) 99876-5432",
        company="Lima & Cia",
        email="bruno.lima@example.com",
    )
    r = await client.post(
        f"/api/v1/leads/{other['id']}/notes", headers=h, json={"description": "Ligou ontem"}
    )
    assert r.status_code == 201, r.text
    note_id = r.json()["id"]

    r = await client.post(
        f"/api/v1/leads/{keep['id']}/merge", headers=h, json={"merge_id": other["id"]}
    )
    assert r.status_code == 200, r.text
    merged = r.json()
    assert merged["id"] == keep["id"]
    assert merged["email"] == "bruno@example.com"  # kept
    assert merged["phone"] == "+5521998765432"  # filled from the other
    assert merged["company"] == "Lima & Cia"

    r = await client.get(f"/api/v1/leads/{other['id']}", headers=h)
    assert r.status_code == 404
    r = await client.get(f"/api/v1/leads/{keep['id']}/activities", headers=h)
    assert note_id in {a["id"] for a in r.json()["items"]}

    with owner.begin() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT changes FROM audit_logs WHERE action = 'lead_merge' AND resource_id = :k"
            ),
            {"k": keep["id"]},
        ).all()
        events = conn.execute(
            sa.text(
                "SELECT event_type FROM analytics_events WHERE organization_id = :o"
                " AND event_data->>'lead_id' = :m"
            ),
            {"o": admin["organization_id"], "m": other["id"]},
        ).all()
    assert len(rows) == 1
    changes = rows[0][0]
    assert changes["merged_id"] == other["id"]
    assert changes["merged"]["full_name"] == "Bruno L."
    assert changes["kept_before"]["full_name"] == "Bruno Lima"
    assert changes["kept_before"]["phone"] is None
    assert changes["moved"]["lead_activities"] >= 1
    assert events  # the merged lead's own history is kept in analytics


async def test_merge_refusals(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    h = admin["headers"]
    a = await create_lead(client, h, full_name="Um")
    b = await create_lead(client, h, full_name="Dois")
    r = await client.post(f"/api/v1/leads/{a['id']}/merge", headers=h, json={"merge_id": a["id"]})
    assert r.status_code == 422 and r.json()["code"] == "merge_same_lead"
    r = await client.post(
        f"/api/v1/leads/{a['id']}/merge", headers=h, json={"merge_id": str(uuid.uuid4())}
    )
    assert r.status_code == 404
    foreign = await create_lead(client, (await signup(client))["headers"], full_name="Outro")
    r = await client.post(
        f"/api/v1/leads/{a['id']}/merge", headers=h, json={"merge_id": foreign["id"]}
    )
    assert r.status_code == 404
    sales = await join_and_login(client, h, "sales")
    r = await client.post(
        f"/api/v1/leads/{a['id']}/merge", headers=sales, json={"merge_id": b["id"]}
    )
    assert r.status_code == 403 and r.json()["permission"] == "leads:write_all"
