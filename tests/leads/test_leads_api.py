"""Leads over the public API: filters, accent-insensitive search, keyset pagination, custom
fields, and the domain events (timeline entry + analytics row) a stage change leaves."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from lovedcrm.auth.authentication import principal_for_member
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import set_tenant
from lovedcrm.leads import service as leads_service
from tests.factories import create_lead, set_custom_fields, signup

CUSTOM_FIELDS = [
    {"key": "segment", "label": "Segmento", "type": "select", "options": ["varejo", "b2b"]},
    {"key": "employees", "label": "Funcionários", "type": "number"},
    {"key": "first_contact", "label": "Primeiro contato", "type": "date"},
    {"key": "vip", "label": "VIP", "type": "checkbox"},
    {"key": "notes", "label": "Notas", "type": "text"},
]


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> dict[str, Any]:
    data = await signup(client, full_name="Admin Leads")
    await set_custom_fields(client, data["headers"], CUSTOM_FIELDS)
    return data


async def _ids(c: httpx.AsyncClient, h: dict[str, str], **params: Any) -> set[str]:
    r = await c.get("/api/v1/leads", headers=h, params={"limit": 200, **params})
    assert r.status_code == 200, r.text
    return {i["id"] for i in r.json()["items"]}


async def test_accent_insensitive_search(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    h = admin["headers"]
    joao = await create_lead(client, h, full_name="João Conceição")
    other = await create_lead(client, h, full_name="Maria Souza", company="Açaí do Pará")
    assert await _ids(client, h, q="joao") == {joao["id"]}
    assert await _ids(client, h, q="CONCEICAO") == {joao["id"]}
    assert await _ids(client, h, q="acai do para") == {other["id"]}
    assert await _ids(client, h, q="100%_") == set()


async def test_phone_search_in_any_format(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    h = admin["headers"]
    lead = await create_lead(client, h, phone="+5511987654321")
    assert lead["phone"] == "+5511987654321"
    await create_lead(client, h, phone="+5511912345678")
    for typed in ("(11) 98765-4321", "11 98765 4321", "+55 11 98765-4321", "98765-4321"):
        assert await _ids(client, h, q=typed) == {lead["id"]}, typed


async def test_filters(
    client: httpx.AsyncClient, admin: dict[str, Any], database: Database
) -> None:
    h = admin["headers"]
    a = await create_lead(client, h, source="whatsapp")
    b = await create_lead(client, h, source="ads")
    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, uuid.UUID(admin["organization_id"]), None)
        await s.execute(
            text(
                "UPDATE leads SET lead_score = 80, created_at = now() - interval '10 days'"
                " WHERE id = :id"
            ),
            {"id": a["id"]},
        )
        await s.execute(text("UPDATE leads SET lead_score = 20 WHERE id = :id"), {"id": b["id"]})
    assert await _ids(client, h, source="whatsapp") == {a["id"]}
    assert await _ids(client, h, source="ads") == {b["id"]}
    assert await _ids(client, h, score_min=50) == {a["id"]}
    assert await _ids(client, h, score_max=50) == {b["id"]}
    assert await _ids(client, h, score_min=10, score_max=90) == {a["id"], b["id"]}
    r = await client.get("/api/v1/leads/" + a["id"], headers=h)
    created_a = r.json()["created_at"]
    assert await _ids(client, h, created_before=created_a) == set()
    assert b["id"] in await _ids(client, h, created_after=b["created_at"])
    assert a["id"] not in await _ids(client, h, created_after=b["created_at"])
    r = await client.get("/api/v1/leads", headers=h, params={"score_min": 101})
    assert r.status_code == 422
    r = await client.get("/api/v1/leads", headers=h, params={"sort": "lead_score"})
    assert [i["id"] for i in r.json()["items"]] == [b["id"], a["id"]]


async def test_cursor_pagination_returns_each_lead_once(
    client: httpx.AsyncClient, admin: dict[str, Any], database: Database
) -> None:
    h = admin["headers"]
    org = uuid.UUID(admin["organization_id"])
    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, org, None)
        # 120 leads, many sharing a created_at, so the id tie-break is exercised.
        await s.execute(
            text(
                "INSERT INTO leads (organization_id, full_name, stage_id, created_at)"
                " SELECT :org, 'Bulk ' || g,"
                " (SELECT id FROM pipeline_stages WHERE organization_id = :org"
                "  ORDER BY stage_order LIMIT 1),"
                " now() - (g % 7) * interval '1 minute'"
                " FROM generate_series(1, 120) g"
            ),
            {"org": org},
        )
    for sort in ("-created_at", "created_at", "full_name", "-lead_score"):
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 25, "sort": sort}
            if cursor:
                params["cursor"] = cursor
            r = await client.get("/api/v1/leads", headers=h, params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            seen += [i["id"] for i in body["items"]]
            pages += 1
            cursor = body["next_cursor"]
            if not cursor:
                break
        assert len(seen) == 120 and len(set(seen)) == 120, sort
        assert pages == 5, sort


async def test_bad_cursor(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    h = admin["headers"]
    for bad in ("garbage!!", "WyJhIl0", "WyItY3JlYXRlZF9hdCIsIm5vdC1hLWRhdGUiLCJ4Il0"):
        r = await client.get("/api/v1/leads", headers=h, params={"cursor": bad})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["code"] == "invalid_cursor"
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_custom_fields_validation(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    h = admin["headers"]
    good = {
        "segment": "b2b",
        "employees": 12,
        "first_contact": "2030-01-15",
        "vip": True,
        "notes": "ok",
    }
    lead = await create_lead(client, h, custom_fields=good)
    assert lead["custom_fields"] == good

    r = await client.post(
        "/api/v1/leads", headers=h, json={"full_name": "X", "custom_fields": {"color": "red"}}
    )
    assert r.status_code == 422, r.text
    assert "color" in r.json()["detail"]

    bad = {"segment": "gov", "employees": "many", "first_contact": "15/01", "vip": "yes"}
    r = await client.post("/api/v1/leads", headers=h, json={"full_name": "X", "custom_fields": bad})
    assert r.status_code == 422, r.text
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {f"custom_fields.{k}" for k in bad}

    # PATCH merges; null removes a key; types are checked again.
    r = await client.patch(
        f"/api/v1/leads/{lead['id']}",
        headers=h,
        json={"custom_fields": {"employees": 30, "notes": None}},
    )
    assert r.status_code == 200, r.text
    cf = r.json()["custom_fields"]
    assert cf["employees"] == 30 and "notes" not in cf and cf["segment"] == "b2b"
    r = await client.patch(
        f"/api/v1/leads/{lead['id']}", headers=h, json={"custom_fields": {"employees": True}}
    )
    assert r.status_code == 422, r.text


async def test_required_custom_field(client: httpx.AsyncClient) -> None:
    data = await signup(client)
    h = data["headers"]
    fields = [{"key": "cpf", "label": "CPF", "type": "text", "required": True}]
    r = await client.patch(
        "/api/v1/organizations/current", headers=h, json={"settings": {"custom_fields": fields}}
    )
    assert r.status_code == 200, r.text
    r = await client.post("/api/v1/leads", headers=h, json={"full_name": "Sem CPF"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "custom_fields.cpf"
    await create_lead(client, h, custom_fields={"cpf": "123"})


async def _rows(database: Database, org: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, uuid.UUID(org), None)
        result = await s.execute(text(sql), params)
        return [dict(r._mapping) for r in result]


async def test_stage_change_writes_activity_and_analytics(
    client: httpx.AsyncClient, admin: dict[str, Any], database: Database
) -> None:
    h = admin["headers"]
    org = admin["organization_id"]
    stages = (await client.get("/api/v1/pipeline/stages", headers=h)).json()
    lead = await create_lead(client, h)
    assert lead["stage_id"] == stages[0]["id"]
    r = await client.patch(
        f"/api/v1/leads/{lead['id']}", headers=h, json={"stage_id": stages[1]["id"]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["last_activity_at"] is not None

    acts = await _rows(
        database,
        org,
        "SELECT activity_type, title, metadata FROM lead_activities WHERE lead_id = :id",
        id=lead["id"],
    )
    assert len(acts) == 1
    assert acts[0]["activity_type"] == "stage_change"
    assert acts[0]["title"] == f"Stage: {stages[0]['name']} → {stages[1]['name']}"
    assert acts[0]["metadata"] == {
        "from_stage_id": stages[0]["id"],
        "to_stage_id": stages[1]["id"],
        "from": stages[0]["name"],
        "to": stages[1]["name"],
    }
    events = await _rows(
        database,
        org,
        "SELECT event_type, event_data FROM analytics_events"
        " WHERE event_data->>'lead_id' = :id ORDER BY occurred_at",
        id=lead["id"],
    )
    kinds = [e["event_type"] for e in events]
    assert kinds.count("pipeline_conversion") == 1, kinds
    conversion = next(e for e in events if e["event_type"] == "pipeline_conversion")
    assert conversion["event_data"]["to_stage_id"] == stages[1]["id"]
    assert conversion["event_data"]["from_stage_id"] == stages[0]["id"]


async def test_won_and_lost(
    client: httpx.AsyncClient, admin: dict[str, Any], database: Database
) -> None:
    h = admin["headers"]
    won = await create_lead(client, h)
    r = await client.patch(f"/api/v1/leads/{won['id']}", headers=h, json={"status": "converted"})
    assert r.status_code == 200, r.text
    assert r.json()["converted_at"] is not None
    lost = await create_lead(client, h)
    r = await client.patch(f"/api/v1/leads/{lost['id']}", headers=h, json={"status": "lost"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "lost_reason"
    r = await client.patch(
        f"/api/v1/leads/{lost['id']}", headers=h, json={"status": "lost", "lost_reason": "Preço"}
    )
    assert r.status_code == 200, r.text
    kinds = {
        (e["event_type"], e["lead"])
        for e in await _rows(
            database,
            admin["organization_id"],
            "SELECT event_type, event_data->>'lead_id' AS lead FROM analytics_events",
        )
    }
    assert ("lead_won", won["id"]) in kinds
    assert ("lead_lost", lost["id"]) in kinds
    assert ("lead_created", won["id"]) in kinds


async def _bulk(database: Database, org: uuid.UUID, sql_values: str, n: int) -> None:
    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, org, None)
        await s.execute(
            text(
                "INSERT INTO leads (organization_id, full_name, stage_id, created_at, updated_at,"
                " company, estimated_value, last_activity_at, lead_score)"
                " SELECT :org, 'Bulk ' || g, (SELECT id FROM pipeline_stages"
                " WHERE organization_id = :org ORDER BY stage_order LIMIT 1), "
                + sql_values
                + " FROM generate_series(1, :n) g"
            ),
            {"org": org, "n": n},
        )


async def test_every_order_pages_through_empty_values(
    client: httpx.AsyncClient, admin: dict[str, Any], database: Database
) -> None:
    """Keys left empty (NULL) sort below every value -- a date's as -infinity, which the
    cursor carries as text -- and paging still returns each lead once, in order."""
    org = uuid.UUID(admin["organization_id"])
    await _bulk(
        database,
        org,
        "CASE WHEN g % 3 = 0 THEN NULL ELSE now() - (g % 5) * interval '1 minute' END,"
        " CASE WHEN g % 4 = 0 THEN NULL ELSE now() END,"
        " CASE WHEN g % 2 = 0 THEN NULL ELSE 'Empresa ' || g % 3 END,"
        " CASE WHEN g % 5 = 0 THEN NULL ELSE g % 4 END,"
        " CASE WHEN g % 2 = 1 THEN NULL ELSE now() - g * interval '1 hour' END,"
        " CASE WHEN g % 3 = 1 THEN NULL ELSE g % 2 END",
        40,
    )
    async with database.sessionmaker() as s, s.begin():
        principal = await principal_for_member(s, org, uuid.UUID(admin["user"]["id"]))
        assert principal is not None
        keys = (
            "created_at",
            "updated_at",
            "full_name",
            "lead_score",
            "company",
            "estimated_value",
            "last_activity_at",
        )
        for sort in (*keys, *(f"-{k}" for k in keys)):
            everything = await leads_service.list_leads(s, principal, sort=sort, limit=100)
            seen, cursor = [], None
            while True:
                page = await leads_service.list_leads(
                    s, principal, sort=sort, limit=7, cursor=cursor
                )
                seen += [row.id for row in page.items]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert seen == [row.id for row in everything.items], sort
            assert len(seen) == 40, sort


async def test_sparse_fieldsets(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    h = admin["headers"]
    lead = await create_lead(client, h, full_name="Ana Campos", phone="+5511912340000")
    r = await client.get("/api/v1/leads", headers=h, params={"fields": "id,full_name,phone"})
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [
        {"id": lead["id"], "full_name": "Ana Campos", "phone": "+5511912340000"}
    ]
    # Asked twice or in another order: each once, in the order asked.
    r = await client.get("/api/v1/leads", headers=h, params={"fields": "phone,id,phone"})
    assert list(r.json()["items"][0]) == ["phone", "id"]
    for bad in ("id,nope", "search_text", "id,", "", "id full_name"):
        r = await client.get("/api/v1/leads", headers=h, params={"fields": bad})
        assert r.status_code == 422, (bad, r.text)
    # The timeline too.
    await client.post(f"/api/v1/leads/{lead['id']}/notes", headers=h, json={"description": "Oi"})
    r = await client.get(
        f"/api/v1/leads/{lead['id']}/activities", headers=h, params={"fields": "type,metadata"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["items"] and all(set(i) == {"type", "metadata"} for i in r.json()["items"])
    r = await client.get(
        f"/api/v1/leads/{lead['id']}/activities", headers=h, params={"fields": "x"}
    )
    assert r.status_code == 422


async def test_the_lean_list_writes_what_the_model_writes(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    """A list is serialised without a pydantic model per lead; each item is still exactly
    the lead as GET /leads/{id} (LeadOut) writes it."""
    h = admin["headers"]
    await create_lead(
        client,
        h,
        full_name="Zé Valor",
        email="ze@example.com",
        estimated_value="1500.50",
        custom_fields={"segment": "b2b", "employees": 12, "vip": True},
    )
    won = await create_lead(client, h, full_name="Lia Ganhou", estimated_value="10")
    r = await client.patch(f"/api/v1/leads/{won['id']}", headers=h, json={"status": "converted"})
    assert r.status_code == 200, r.text
    listed = (await client.get("/api/v1/leads", headers=h)).json()["items"]
    assert len(listed) == 2
    for item in listed:
        one = await client.get(f"/api/v1/leads/{item['id']}", headers=h)
        assert item == one.json()
    # The timeline: each item as the note's own answer (ActivityOut) wrote it.
    note = await client.post(
        f"/api/v1/leads/{won['id']}/notes", headers=h, json={"title": "T", "description": "D"}
    )
    assert note.status_code == 201, note.text
    r = await client.get(f"/api/v1/leads/{won['id']}/activities", headers=h)
    assert note.json() in r.json()["items"]


async def test_the_fields_parameter_is_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path, model in (
        ("/api/v1/leads", "LeadOut"),
        ("/api/v1/leads/{lead_id}/activities", "ActivityOut"),
    ):
        params = {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}
        schema = params["fields"]["schema"]
        pattern = next(s["pattern"] for s in schema["anyOf"] if "pattern" in s)
        names = list(spec["components"]["schemas"][model]["properties"])
        assert all(f"`{n}`" in params["fields"]["description"] for n in names)
        assert re.fullmatch(pattern, ",".join(names))
        assert not re.fullmatch(pattern, "id,unknown")
        answer = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert len(answer["schema"]["anyOf"]) == 2  # the whole items, or the fields asked
