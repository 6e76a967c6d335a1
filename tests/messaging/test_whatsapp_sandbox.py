"""WhatsApp through the sandbox provider: inbound messages make leads, replies go out and
their statuses advance, templates are counted, and nobody sees another organization's."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from lovedcrm.config import Settings
from lovedcrm.core.clock import ManualClock
from lovedcrm.core.phones import equivalent_numbers as phone_variants
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import set_tenant
from lovedcrm.messaging.models import TemplateUsageStat
from tests.factories import (
    activate_sandbox,
    create_lead,
    create_template,
    run_wa_jobs,
    signup,
)

INJECT = "/api/v1/whatsapp/sandbox/inbound"


@pytest.fixture
async def org(client: httpx.AsyncClient) -> dict[str, Any]:
    data = await signup(client, full_name="Bia Vendas")
    data["config_id"] = await activate_sandbox(client, data["headers"])
    return data


async def _conversations(client: httpx.AsyncClient, h: dict[str, str]) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/conversations", headers=h)
    assert r.status_code == 200, r.text
    return list(r.json())


def test_brazilian_ninth_digit_twin() -> None:
    assert phone_variants("+5511987654321") == ["+5511987654321", "+551187654321"]
    assert phone_variants("+551187654321") == ["+551187654321", "+5511987654321"]
    assert phone_variants("+14155550100") == ["+14155550100"]


async def test_inbound_creates_a_lead_then_links_the_next_message(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database, settings: Settings
) -> None:
    h = org["headers"]
    r = await client.post(
        INJECT,
        headers=h,
        json={"from_number": "(11) 98765-4321", "contact_name": "João Cliente", "content": "Oi!"},
    )
    assert r.status_code == 202, r.text
    await run_wa_jobs(database, settings)
    convs = await _conversations(client, h)
    assert len(convs) == 1
    conv = convs[0]
    assert conv["lead_name"] == "João Cliente" and conv["phone"] == "+5511987654321"
    assert conv["unread"] == 1 and conv["last_message"] == "Oi!"

    lead = (await client.get(f"/api/v1/leads/{conv['lead_id']}", headers=h)).json()
    assert lead["source"] == "whatsapp"

    # The same sender again: linked to the same lead, not a new one.
    await client.post(INJECT, headers=h, json={"from_number": "+5511987654321", "content": "?"})
    await run_wa_jobs(database, settings)
    convs = await _conversations(client, h)
    assert len(convs) == 1 and convs[0]["unread"] == 2

    msgs = (await client.get(f"/api/v1/leads/{conv['lead_id']}/messages", headers=h)).json()
    assert [m["content"] for m in msgs] == ["Oi!", "?"]
    assert all(m["direction"] == "inbound" and m["status"] == "delivered" for m in msgs)

    # The timeline shows the messages.
    acts = (await client.get(f"/api/v1/leads/{conv['lead_id']}/activities", headers=h)).json()
    items = acts["items"] if isinstance(acts, dict) else acts
    assert sum(1 for a in items if a["type"] == "message") == 2

    r = await client.post(f"/api/v1/leads/{conv['lead_id']}/messages/read", headers=h)
    assert r.json() == {"read": 2}
    assert (await _conversations(client, h))[0]["unread"] == 0


async def test_reply_goes_out_and_its_status_advances(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    database: Database,
    settings: Settings,
    manual_clock: ManualClock,
) -> None:
    h = org["headers"]
    await client.post(INJECT, headers=h, json={"from_number": "11 91234-5678", "content": "Preço?"})
    await run_wa_jobs(database, settings)
    lead_id = (await _conversations(client, h))[0]["lead_id"]

    r = await client.post(
        f"/api/v1/leads/{lead_id}/messages", headers=h, json={"content": "<b>R$ 99</b>"}
    )
    assert r.status_code == 202, r.text
    sent = r.json()
    assert sent["status"] == "pending" and sent["direction"] == "outbound"
    assert sent["provider_type"] == "whatsapp_sandbox"

    sent_at = manual_clock.now()
    await run_wa_jobs(database, settings)
    msg = (await client.get(f"/api/v1/messages/{sent['id']}", headers=h)).json()
    assert msg["status"] == "sent" and msg["provider_message_id"].startswith("sandbox.")
    assert msg["delivered_at"] is None and msg["read_at"] is None

    # The sandbox's phone receives the message a second later and reads it after three.
    manual_clock.advance(seconds=1)
    await run_wa_jobs(database, settings)
    msg = (await client.get(f"/api/v1/messages/{sent['id']}", headers=h)).json()
    assert msg["status"] == "delivered" and msg["read_at"] is None, msg
    assert datetime.fromisoformat(msg["delivered_at"]) == sent_at + timedelta(seconds=1)
    manual_clock.advance(seconds=2)
    await run_wa_jobs(database, settings)
    msg = (await client.get(f"/api/v1/messages/{sent['id']}", headers=h)).json()
    assert msg["status"] == "read", msg
    assert datetime.fromisoformat(msg["delivered_at"]) == sent_at + timedelta(seconds=1)
    assert datetime.fromisoformat(msg["read_at"]) == sent_at + timedelta(seconds=3)


async def test_send_refuses_bad_input(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database, settings: Settings
) -> None:
    h = org["headers"]
    lead = await create_lead(client, h, full_name="Sem Telefone")
    r = await client.post(f"/api/v1/leads/{lead['id']}/messages", headers=h, json={"content": "x"})
    assert r.status_code == 422 and r.json()["code"] == "lead_without_phone"
    r = await client.post(f"/api/v1/leads/{lead['id']}/messages", headers=h, json={})
    assert r.status_code == 422
    r = await client.post(INJECT, headers=h, json={"from_number": "abc", "content": "x"})
    assert r.status_code == 422 and "from_number" in r.text


async def test_no_active_provider_is_a_clear_refusal(client: httpx.AsyncClient) -> None:
    data = await signup(client)
    h = data["headers"]
    lead = await create_lead(client, h, full_name="Ana", phone="11987650000")
    r = await client.post(f"/api/v1/leads/{lead['id']}/messages", headers=h, json={"content": "x"})
    assert r.status_code == 409 and r.json()["code"] == "whatsapp_not_configured"
    assert "Settings" in r.json()["detail"]


async def test_ab_variants_are_used_evenly_and_answers_counted(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database, settings: Settings
) -> None:
    h = org["headers"]
    a = await create_template(client, h, "Oferta A", "Oi {{first_name}}!")
    b = await create_template(
        client, h, "Oferta B", "Olá {{first_name|cliente}}, tudo bem?", parent_template_id=a["id"]
    )
    leads = []
    for i in range(4):
        await client.post(
            INJECT,
            headers=h,
            json={
                "from_number": f"+55119800000{i:02d}",
                "contact_name": f"Cli{i} X",
                "content": "oi",
            },
        )
    await run_wa_jobs(database, settings)
    leads = [c["lead_id"] for c in await _conversations(client, h)]
    assert len(leads) == 4
    texts = []
    for lead_id in leads:
        r = await client.post(
            f"/api/v1/leads/{lead_id}/messages", headers=h, json={"template_id": a["id"]}
        )
        assert r.status_code == 202, r.text
        texts.append(r.json()["content"])
    # Two of each: the family is used evenly.
    assert sum(t.startswith("Oi Cli") for t in texts) == 2
    assert sum(t.startswith("Olá Cli") for t in texts) == 2
    got = {t["id"]: t for t in (await client.get("/api/v1/templates", headers=h)).json()}
    assert got[a["id"]]["usage_count"] == 2 and got[b["id"]]["usage_count"] == 2

    # One lead answers: its template's use is marked answered, with a response time.
    await run_wa_jobs(database, settings)
    phone = (await client.get(f"/api/v1/leads/{leads[0]}", headers=h)).json()["phone"]
    await client.post(INJECT, headers=h, json={"from_number": phone, "content": "quero!"})
    await run_wa_jobs(database, settings)
    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, uuid.UUID(org["organization_id"]))
        stats = (await s.execute(select(TemplateUsageStat))).scalars().all()
    answered = [x for x in stats if x.response_received]
    assert len(stats) == 4 and len(answered) == 1
    assert answered[0].response_time_minutes == 0
    got = {t["id"]: t for t in (await client.get("/api/v1/templates", headers=h)).json()}
    rates = sorted([got[a["id"]]["success_rate"], got[b["id"]]["success_rate"]])
    assert rates == [0.0, 0.5]

    # The lead that answered is won: its template use is marked as leading to a conversion.
    r = await client.patch(f"/api/v1/leads/{leads[0]}", headers=h, json={"status": "converted"})
    assert r.status_code == 200, r.text
    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, uuid.UUID(org["organization_id"]))
        stats = (await s.execute(select(TemplateUsageStat))).scalars().all()
    assert [x.lead_id for x in stats if x.led_to_conversion] == [uuid.UUID(leads[0])]


async def test_rate_limits_defer_sends_without_losing_them(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    database: Database,
    settings: Settings,
    manual_clock: ManualClock,
) -> None:
    h = org["headers"]
    r = await client.patch(
        f"/api/v1/whatsapp/configs/{org['config_id']}",
        headers=h,
        json={"rate_limits": {"messages_per_minute": 2}},
    )
    assert r.status_code == 200 and r.json()["rate_limits"] == {"messages_per_minute": 2}
    await client.post(INJECT, headers=h, json={"from_number": "11 95555-0001", "content": "oi"})
    await run_wa_jobs(database, settings)
    lead_id = (await _conversations(client, h))[0]["lead_id"]
    # All four sends and their jobs in one minute window. The window is the database's own
    # minute (core.ratelimit counts by now()), which no test clock moves: so wait for a fresh
    # minute when this one is nearly over. (A product change would remove this wait: the
    # send job passing the injectable clock's time to ratelimit.hit.)
    await asyncio.sleep(max(0.0, time.time() % 60 - 50) and 60 - time.time() % 60 + 0.1)
    ids = []
    for i in range(4):
        r = await client.post(
            f"/api/v1/leads/{lead_id}/messages", headers=h, json={"content": f"msg {i}"}
        )
        ids.append(r.json()["id"])
    await run_wa_jobs(database, settings)
    statuses = [
        (await client.get(f"/api/v1/messages/{i}", headers=h)).json()["status"] for i in ids
    ]
    # Two within this minute's budget; the others wait for the next window, still queued.
    assert sorted(statuses) == ["pending", "pending", "sent", "sent"], statuses
    # In a later minute they leave: a new window (its counters cleared here), and the clock
    # moved on to their deferred time.
    engine = create_engine(database.owner_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("DELETE FROM rate_limit_counters WHERE bucket LIKE :b"),
                {"b": f"wa-send:{org['config_id']}:%"},
            )
    finally:
        engine.dispose()
    await run_wa_jobs(database, settings, due_now=True)
    statuses = [
        (await client.get(f"/api/v1/messages/{i}", headers=h)).json()["status"] for i in ids
    ]
    assert all(s in ("sent", "delivered", "read") for s in statuses), statuses
