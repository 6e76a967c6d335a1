"""The sandbox telephony through the pages: Settings → Telephony, the lead page's "Call"
button, the call played out on the timer (ringing, in progress, completed), its cost and
recording on the timeline, notes afterwards."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from tests.calls.conftest import AGENT_PHONE, LEAD_PHONE
from tests.factories import create_lead, csrf_token, session_headers, web_signup

from lovedcrm.core.clock import ManualClock

pytestmark = pytest.mark.usefixtures("manual_clock")


async def _status(client: httpx.AsyncClient, lead_id: str) -> str:
    panel = await client.get(f"/leads/{lead_id}/calls-panel")
    assert panel.status_code == 200
    found = re.search(r'data-call-status="([a-z_]+)"', panel.text)
    return found.group(1) if found else ""


@pytest.mark.parametrize("lang", ["pt-BR", "en"])
async def test_sandbox_call_from_the_lead_page(
    client: httpx.AsyncClient, calls_jobs: Any, manual_clock: ManualClock, lang: str
) -> None:
    client.headers["Accept-Language"] = lang
    await web_signup(client)
    csrf = await csrf_token(client, "/settings/telephony")
    r = await client.post(
        "/preferences/language", data={"csrf_token": csrf, "language": lang, "next": "/"}
    )
    assert r.status_code == 303
    page = await client.get("/settings/telephony")
    assert page.status_code == 200
    assert ("Telefonia" if lang == "pt-BR" else "Telephony") in page.text
    r = await client.post(
        "/settings/telephony",
        data={
            "csrf_token": csrf,
            "provider_type": "sandbox",
            "cost_per_minute": "0,10" if lang == "pt-BR" else "0.10",
            "currency": "BRL",
            "record": "1",
        },
    )
    assert r.status_code == 303, r.text
    page = await client.get("/settings/telephony")
    assert "Sandbox" in page.text and "BRL 0.1000" in page.text
    r = await client.post(
        "/settings/profile",
        data={"csrf_token": csrf, "full_name": "Carla Dias", "phone": AGENT_PHONE},
    )
    assert r.status_code in (200, 303), r.text
    lead = await create_lead(client, full_name="Maria Teste", phone=LEAD_PHONE)

    panel = await client.get(f"/leads/{lead['id']}/calls-panel")
    assert "data-call-button" in panel.text
    r = await client.post(f"/leads/{lead['id']}/call", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == f"/leads/{lead['id']}#calls-panel"
    assert await _status(client, lead["id"]) == "queued"
    panel = await client.get(f"/leads/{lead['id']}/calls-panel")
    assert 'hx-trigger="every 2s"' in panel.text  # polls while not finished

    seen = []
    for _ in range(3):
        manual_clock.advance(seconds=3)
        await calls_jobs()
        seen.append(await _status(client, lead["id"]))
    assert seen[-1] == "completed"
    panel = await client.get(f"/leads/{lead['id']}/calls-panel")
    assert 'hx-trigger="every 2s"' not in panel.text
    assert "call-cost" in panel.text and "<audio" in panel.text

    h = await session_headers(client)
    calls = (await client.get(f"/api/v1/calls?lead_id={lead['id']}", headers=h)).json()["items"]
    (call,) = calls
    minutes = -(-call["duration_seconds"] // 60)
    assert call["cost_amount"] == f"{minutes * 0.1:.5f}" and call["cost_currency"] == "BRL"
    timeline = await client.get(f"/leads/{lead['id']}/timeline")
    assert f'src="/calls/{call["id"]}/recording"' in timeline.text
    assert "data-call-cost" in timeline.text
    audio = await client.get(f"/calls/{call['id']}/recording")
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"

    r = await client.post(
        f"/calls/{call['id']}/notes",
        data={"csrf_token": csrf, "outcome": "interested", "notes": "Quer proposta"},
    )
    assert r.status_code == 303
    got = (await client.get(f"/api/v1/calls/{call['id']}", headers=h)).json()
    assert got["notes"] == "Quer proposta" and got["outcome"] == "interested"


async def test_call_button_without_setup_explains_what_is_missing(
    client: httpx.AsyncClient,
) -> None:
    client.headers["Accept-Language"] = "pt-BR"
    await web_signup(client)
    csrf = await csrf_token(client)
    lead = await create_lead(client, full_name="Maria Teste", phone=LEAD_PHONE)
    r = await client.post(f"/leads/{lead['id']}/call", data={"csrf_token": csrf})
    assert r.status_code == 303
    page = await client.get(f"/leads/{lead['id']}")
    assert "Telefonia" in page.text  # the flash names where to set it up


async def test_board_card_offers_a_call_only_for_a_lead_with_a_phone(
    client: httpx.AsyncClient,
) -> None:
    await web_signup(client)
    with_phone = await create_lead(client, full_name="Com Telefone", phone=LEAD_PHONE)
    without = await create_lead(client, full_name="Sem Telefone", email="sem@example.com")
    board = await client.get("/pipeline")
    assert board.status_code == 200
    cards = {
        lead_id: board.text[board.text.index(f'id="card-{lead_id}"') :].split("</li>", 1)[0]
        for lead_id in (with_phone["id"], without["id"])
    }
    assert f'href="/leads/{with_phone["id"]}#calls-panel"' in cards[with_phone["id"]]
    assert "card-call" not in cards[without["id"]]
