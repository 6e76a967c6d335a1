"""The WhatsApp AI agent in a real browser, in pt-BR and English: a customer writes, the
agent's answer shows in the inbox labelled as AI with the "AI agent answering — take over"
banner; a member takes over with one click; another customer asks for a person and the
banner says to whom the agent handed the conversation. Screenshots at 1440 and 390 px."""

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
        "answering": "IA atendendo",
        "take_over": "Assumir",
        "label": "Enviada pela IA",
        "took": "assumiu a conversa no lugar da IA",
        "handed": "A IA passou esta conversa para",
        "reason": "o cliente pediu uma pessoa",
    },
    "en": {
        "answering": "AI agent answering",
        "take_over": "Take over",
        "label": "Sent by the AI agent",
        "took": "took over from the AI agent",
        "handed": "The AI agent handed this conversation to",
        "reason": "the customer asked for a person",
    },
}


async def _inject(base: str, headers: dict[str, str], phone: str, name: str, text: str) -> None:
    async with httpx.AsyncClient(base_url=base, headers=headers) as c:
        r = await c.post(
            "/api/v1/whatsapp/sandbox/inbound",
            json={"from_number": phone, "contact_name": name, "content": text},
        )
        assert r.status_code == 202, r.text


async def _ai_reply(base: str, headers: dict[str, str], name: str) -> str:
    """The lead's id once the agent has answered (the worker runs the inbound and agent jobs)."""
    # A condition polled, with a bound only a stuck worker reaches (CI shares the cores).
    deadline = time.monotonic() + 180
    async with httpx.AsyncClient(base_url=base, headers=headers) as c:
        while time.monotonic() < deadline:
            for conv in (await c.get("/api/v1/conversations")).json():
                if conv["lead_name"] != name:
                    continue
                msgs = (await c.get(f"/api/v1/leads/{conv['lead_id']}/messages")).json()
                if any(m["direction"] == "outbound" and m["metadata"].get("ai") for m in msgs):
                    return str(conv["lead_id"])
            await asyncio.sleep(0.25)
    raise AssertionError(f"the agent never answered {name}")


@pytest.mark.parametrize("language", ["pt-BR", "en"])
async def test_ai_label_take_over_and_handoff(page: Any, live_server: str, language: str) -> None:
    w = WORDS[language]
    account = await browser_signup(page)
    headers = await live_login(live_server, account["email"])
    async with httpx.AsyncClient(base_url=live_server, headers=headers) as c:
        config_id = await activate_sandbox(c, headers)
        r = await c.patch(
            "/api/v1/ai/agent/settings",
            json={"enabled": True, "config_ids": [config_id], "mode": "unowned"},
        )
        assert r.status_code == 200, r.text
    await page.context.add_cookies(
        [{"name": "lovedcrm_lang", "value": language, "url": live_server}]
    )
    await _inject(live_server, headers, "+5511987651111", "Carlos Preço", "Oi, quanto custa?")
    carlos = await _ai_reply(live_server, headers, "Carlos Preço")

    await page.set_viewport_size(DESKTOP)
    await page.goto(f"/inbox/{carlos}")
    ai = page.locator("#thread .msg-ai").last
    await expect(ai.locator(".msg-ai-label")).to_contain_text(w["label"], timeout=LIVE)
    banner = page.locator("#agent-slot .agent-banner")
    await expect(banner).to_have_attribute("data-agent-state", "active", timeout=LIVE)
    await expect(banner).to_contain_text(w["answering"])
    await screenshot(page, f"agent-inbox-1440-{language}")

    # One click: the member takes over and the agent goes silent here.
    await banner.get_by_role("button", name=w["take_over"]).click()
    await expect(banner).to_have_attribute("data-agent-state", "taken_over", timeout=LIVE)
    await expect(banner).to_contain_text(w["took"])
    async with httpx.AsyncClient(base_url=live_server, headers=headers) as c:
        state = (await c.get(f"/api/v1/leads/{carlos}/agent")).json()
    assert state["status"] == "taken_over"
    await screenshot(page, f"agent-taken-over-1440-{language}")

    # Another customer asks for a person: handed off, shown at phone width.
    await _inject(
        live_server, headers, "+5511987652222", "Bia Humana", "Quero falar com um atendente"
    )
    bia = await _ai_reply(live_server, headers, "Bia Humana")
    await page.set_viewport_size(PHONE)
    await page.goto(f"/inbox/{bia}")
    banner = page.locator("#agent-slot .agent-banner")
    await expect(banner).to_have_attribute("data-agent-state", "handed_off", timeout=LIVE)
    await expect(banner).to_contain_text(w["handed"])
    await expect(banner).to_contain_text(w["reason"])
    await expect(page.locator("#thread .msg-ai .msg-ai-label").last).to_contain_text(w["label"])
    await screenshot(page, f"agent-handoff-390-{language}")
