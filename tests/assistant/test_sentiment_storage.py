"""Sentiment on inbound WhatsApp messages (through the sandbox's inbound path), members'
corrections as training rows, the per-organization model taking over only when better, the
inbox filters, and that nobody reads or corrects another organization's messages."""

from __future__ import annotations

import random
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.assistant import service, train
from lovedcrm.assistant.models import AiSentimentModel, AiTrainingData
from lovedcrm.auth.permissions import ROLE_PERMISSIONS, Role
from lovedcrm.config import Settings
from lovedcrm.core.principal import Person, Principal
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import set_tenant
from lovedcrm.jobs.engine import run_until_idle
from lovedcrm.messaging import inbox
from tests.factories import (
    activate_sandbox,
    csrf_token,
    join_and_login,
    owner_sql,
    run_wa_jobs,
    session_headers,
    signup,
    web_signup,
)

INJECT = "/api/v1/whatsapp/sandbox/inbound"


async def _admin_id(session: AsyncSession, org_id: uuid.UUID) -> uuid.UUID:
    found = await session.execute(
        text("SELECT user_id FROM organization_members WHERE organization_id = :org LIMIT 1"),
        {"org": org_id},
    )
    return uuid.UUID(str(found.scalar_one()))


@pytest.fixture
async def org(client: httpx.AsyncClient) -> dict[str, Any]:
    data = await signup(client, full_name="Bia Vendas")
    data["config_id"] = await activate_sandbox(client, data["headers"])
    return data


async def _inbound(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    h: dict[str, str],
    content: str,
    phone: str = "+5511987654321",
) -> dict[str, Any]:
    r = await client.post(INJECT, headers=h, json={"from_number": phone, "content": content})
    assert r.status_code == 202, r.text
    await run_wa_jobs(database, settings)
    convs = (await client.get("/api/v1/conversations", headers=h)).json()
    lead_id = next(c["lead_id"] for c in convs if c["phone"] == phone)
    msgs = (await client.get(f"/api/v1/leads/{lead_id}/messages", headers=h)).json()
    return {"lead_id": lead_id, **msgs[-1]}


async def test_inbound_message_gets_sentiment_urgency_and_signals(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database, settings: Settings
) -> None:
    h = org["headers"]
    msg = await _inbound(
        client, database, settings, h, "Péssimo! Veio quebrado, preciso trocar URGENTE"
    )
    r = await client.get(f"/api/v1/messages/{msg['id']}/sentiment", headers=h)
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["label"] == "negative" and s["score"] < -0.3
    assert s["urgency"] >= 50 and {"urgent", "complaint"} <= set(s["signals"])
    assert s["source"] == "lexicon" and s["corrected"] is False

    msg = await _inbound(
        client, database, settings, h, "quanto custa? quero fechar", "+5511911112222"
    )
    s = (await client.get(f"/api/v1/messages/{msg['id']}/sentiment", headers=h)).json()
    assert "buying_intent" in s["signals"] and s["urgency"] < 50

    # The timeline entry of the message carries the badges too.
    acts = (await client.get(f"/api/v1/leads/{msg['lead_id']}/activities", headers=h)).json()
    items = acts["items"] if isinstance(acts, dict) else acts
    entry = next(a for a in items if a["type"] == "message")
    assert "buying_intent" in entry["metadata"]["sentiment"]["signals"]


async def test_inbox_filters_urgent_and_negative(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database, settings: Settings
) -> None:
    h = org["headers"]
    await _inbound(client, database, settings, h, "Adorei, obrigado!", "+5511900000001")
    await _inbound(client, database, settings, h, "não chegou ainda, péssimo", "+5511900000002")
    await _inbound(client, database, settings, h, "preciso pra hoje, urgente", "+5511900000003")
    org_id = uuid.UUID(org["organization_id"])
    async with database.sessionmaker() as session, session.begin():
        await set_tenant(session, org_id)
        user_id = await _admin_id(session, org_id)
        me = Principal(
            user=Person(id=user_id, email=org["email"], full_name="Bia Vendas"),
            organization_id=org_id,
            role="admin",
            permissions=ROLE_PERMISSIONS[Role.ADMIN],
            via="web",
        )
        phones = {}
        for which in ("urgent", "negative", "all"):
            rows = await inbox.conversations(session, me, which=which)  # type: ignore[arg-type]
            phones[which] = sorted(str(r["phone"]) for r in rows)
    assert phones["negative"] == ["+5511900000002"]
    assert phones["urgent"] == ["+5511900000003"]
    assert len(phones["all"]) == 3


async def test_correction_is_a_training_row_and_shows_on_the_message(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database, settings: Settings
) -> None:
    h = org["headers"]
    msg = await _inbound(client, database, settings, h, "Tá bom então")
    r = await client.post(
        f"/api/v1/messages/{msg['id']}/sentiment", headers=h, json={"label": "negative"}
    )
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["label"] == "negative" and s["corrected"] is True and s["score"] <= -0.05
    async with database.sessionmaker() as session, session.begin():
        await set_tenant(session, uuid.UUID(org["organization_id"]))
        rows = (await session.execute(select(AiTrainingData))).scalars().all()
    assert [(t.data_type, t.input_text, t.expected_output) for t in rows] == [
        ("sentiment_label", "Tá bom então", "negative")
    ]
    r = await client.post(
        f"/api/v1/messages/{msg['id']}/sentiment", headers=h, json={"label": "angry"}
    )
    assert r.status_code == 422
    status = (await client.get("/api/v1/assistant/sentiment/model", headers=h)).json()
    assert status["corrections"] == 1 and status["in_use"] == "lexicon" and status["model"] is None


async def test_roles_and_other_organizations(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database, settings: Settings
) -> None:
    h = org["headers"]
    msg = await _inbound(client, database, settings, h, "não gostei")
    url = f"/api/v1/messages/{msg['id']}/sentiment"

    viewer = await join_and_login(client, h, "viewer")
    assert (await client.get(url, headers=viewer)).status_code == 200
    r = await client.post(url, headers=viewer, json={"label": "positive"})
    assert r.status_code == 403, r.text

    other = await signup(client, full_name="Outra Empresa")
    for r in (
        await client.get(url, headers=other["headers"]),
        await client.post(url, headers=other["headers"], json={"label": "positive"}),
    ):
        assert r.status_code == 404, r.text
    assert (await client.get(url, headers=h)).json()["corrected"] is False


POSITIVE = ["fechado, vou querer", "manda o boleto", "pode mandar", "vou levar dois"]
NEGATIVE = ["vou pensar", "tá caro pra mim", "deixa pra próxima", "agora não dá"]


def test_per_org_model_takes_over_only_when_better() -> None:
    rng = random.Random(3)
    # Jargon the lexicon reads as neutral: the organization's own corrections teach it.
    texts, labels = [], []
    for i in range(80):
        label = "positive" if i % 2 else "negative"
        texts.append(f"{rng.choice(POSITIVE if label == 'positive' else NEGATIVE)} {i}")
        labels.append(label)
    judged = train.train_and_judge(texts, labels)
    assert judged.active and judged.heldout_accuracy > judged.default_heldout_accuracy
    model = train.OrgModel.loads(judged.model.dumps())
    assert model.analyse("manda o boleto amanhã").label == "positive"
    assert model.analyse("vou pensar melhor").source == "org_model"

    # Corrections that agree with the lexicon: the model is no better, the default stays.
    plain = ["adorei, obrigado", "ótimo atendimento", "péssimo, não gostei", "horrível demais"]
    texts = [f"{plain[i % 4]}" for i in range(60)]
    labels = ["positive" if i % 4 < 2 else "negative" for i in range(60)]
    judged = train.train_and_judge(texts, labels)
    assert not judged.active


async def test_training_job_activates_the_model_for_new_messages(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database, settings: Settings
) -> None:
    h = org["headers"]
    org_id = uuid.UUID(org["organization_id"])
    async with database.sessionmaker() as session, session.begin():
        await set_tenant(session, org_id)
        user_id = await _admin_id(session, org_id)
        for i in range(train.MIN_ROWS + 10):
            label = "positive" if i % 2 else "negative"
            pool = POSITIVE if label == "positive" else NEGATIVE
            session.add(
                AiTrainingData(
                    organization_id=org_id,
                    created_by=user_id,
                    data_type=service.DATA_TYPE,
                    category=label,
                    input_text=f"{pool[i % 4]} {i}",
                    expected_output=label,
                )
            )
    # A correction through the API queues the training (enough corrections now).
    msg = await _inbound(client, database, settings, h, "manda o boleto")
    r = await client.post(
        f"/api/v1/messages/{msg['id']}/sentiment", headers=h, json={"label": "positive"}
    )
    assert r.status_code == 200
    await run_until_idle(database, settings, types=[service.TRAIN], timeout=60)
    status = (await client.get("/api/v1/assistant/sentiment/model", headers=h)).json()
    assert status["model"]["active"] is True and status["in_use"] == "org_model"
    assert status["model"]["heldout_accuracy"] > status["model"]["default_heldout_accuracy"]
    msg = await _inbound(client, database, settings, h, "vou pensar", "+5511922223333")
    s = (await client.get(f"/api/v1/messages/{msg['id']}/sentiment", headers=h)).json()
    assert s["source"] == "org_model" and s["label"] == "negative"
    async with database.sessionmaker() as session, session.begin():
        await set_tenant(session, org_id)
        assert len((await session.execute(select(AiSentimentModel))).scalars().all()) == 1


async def test_inbox_page_correction_swaps_the_badges(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    await web_signup(client)
    h = await session_headers(client)
    await activate_sandbox(client, h)
    msg = await _inbound(client, database, settings, h, "Péssimo, preciso urgente!!!")
    page = await client.get(f"/inbox/{msg['lead_id']}")
    assert page.status_code == 200
    assert 'class="sent-badge sent-negative"' in page.text and "Urgente" in page.text
    token = await csrf_token(client, f"/inbox/{msg['lead_id']}")
    r = await client.post(
        f"/inbox/messages/{msg['id']}/sentiment",
        data={"label": "positive", "csrf_token": token},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 200, r.text
    assert 'data-label="positive"' in r.text and "sent-negative" not in r.text
    assert "sent-urgent" in r.text
    r = await client.post(
        f"/inbox/messages/{msg['id']}/sentiment", data={"label": "neutral", "csrf_token": token}
    )
    assert r.status_code == 303 and r.headers["location"].startswith(f"/inbox/{msg['lead_id']}")
    filtered = await client.get("/inbox?filter=urgent")
    assert msg["lead_id"] in filtered.text
    assert msg["lead_id"] not in (await client.get("/inbox?filter=negative")).text


async def test_a_negative_message_from_a_hot_lead_is_flagged_for_its_owner(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    database: Database,
    settings: Settings,
    owner: Any,
) -> None:
    """A negative message from a lead scored at 70 or more puts an alert on its timeline
    naming the owner; the same message from a cold lead does not."""
    h = org["headers"]
    hot = await _inbound(client, database, settings, h, "oi", "+5511933334444")
    cold = await _inbound(client, database, settings, h, "oi", "+5511955556666")
    owner_sql(
        owner,
        "UPDATE leads SET lead_score = 85, assigned_to = :u WHERE id = :l",
        l=hot["lead_id"],
        u=org["user"]["id"],
    )
    owner_sql(owner, "UPDATE leads SET lead_score = 20 WHERE id = :l", l=cold["lead_id"])
    for phone in ("+5511933334444", "+5511955556666"):
        await _inbound(client, database, settings, h, "Péssimo atendimento, estou furioso", phone)

    async def fetch(lead_id: str) -> list[dict[str, Any]]:
        acts = (await client.get(f"/api/v1/leads/{lead_id}/activities", headers=h)).json()
        return list(acts["items"] if isinstance(acts, dict) else acts)

    hot_items, cold_items = await fetch(hot["lead_id"]), await fetch(cold["lead_id"])
    [alert] = [a for a in hot_items if a["type"] == service.ALERT_ACTIVITY]
    assert alert["metadata"]["lead_score"] == 85
    assert alert["metadata"]["owner_id"] == org["user"]["id"]
    assert [a for a in cold_items if a["type"] == service.ALERT_ACTIVITY] == []
