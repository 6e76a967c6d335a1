"""Message sentiment in a real browser, in pt-BR and English: a customer's angry, urgent
message shows its badges in the inbox and on the lead's timeline, the "urgent" and
"negative" filters keep it and drop a happy conversation, and a member corrects a label in
place (HTMX). Screenshots at 1440 and 390 px."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.e2e.conftest import DESKTOP, PHONE, screenshot
from tests.factories import activate_sandbox, browser_signup, live_login

LIVE = 20_000

WORDS = {
    "pt-BR": {
        "negative": "Negativa",
        "urgent": "Urgente",
        "human": "Quer falar com uma pessoa",
        "buying": "Intenção de compra",
        "f_urgent": "Urgentes",
        "f_negative": "Negativas",
        "positive": "Positiva",
    },
    "en": {
        "negative": "Negative",
        "urgent": "Urgent",
        "human": "Wants a person",
        "buying": "Buying intent",
        "f_urgent": "Urgent chats",
        "f_negative": "Negative chats",
        "positive": "Positive",
    },
}


async def _inject(base: str, headers: dict[str, str], phone: str, name: str, text: str) -> None:
    async with httpx.AsyncClient(base_url=base, headers=headers) as c:
        r = await c.post(
            "/api/v1/whatsapp/sandbox/inbound",
            json={"from_number": phone, "contact_name": name, "content": text},
        )
        assert r.status_code == 202, r.text


async def _lead_id(base: str, headers: dict[str, str], name: str) -> str:
    # A condition polled, with a bound only a stuck worker reaches (CI shares the cores).
    deadline = time.monotonic() + 180
    async with httpx.AsyncClient(base_url=base, headers=headers) as c:
        while time.monotonic() < deadline:
            for conv in (await c.get("/api/v1/conversations")).json():
                if conv["lead_name"] == name:
                    return str(conv["lead_id"])
            await asyncio.sleep(0.25)
    raise AssertionError(f"no conversation with {name}")


@pytest.mark.parametrize("language", ["pt-BR", "en"])
async def test_badges_filters_and_a_correction(page: Any, live_server: str, language: str) -> None:
    w = WORDS[language]
    account = await browser_signup(page)
    headers = await live_login(live_server, account["email"])
    async with httpx.AsyncClient(base_url=live_server) as c:
        await activate_sandbox(c, headers)
    await page.context.add_cookies(
        [{"name": "lovedcrm_lang", "value": language, "url": live_server}]
    )
    await _inject(
        live_server,
        headers,
        "+5511987654321",
        "Carlos Bravo",
        "Péssimo!!! O pedido não chegou, preciso URGENTE pra hoje. Quero falar com um atendente",
    )
    await _inject(live_server, headers, "+5511911112222", "Ana Feliz", "Adorei, muito obrigada!")
    await _inject(
        live_server, headers, "+5511933334444", "Rui Compra", "Quanto custa o plano anual?"
    )
    angry = await _lead_id(live_server, headers, "Carlos Bravo")
    await _lead_id(live_server, headers, "Ana Feliz")
    await _lead_id(live_server, headers, "Rui Compra")

    await page.set_viewport_size(DESKTOP)
    await page.goto(f"/inbox/{angry}")
    bubble = page.locator("#thread .msg-inbound").last
    badges = bubble.locator(".msg-sentiment")
    await expect(badges.locator(".sent-negative")).to_have_text(w["negative"])
    await expect(badges.locator(".sent-urgent")).to_have_text(w["urgent"])
    await expect(badges.locator(".sent-human")).to_have_text(w["human"])
    await screenshot(page, f"sentiment-inbox-1440-{language}")

    # The filters: the angry, urgent conversation stays; the happy one goes.
    await page.locator(".inbox-filter", has_text=w["f_urgent"]).click()
    await page.wait_for_url("**filter=urgent*")
    convs = page.locator("#conversation-list li.conv")
    await expect(convs).to_have_count(1)
    await expect(convs.first).to_contain_text("Carlos Bravo")
    await page.locator(".inbox-filter", has_text=w["f_negative"]).click()
    await page.wait_for_url("**filter=negative*")
    await expect(convs).to_have_count(1)
    await expect(convs.first).to_contain_text("Carlos Bravo")
    await screenshot(page, f"sentiment-filter-negative-1440-{language}")

    # A correction in place: the member says it is positive; the badge goes, the mark stays.
    await page.goto(f"/inbox/{angry}")
    fix = page.locator("#thread .msg-inbound").last.locator(".sent-fix")
    await fix.locator("summary").click()
    await fix.locator("button[value=positive]").click()
    fixed = page.locator("#thread .msg-inbound").last.locator(".msg-sentiment")
    await expect(fixed).to_have_attribute("data-label", "positive", timeout=LIVE)
    await expect(fixed.locator(".sent-negative")).to_have_count(0)
    await expect(fixed.locator(".sent-fix summary")).to_contain_text(w["positive"])

    # The buying intent badge, and the lead's timeline, at phone width.
    await page.set_viewport_size(PHONE)
    rui = await _lead_id(live_server, headers, "Rui Compra")
    await page.goto(f"/inbox/{rui}")
    await expect(page.locator("#thread .msg-inbound").last.locator(".sent-buying")).to_have_text(
        w["buying"]
    )
    await screenshot(page, f"sentiment-inbox-390-{language}")
    await page.goto(f"/leads/{angry}")
    await expect(page.locator(".tl-sentiment .sent-urgent").first).to_have_text(w["urgent"])
    await screenshot(page, f"sentiment-timeline-390-{language}")
