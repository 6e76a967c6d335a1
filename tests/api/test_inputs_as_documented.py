"""Inputs are accepted exactly as the OpenAPI document describes them: what schemathesis
found accepted against the schema (or failing with a 500) is refused with 422."""

from __future__ import annotations

import httpx

from tests.factories import create_lead, signup

PROBLEM = "application/problem+json"


def _refused(r: httpx.Response, field: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert field in [e["field"] for e in r.json()["errors"]], r.json()


async def test_a_lead_name_or_stage_set_to_null_is_refused_not_a_server_error(
    client: httpx.AsyncClient,
) -> None:
    admin = await signup(client)
    lead = await create_lead(client, admin["headers"], full_name="Ana")
    url = f"/api/v1/leads/{lead['id']}"
    _refused(
        await client.patch(url, headers=admin["headers"], json={"full_name": None}), "full_name"
    )
    _refused(await client.patch(url, headers=admin["headers"], json={"stage_id": None}), "stage_id")
    # Left out, they are kept; the other fields may still be cleared with null.
    r = await client.patch(url, headers=admin["headers"], json={"company": None, "source": "site"})
    assert r.status_code == 200, r.text
    assert r.json()["full_name"] == "Ana" and r.json()["stage_id"] == lead["stage_id"]


async def test_booleans_and_numbers_keep_their_json_types(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    h = admin["headers"]
    stage = (await client.post("/api/v1/pipeline/stages", headers=h, json={"name": "S"})).json()
    url = f"/api/v1/pipeline/stages/{stage['id']}"
    _refused(await client.patch(url, headers=h, json={"is_active": 0}), "is_active")
    lead = await create_lead(client, h)
    activities = f"/api/v1/leads/{lead['id']}/activities"
    body = {"type": "call", "title": "Ligar", "duration_minutes": False}
    _refused(await client.post(activities, headers=h, json=body), "duration_minutes")
    # The right types still work.
    r = await client.patch(url, headers=h, json={"is_active": True})
    assert r.status_code == 200, r.text
    r = await client.post(activities, headers=h, json={**body, "duration_minutes": 5})
    assert r.status_code == 201, r.text


async def test_a_date_time_is_iso_8601_never_a_number(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    h = admin["headers"]
    r = await client.get("/api/v1/leads", headers=h, params={"created_before": "0.5"})
    _refused(r, "created_before")
    r = await client.get("/api/v1/conversations", headers=h, params={"before": "1700000000"})
    _refused(r, "before")
    r = await client.get(
        "/api/v1/leads", headers=h, params={"created_before": "2030-01-31T14:00:00-03:00"}
    )
    assert r.status_code == 200, r.text


async def test_blank_text_is_refused_as_the_schema_says(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    doc = (await client.get("/openapi.json")).json()
    assert doc["components"]["schemas"]["LoginIn"]["properties"]["password"]["pattern"]
    r = await client.post("/api/v1/auth/login", json={"email": admin["email"], "password": "  "})
    _refused(r, "password")
