"""Pipeline stages over the API: totals, add, edit, reorder, delete (moving leads), rules."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import set_tenant
from tests.factories import join_and_login, signup

URL = "/api/v1/pipeline/stages"


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> dict[str, Any]:
    return await signup(client, full_name="Admin Pipeline")


async def _stages(c: httpx.AsyncClient, h: dict[str, str]) -> list[dict[str, Any]]:
    r = await c.get(URL, headers=h)
    assert r.status_code == 200, r.text
    return list(r.json())


async def test_list_with_totals(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    h = admin["headers"]
    stages = await _stages(client, h)
    assert [s["name"] for s in stages] == ["Lead", "Contato", "Proposta", "Negociação", "Fechado"]
    assert [s["stage_order"] for s in stages] == [1, 2, 3, 4, 5]
    for value in ("100.50", "200.00"):
        r = await client.post(
            "/api/v1/leads",
            headers=h,
            json={"full_name": "L", "estimated_value": value, "stage_id": stages[1]["id"]},
        )
        assert r.status_code == 201
    stages = await _stages(client, h)
    assert stages[1]["lead_count"] == 2
    assert float(stages[1]["total_value"]) == 300.50
    assert stages[0]["lead_count"] == 0 and float(stages[0]["total_value"]) == 0


async def test_create_update_and_validation(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    h = admin["headers"]
    r = await client.post(URL, headers=h, json={"name": "Demo", "color": "#0EA5E9"})
    assert r.status_code == 201, r.text
    demo = r.json()
    assert demo["stage_order"] == 6 and demo["stage_type"] == "custom"
    for bad in ("blue", "#12345", "#GGGGGG", "0ea5e9"):
        r = await client.post(URL, headers=h, json={"name": "X", "color": bad})
        assert r.status_code == 422, bad
        assert r.json()["errors"][0]["field"] == "color"
    r = await client.patch(
        f"{URL}/{demo['id']}", headers=h, json={"name": "Demonstração", "is_active": False}
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Demonstração" and r.json()["is_active"] is False
    r = await client.patch(f"{URL}/{demo['id']}", headers=h, json={"color": "red"})
    assert r.status_code == 422
    # An inactive stage takes no leads.
    r = await client.post(
        "/api/v1/leads", headers=h, json={"full_name": "L", "stage_id": demo["id"]}
    )
    assert r.status_code == 422


async def test_reorder(
    client: httpx.AsyncClient, admin: dict[str, Any], database: Database
) -> None:
    h = admin["headers"]
    stages = await _stages(client, h)
    ids = [s["id"] for s in stages]
    new = [ids[4], ids[0], ids[2], ids[1], ids[3]]
    r = await client.post(f"{URL}/reorder", headers=h, json={"stage_ids": new})
    assert r.status_code == 200, r.text
    assert [s["id"] for s in r.json()] == new
    assert [s["stage_order"] for s in r.json()] == [1, 2, 3, 4, 5]
    assert [s["id"] for s in await _stages(client, h)] == new

    for bad in (new[:4], [*new, new[0]], [*new[:4], str(uuid.uuid4())]):
        r = await client.post(f"{URL}/reorder", headers=h, json={"stage_ids": bad})
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "invalid_stage_order"
    assert [s["id"] for s in await _stages(client, h)] == new

    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, uuid.UUID(admin["organization_id"]), None)
        rows = await s.execute(
            text(
                "SELECT changes FROM audit_logs WHERE action = 'settings_update'"
                " AND resource_type = 'pipeline_stage'"
            )
        )
        assert any(row.changes.get("operation") == "reorder" for row in rows)


async def test_delete_moves_leads(
    client: httpx.AsyncClient, admin: dict[str, Any], database: Database
) -> None:
    h = admin["headers"]
    stages = await _stages(client, h)
    empty, full, target = stages[4], stages[1], stages[2]
    r = await client.delete(f"{URL}/{empty['id']}", headers=h)
    assert r.status_code == 204, r.text

    leads = []
    for _ in range(3):
        r = await client.post(
            "/api/v1/leads", headers=h, json={"full_name": "L", "stage_id": full["id"]}
        )
        leads.append(r.json()["id"])
    r = await client.delete(f"{URL}/{full['id']}", headers=h)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "stage_not_empty" and r.json()["lead_count"] == 3
    assert "3" in r.json()["detail"]
    r = await client.delete(f"{URL}/{full['id']}", headers=h, params={"move_to": full["id"]})
    assert r.status_code == 422
    r = await client.delete(f"{URL}/{full['id']}", headers=h, params={"move_to": str(uuid.uuid4())})
    assert r.status_code == 422
    r = await client.delete(f"{URL}/{full['id']}", headers=h, params={"move_to": target["id"]})
    assert r.status_code == 204, r.text

    left = await _stages(client, h)
    assert [s["id"] for s in left] == [stages[0]["id"], target["id"], stages[3]["id"]]
    assert left[1]["lead_count"] == 3
    for lead_id in leads:
        lead = (await client.get(f"/api/v1/leads/{lead_id}", headers=h)).json()
        assert lead["stage_id"] == target["id"]
        items = (await client.get(f"/api/v1/leads/{lead_id}/activities", headers=h)).json()
        assert items["items"][0]["metadata"]["reason"] == "stage_deleted"
    # A new stage still goes last.
    r = await client.post(URL, headers=h, json={"name": "Nova"})
    assert r.json()["stage_order"] == 5


async def test_other_orgs_stage_is_404(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    other = await signup(client)
    theirs = (await _stages(client, other["headers"]))[0]["id"]
    h = admin["headers"]
    assert (await client.patch(f"{URL}/{theirs}", headers=h, json={"name": "x"})).status_code == 404
    assert (await client.delete(f"{URL}/{theirs}", headers=h)).status_code == 404
    r = await client.delete(
        f"{URL}/{(await _stages(client, h))[0]['id']}", headers=h, params={"move_to": theirs}
    )
    assert r.status_code in (204, 422)  # the first stage is empty: nothing to move
    r = await client.post(f"{URL}/reorder", headers=h, json={"stage_ids": [theirs]})
    assert r.status_code == 422
    assert (await _stages(client, other["headers"]))[0]["name"] == "Lead"


async def test_permissions(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    sales = await join_and_login(client, admin["headers"], "sales")
    assert (await client.get(URL, headers=sales)).status_code == 200
    r = await client.post(URL, headers=sales, json={"name": "Nope"})
    assert r.status_code == 403 and r.json()["permission"] == "pipeline:manage"
    stage = (await _stages(client, sales))[0]["id"]
    r = await client.delete(f"{URL}/{stage}", headers=sales)
    assert r.status_code == 403


async def test_default_stages_are_named_in_the_organizations_language(
    client: httpx.AsyncClient,
) -> None:
    english = await signup(client, full_name="Admin English", locale="en")
    assert [s["name"] for s in await _stages(client, english["headers"])] == [
        "Lead",
        "Contact",
        "Proposal",
        "Negotiation",
        "Closed",
    ]
    portuguese = await signup(client, full_name="Admin Português", locale="pt-BR")
    assert [s["name"] for s in await _stages(client, portuguese["headers"])] == [
        "Lead",
        "Contato",
        "Proposta",
        "Negociação",
        "Fechado",
    ]
