"""Message templates over the API (variables, A/B variants, permissions) and rendering."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from lovedcrm.auth.models import User
from lovedcrm.leads.models import Lead, PipelineStage
from lovedcrm.messaging.templates import parse_variables, render
from lovedcrm.organizations.models import Organization
from tests.factories import join_and_login, set_custom_fields, signup

URL = "/api/v1/templates"


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> dict[str, Any]:
    data = await signup(client, full_name="Admin Templates")
    await set_custom_fields(
        client, data["headers"], [{"key": "plano", "label": "Plano", "type": "text"}]
    )
    return data


async def test_crud_and_variables(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    h = admin["headers"]
    seeded = (await client.get(URL, headers=h)).json()
    assert seeded and all(
        t["variables"] == [{"name": "lead_name", "type": "string"}] for t in seeded
    )

    body = {
        "name": "Follow-up",
        "category": "follow_up",
        "content": "Oi {{first_name}}, e a {{ company | sua empresa }}? Plano {{plano}}. "
        "{{first_name}}",
    }
    r = await client.post(URL, headers=h, json=body)
    assert r.status_code == 201, r.text
    t = r.json()
    assert [v["name"] for v in t["variables"]] == ["first_name", "company", "plano"]
    assert t["version"] == 1 and t["parent_template_id"] is None

    r = await client.post(
        URL, headers=h, json={**body, "content": "Oi {{nome}} {{first_name}} {{cupom}}"}
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "unknown_variables"
    assert r.json()["unknown"] == ["nome", "cupom"]
    assert "nome" in r.json()["detail"] and "cupom" in r.json()["detail"]

    r = await client.post(URL, headers=h, json={"name": "x", "content": "sem categoria"})
    assert r.status_code == 422

    r = await client.patch(f"{URL}/{t['id']}", headers=h, json={"content": "Olá {{stage}}"})
    assert r.status_code == 200, r.text
    assert r.json()["variables"] == [{"name": "stage", "type": "string"}]
    r = await client.patch(f"{URL}/{t['id']}", headers=h, json={"content": "{{nada}}"})
    assert r.status_code == 422
    assert (await client.get(f"{URL}/{t['id']}", headers=h)).json()["content"] == "Olá {{stage}}"

    r = await client.get(URL, headers=h, params={"category": "follow_up"})
    assert t["id"] in {x["id"] for x in r.json()}
    assert {x["category"] for x in r.json()} == {"follow_up"}

    assert (await client.delete(f"{URL}/{t['id']}", headers=h)).status_code == 204
    assert (await client.get(f"{URL}/{t['id']}", headers=h)).status_code == 404


async def test_ab_variants(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    h = admin["headers"]
    r = await client.post(
        URL, headers=h, json={"name": "A", "category": "greeting", "content": "Oi {{lead_name}}"}
    )
    original = r.json()
    variant_b = (
        await client.post(
            URL,
            headers=h,
            json={
                "name": "B",
                "category": "greeting",
                "content": "Olá {{lead_name}}!",
                "parent_template_id": original["id"],
            },
        )
    ).json()
    assert variant_b["version"] == 2 and variant_b["parent_template_id"] == original["id"]
    # A variant of a variant joins the same family.
    r = await client.post(
        URL,
        headers=h,
        json={
            "name": "C",
            "category": "greeting",
            "content": "E aí {{lead_name}}",
            "parent_template_id": variant_b["id"],
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 3 and r.json()["parent_template_id"] == original["id"]

    r = await client.post(
        URL,
        headers=h,
        json={
            "name": "D",
            "category": "greeting",
            "content": "x",
            "parent_template_id": str(uuid.uuid4()),
        },
    )
    assert r.status_code == 422
    r = await client.delete(f"{URL}/{original['id']}", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "template_has_variants"


async def test_permissions_and_isolation(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    sales = await join_and_login(client, admin["headers"], "sales")
    listed = await client.get(URL, headers=sales)
    assert listed.status_code == 200
    r = await client.post(URL, headers=sales, json={"name": "x", "category": "c", "content": "x"})
    assert r.status_code == 403 and r.json()["permission"] == "templates:manage"
    other = await signup(client)
    theirs = (await client.get(URL, headers=other["headers"])).json()[0]["id"]
    assert (await client.get(f"{URL}/{theirs}", headers=admin["headers"])).status_code == 404
    r = await client.patch(f"{URL}/{theirs}", headers=admin["headers"], json={"name": "x"})
    assert r.status_code == 404


def test_parse_variables() -> None:
    assert parse_variables("{{a}} {{ b|x }} {{a}} {c} {{1x}}") == ["a", "b"]


def test_render_with_fallbacks() -> None:
    org = Organization(settings={"custom_fields": [{"key": "plano", "type": "text"}]})
    lead = Lead(
        full_name="João da Silva",
        company=None,
        email="joao@example.com",
        custom_fields={"plano": "Pro"},
    )
    stage = PipelineStage(name="Proposta")
    user = User(full_name="Ana Souza")
    content = (
        "Oi {{first_name}} ({{lead_name}}), da {{company|sua empresa}}. "
        "Plano {{plano|básico}}, etapa {{stage}}, falar com {{assignee_name|a equipe}}. "
        "{{job_title}}"
    )
    assert render(content, lead, org, stage=stage, assignee=user) == (
        "Oi João (João da Silva), da sua empresa. Plano Pro, etapa Proposta, falar com Ana Souza. "
    )
    lead.company = "Padaria"
    lead.custom_fields = {}
    assert render(content, lead, org) == (
        "Oi João (João da Silva), da Padaria. Plano básico, etapa , falar com a equipe. "
    )
