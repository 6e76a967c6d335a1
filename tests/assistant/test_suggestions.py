"""Suggested replies through the API on the real database: ranked from the organization's
templates (filled with the lead's variables) and its past replies that got an answer, an
unanswered reply left out, feedback feeding the template's usage_count and success_rate
(answered when the lead writes back through the real inbound flow), an empty organization's
clear empty state, who may ask, and tenant isolation."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from tests.factories import (
    activate_sandbox,
    create_lead,
    create_template,
    join_and_login,
    owner_sql,
    run_wa_jobs,
    signup,
)


async def org_id(client: httpx.AsyncClient, h: dict[str, str]) -> str:
    r = await client.get("/api/v1/organizations/current", headers=h)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def message(
    owner: sa.Engine, org: str, lead: str, direction: str, content: str, minutes_ago: int
) -> str:
    """A stored WhatsApp message ``minutes_ago`` (as the database's owner)."""
    [row] = owner_sql(
        owner,
        "INSERT INTO messages (organization_id, lead_id, provider_type, direction, message_type,"
        " content, status, created_at) VALUES (:o, :l, 'whatsapp_sandbox', :d, 'text', :c,"
        " 'delivered', now() - make_interval(mins => :m)) RETURNING id",
        o=org,
        l=lead,
        d=direction,
        c=content,
        m=minutes_ago,
    )
    return str(row[0])


async def suggestions(
    client: httpx.AsyncClient, h: dict[str, str], lead_id: str, status: int = 200
) -> dict[str, Any]:
    r = await client.get(f"/api/v1/leads/{lead_id}/suggested-replies", headers=h)
    assert r.status_code == status, r.text
    return dict(r.json())


async def test_ranked_from_templates_and_past_replies_with_the_leads_variables(
    client: httpx.AsyncClient, owner: sa.Engine
) -> None:
    admin = await signup(client)
    h = admin["headers"]
    org = await org_id(client, h)
    await create_template(
        client,
        h,
        "Entrega",
        "{{first_name}}, entregamos em todo o Brasil: Campinas em até 2 dias.",
        category="delivery",
    )
    await create_template(
        client, h, "Preço", "Oi {{first_name}}! O plano custa R$ 99 por mês.", category="pricing"
    )
    marcos = await create_lead(client, h, full_name="Marcos Lima")
    message(owner, org, marcos["id"], "inbound", "vcs fazem entrega em campinas?", 300)
    message(
        owner,
        org,
        marcos["id"],
        "outbound",
        "Fazemos sim, Marcos! A entrega em Campinas leva 2 dias.",
        290,
    )
    message(owner, org, marcos["id"], "inbound", "Ótimo, obrigado", 280)
    rita = await create_lead(client, h, full_name="Rita Alves")
    message(owner, org, rita["id"], "inbound", "Entregam em Campinas?", 200)
    message(owner, org, rita["id"], "outbound", "Não sei informar a entrega.", 190)  # no answer
    juliana = await create_lead(client, h, full_name="Juliana Castro", company="Padaria Sol")
    message(
        owner,
        org,
        juliana["id"],
        "inbound",
        "Olá! Vocês entregam em Campinas? Qual o prazo de entrega?",
        5,
    )

    found = await suggestions(client, h, juliana["id"])
    assert found["last_inbound"]["content"].startswith("Olá! Vocês entregam")
    listed = found["suggestions"]
    assert len(listed) == 3
    texts = [s["text"] for s in listed]
    assert "Juliana, entregamos em todo o Brasil: Campinas em até 2 dias." in texts
    assert "Fazemos sim, Juliana! A entrega em Campinas leva 2 dias." in texts
    assert not any("Não sei informar" in t for t in texts)
    assert [s["score"] for s in listed] == sorted((s["score"] for s in listed), reverse=True)
    top_two = {s["source"] for s in listed[:2]}
    assert top_two == {"template", "past_reply"}
    by_text = {s["text"]: s for s in listed}
    reply = by_text["Fazemos sim, Juliana! A entrega em Campinas leva 2 dias."]
    assert reply["id"].startswith("reply:") and reply["message_id"] and not reply["ai"]
    tpl = by_text["Juliana, entregamos em todo o Brasil: Campinas em até 2 dias."]
    assert tpl["id"] == f"template:{tpl['template_id']}" and tpl["template_name"] == "Entrega"
    assert found["ai_configured"] is False and found["empty"] is False

    # A price question ranks the price template first.
    message(owner, org, juliana["id"], "inbound", "e quanto custa o plano?", 1)
    found = await suggestions(client, h, juliana["id"])
    assert found["suggestions"][0]["text"] == "Oi Juliana! O plano custa R$ 99 por mês."


async def test_feedback_feeds_the_templates_usage_and_success_rate(
    client: httpx.AsyncClient, database: Database, settings: Settings, owner: sa.Engine
) -> None:
    admin = await signup(client)
    h = admin["headers"]
    await activate_sandbox(client, h)
    tpl = await create_template(client, h, "Retomada", "Oi {{first_name}}, podemos conversar hoje?")
    lead = await create_lead(client, h, full_name="Paulo Reis", phone="+5511988887777")
    url = f"/api/v1/leads/{lead['id']}/suggested-replies/feedback"

    r = await client.post(
        url, headers=h, json={"suggestion_id": f"template:{tpl['id']}", "action": "ignored"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["template_usage_count"] == 0  # ignoring is not a use
    r = await client.post(
        url, headers=h, json={"suggestion_id": f"template:{tpl['id']}", "action": "picked"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["template_usage_count"] == 1 and r.json()["template_success_rate"] == 0
    r = await client.post(
        url,
        headers=h,
        json={
            "suggestion_id": f"template:{tpl['id']}",
            "action": "edited",
            "text": "Oi Paulo, tudo bem? Podemos falar amanhã?",
        },
    )
    assert r.status_code == 200 and r.json()["template_usage_count"] == 2

    # The lead writes back: the uses are answered (messaging's inbound flow).
    r = await client.post(
        "/api/v1/whatsapp/sandbox/inbound",
        headers=h,
        json={
            "from_number": "+5511988887777",
            "contact_name": "Paulo Reis",
            "content": "Podemos sim!",
        },
    )
    assert r.status_code == 202, r.text
    await run_wa_jobs(database, settings)
    r = await client.get(f"/api/v1/templates/{tpl['id']}", headers=h)
    assert r.json()["usage_count"] == 2 and r.json()["success_rate"] == 1.0
    stats = owner_sql(
        owner,
        "SELECT context_type, response_received FROM template_usage_stats WHERE template_id = :t",
        t=tpl["id"],
    )
    assert sorted(stats) == [("ai_suggested", True), ("ai_suggested", True)]
    rows = owner_sql(
        owner,
        "SELECT category, expected_output, is_approved FROM ai_training_data"
        " WHERE data_type = 'reply_suggestion' AND organization_id ="
        " (SELECT organization_id FROM leads WHERE id = :l) ORDER BY created_at",
        l=lead["id"],
    )
    assert [(r.category, r.is_approved) for r in rows] == [
        ("template:ignored", False),
        ("template:picked", True),
        ("template:edited", True),
    ]
    assert rows[2].expected_output == "Oi Paulo, tudo bem? Podemos falar amanhã?"

    # An AI draft needs its text; a made-up id is refused.
    r = await client.post(url, headers=h, json={"suggestion_id": "ai:abc", "action": "picked"})
    assert r.status_code == 422 and r.json()["code"] == "text_required"
    r = await client.post(
        url, headers=h, json={"suggestion_id": "ai:abc", "action": "picked", "text": "Olá!"}
    )
    assert r.status_code == 200 and r.json()["source"] == "ai"
    r = await client.post(
        url, headers=h, json={"suggestion_id": f"template:{uuid.uuid4()}", "action": "picked"}
    )
    assert r.status_code == 404 and r.json()["code"] == "suggestion_not_found"
    r = await client.post(url, headers=h, json={"suggestion_id": "whatever", "action": "picked"})
    assert r.status_code == 422 and r.json()["code"] == "validation_error"  # the schema's pattern
    r = await client.post(
        url, headers=h, json={"suggestion_id": f"template:{tpl['id']}", "action": "loved"}
    )
    assert r.status_code == 422


async def test_an_empty_organization_gets_a_clear_empty_state(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    h = admin["headers"]
    for tpl in (await client.get("/api/v1/templates", headers=h)).json():
        r = await client.delete(f"/api/v1/templates/{tpl['id']}", headers=h)
        assert r.status_code == 204, r.text
    lead = await create_lead(client, h)
    found = await suggestions(client, h, lead["id"])
    assert found["empty"] is True and found["suggestions"] == []
    assert found["last_inbound"] is None


async def test_who_may_ask_and_tenant_isolation(
    client: httpx.AsyncClient, owner: sa.Engine
) -> None:
    admin = await signup(client)
    h = admin["headers"]
    lead = await create_lead(client, h, full_name="Carla Nunes")
    other_org = await signup(client)
    foreign = await create_lead(client, other_org["headers"], full_name="Outra Pessoa")
    await create_template(client, other_org["headers"], "Segredo", "Texto só da outra empresa")

    await suggestions(client, h, foreign["id"], 404)
    await suggestions(client, other_org["headers"], lead["id"], 404)
    await suggestions(client, h, str(uuid.uuid4()), 404)
    found = await suggestions(client, h, lead["id"])
    assert not any("outra empresa" in s["text"] for s in found["suggestions"])
    r = await client.post(
        f"/api/v1/leads/{foreign['id']}/suggested-replies/feedback",
        headers=h,
        json={"suggestion_id": "ai:x", "action": "picked", "text": "oi"},
    )
    assert r.status_code == 404

    viewer = await join_and_login(client, h, "viewer")
    r = await client.get(f"/api/v1/leads/{lead['id']}/suggested-replies", headers=viewer)
    assert r.status_code == 403
    sales = await join_and_login(client, h, "sales")
    await suggestions(client, sales, lead["id"], 404)  # not their lead to answer
    r = await client.get(f"/api/v1/leads/{lead['id']}/suggested-replies")
    assert r.status_code == 401


@pytest.mark.parametrize("lang", ["pt-BR", "en"])
async def test_the_inbox_fragment_shows_the_suggestions(
    client: httpx.AsyncClient, owner: sa.Engine, lang: str
) -> None:
    from tests.factories import web_login

    admin = await signup(client)
    h = admin["headers"]
    await client.patch(
        "/api/v1/organizations/current", headers=h, json={"settings": {"locale": lang}}
    )
    lead = await create_lead(client, h, full_name="Igor Matos")
    await web_login(client, admin["email"])
    r = await client.get(f"/inbox/{lead['id']}/suggestions")
    assert r.status_code == 200, r.text
    assert 'data-suggestion="template:' in r.text
    assert ("Respostas sugeridas" if lang == "pt-BR" else "Suggested replies") in r.text
    # A new conversation: the default greeting template first, filled.
    first = r.text.index('data-suggestion="')
    assert r.text.index("Olá Igor Matos! Obrigado") > first
    assert r.text.count('data-suggestion="') == 3
    r = await client.get(f"/inbox/{uuid.uuid4()}/suggestions")
    assert r.status_code == 204
