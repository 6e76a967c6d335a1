"""A lead's timeline over the API: notes, typed activities, tasks, edit/delete rules, and
visibility that follows the lead's."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import set_tenant
from tests.factories import create_lead, join_and_login, signup


@pytest.fixture
async def org(client: httpx.AsyncClient) -> dict[str, Any]:
    admin = await signup(client, full_name="Admin Timeline")
    sales = {}
    for key in ("sales", "sales2"):
        sales[key] = await join_and_login(client, admin["headers"], "sales")
    members = (await client.get("/api/v1/members", headers=admin["headers"])).json()
    ids = {m["email"]: m["user_id"] for m in members}
    me = {
        key: (await client.get("/api/v1/auth/me", headers=h)).json()["user"]["id"]
        for key, h in sales.items()
    }
    assert set(me.values()) <= set(ids.values())
    return {"admin": admin["headers"], "org_id": admin["organization_id"], **sales, "ids": me}


async def _lead(c: httpx.AsyncClient, org: dict[str, Any], owner: str | None = None) -> str:
    assigned = {"assigned_to": org["ids"][owner]} if owner else {}
    return str((await create_lead(c, org["admin"], **assigned))["id"])


async def test_notes_and_activities(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database
) -> None:
    h = org["admin"]
    lead = await _lead(client, org)
    r = await client.post(f"/api/v1/leads/{lead}/notes", headers=h, json={"description": "Oi"})
    assert r.status_code == 201, r.text
    note = r.json()
    assert note["type"] == "note" and note["title"] == "Oi" and note["lead_id"] == lead
    r = await client.post(f"/api/v1/leads/{lead}/notes", headers=h, json={"title": "Sem texto"})
    assert r.status_code == 422

    r = await client.post(
        f"/api/v1/leads/{lead}/activities",
        headers=h,
        json={"type": "call", "title": "Ligação", "duration_minutes": 5},
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/api/v1/leads/{lead}/activities", headers=h, json={"type": "stage_change"}
    )
    assert r.status_code == 422
    r = await client.post(
        f"/api/v1/leads/{lead}/activities",
        headers=h,
        json={"type": "task", "title": "Proposta", "metadata": {"due_at": "amanhã"}},
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "metadata.due_at"
    r = await client.post(
        f"/api/v1/leads/{lead}/activities",
        headers=h,
        json={"type": "task", "title": "Proposta", "metadata": {"due_at": "2030-01-31T14:00:00"}},
    )
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["metadata"] == {"due_at": "2030-01-31T14:00:00", "done": False}

    r = await client.patch(f"/api/v1/activities/{task['id']}", headers=h, json={"done": True})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["done"] is True
    r = await client.patch(f"/api/v1/activities/{note['id']}", headers=h, json={"done": True})
    assert r.status_code == 422
    r = await client.patch(
        f"/api/v1/activities/{note['id']}", headers=h, json={"description": "Olá de novo"}
    )
    assert r.status_code == 200 and r.json()["description"] == "Olá de novo"

    r = await client.get(f"/api/v1/leads/{lead}/activities", headers=h)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert {i["type"] for i in items} == {"note", "call", "task"}
    lead_out = (await client.get(f"/api/v1/leads/{lead}", headers=h)).json()
    assert lead_out["last_activity_at"] is not None

    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, uuid.UUID(org["org_id"]), None)
        count = await s.execute(
            text(
                "SELECT count(*) FROM analytics_events WHERE event_type = 'activity_created'"
                " OR event_data->>'event' = 'activity.created'"
            )
        )
        assert count.scalar_one() == 0  # activity.created is a webhook/live event only

    r = await client.delete(f"/api/v1/activities/{note['id']}", headers=h)
    assert r.status_code == 204
    r = await client.delete(f"/api/v1/activities/{note['id']}", headers=h)
    assert r.status_code == 404


async def test_timeline_pagination_newest_first(
    client: httpx.AsyncClient, org: dict[str, Any]
) -> None:
    h = org["admin"]
    lead = await _lead(client, org)
    for n in range(7):
        r = await client.post(
            f"/api/v1/leads/{lead}/notes", headers=h, json={"description": f"Nota {n}"}
        )
        assert r.status_code == 201
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        r = await client.get(f"/api/v1/leads/{lead}/activities", headers=h, params=params)
        assert r.status_code == 200, r.text
        seen += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert [i["description"] for i in seen] == [f"Nota {n}" for n in reversed(range(7))]
    r = await client.get(f"/api/v1/leads/{lead}/activities", headers=h, params={"cursor": "nope"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_cursor"


async def test_visibility_follows_the_lead(client: httpx.AsyncClient, org: dict[str, Any]) -> None:
    mine = await _lead(client, org, "sales")
    theirs = await _lead(client, org, "sales2")
    s1, s2 = org["sales"], org["sales2"]
    r = await client.post(f"/api/v1/leads/{theirs}/notes", headers=s2, json={"description": "x"})
    assert r.status_code == 201
    their_note = r.json()["id"]

    r = await client.get(f"/api/v1/leads/{theirs}/activities", headers=s1)
    assert r.status_code == 404
    r = await client.post(f"/api/v1/leads/{theirs}/notes", headers=s1, json={"description": "x"})
    assert r.status_code == 404
    r = await client.patch(f"/api/v1/activities/{their_note}", headers=s1, json={"title": "y"})
    assert r.status_code == 404
    r = await client.delete(f"/api/v1/activities/{their_note}", headers=s1)
    assert r.status_code == 404

    r = await client.post(f"/api/v1/leads/{mine}/notes", headers=s1, json={"description": "meu"})
    assert r.status_code == 201
    r = await client.get(f"/api/v1/leads/{mine}/activities", headers=s1)
    assert [i["description"] for i in r.json()["items"]] == ["meu"]

    # A note by the admin on sales' lead: visible to sales, but not theirs to edit.
    r = await client.post(
        f"/api/v1/leads/{mine}/notes", headers=org["admin"], json={"description": "do admin"}
    )
    admin_note = r.json()["id"]
    r = await client.patch(f"/api/v1/activities/{admin_note}", headers=s1, json={"title": "z"})
    assert r.status_code == 403, r.text
    assert r.json()["permission"] == "leads:write_all"
    # The admin (leads:write_all) edits anyone's note.
    r = await client.patch(
        f"/api/v1/activities/{their_note}", headers=org["admin"], json={"title": "ok"}
    )
    assert r.status_code == 200, r.text


async def test_stage_change_entries_are_read_only(
    client: httpx.AsyncClient, org: dict[str, Any]
) -> None:
    h = org["admin"]
    lead = await _lead(client, org)
    stages = (await client.get("/api/v1/pipeline/stages", headers=h)).json()
    r = await client.patch(f"/api/v1/leads/{lead}", headers=h, json={"stage_id": stages[2]["id"]})
    assert r.status_code == 200
    items = (await client.get(f"/api/v1/leads/{lead}/activities", headers=h)).json()["items"]
    assert [i["type"] for i in items] == ["stage_change"]
    r = await client.delete(f"/api/v1/activities/{items[0]['id']}", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "activity_not_editable"
