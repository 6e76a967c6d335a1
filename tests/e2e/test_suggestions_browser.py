"""Suggested replies in the inbox, in a real browser against `lovedcrm serve`: a customer's
question brings three suggestions under the composer (pt-BR, then English), a click puts one
into the composer, sending it records the pick (the template's usage_count), and screenshots
at 1440 and 390 px."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from playwright.async_api import expect

from tests.e2e.conftest import DESKTOP, PHONE, screenshot
from tests.factories import activate_sandbox, browser_signup, create_template, live_login

LIVE = 20_000  # ms


async def _setup(base: str, headers: dict[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, headers=headers) as c:
        await activate_sandbox(c, headers)
        tpl = await create_template(
            c,
            headers,
            "Entrega",
            "Oi {{first_name}}! Entregamos em Campinas em até 2 dias úteis.",
            category="delivery",
        )
        r = await c.post(
            "/api/v1/whatsapp/sandbox/inbound",
            json={
                "from_number": "(11) 97777-1234",
                "contact_name": "Helena Prado",
                "content": "Boa tarde! Vocês entregam em Campinas? Qual o prazo?",
            },
        )
        assert r.status_code == 202, r.text
        for _ in range(80):
            found = [
                x
                for x in (await c.get("/api/v1/conversations")).json()
                if x["lead_name"] == "Helena Prado"
            ]
            if found:
                return {"template": tpl, "lead_id": found[0]["lead_id"]}
            await asyncio.sleep(0.25)
    raise AssertionError("the customer's message never arrived")


async def _usage(base: str, headers: dict[str, str], template_id: str) -> int:
    async with httpx.AsyncClient(base_url=base, headers=headers) as c:
        return int((await c.get(f"/api/v1/templates/{template_id}")).json()["usage_count"] or 0)


async def test_suggestions_in_the_inbox_in_both_languages_and_widths(
    page: Any, live_server: str
) -> None:
    account = await browser_signup(page)
    headers = await live_login(live_server, account["email"])
    made = await _setup(live_server, headers)
    await page.goto(f"/inbox/{made['lead_id']}")
    box = page.locator("[data-suggestions]")
    await expect(box).to_be_visible(timeout=LIVE)
    await expect(box.locator("h3")).to_have_text("Respostas sugeridas")
    buttons = box.locator("[data-suggestion]")
    await expect(buttons).to_have_count(3)
    first = buttons.first
    await expect(first).to_contain_text("Oi Helena! Entregamos em Campinas em até 2 dias úteis.")
    await expect(first).to_contain_text("Modelo · Entrega")
    await screenshot(page, "suggestions-ptbr-1440")

    await first.click()
    composer = page.locator("#composer-text")
    await expect(composer).to_have_value("Oi Helena! Entregamos em Campinas em até 2 dias úteis.")
    await expect(first).to_have_attribute("aria-pressed", "true")
    await composer.press("Enter")
    await expect(
        page.locator("#thread .msg-outbound", has_text="Entregamos em Campinas")
    ).to_be_visible(timeout=LIVE)
    for _ in range(40):
        if await _usage(live_server, headers, made["template"]["id"]) == 1:
            break
        await asyncio.sleep(0.25)
    assert await _usage(live_server, headers, made["template"]["id"]) == 1

    await page.set_viewport_size(PHONE)
    await page.reload()
    await expect(page.locator("[data-suggestions] [data-suggestion]").first).to_be_visible(
        timeout=LIVE
    )
    await screenshot(page, "suggestions-ptbr-390")

    async with httpx.AsyncClient(base_url=live_server, headers=headers) as c:
        r = await c.patch("/api/v1/organizations/current", json={"settings": {"locale": "en"}})
        assert r.status_code == 200, r.text
    await page.set_viewport_size(DESKTOP)
    await page.reload()
    box = page.locator("[data-suggestions]")
    await expect(box.locator("h3")).to_have_text("Suggested replies", timeout=LIVE)
    await expect(box.locator("[data-suggestion]").first).to_contain_text("Template · Entrega")
    await screenshot(page, "suggestions-en-1440")
    await page.set_viewport_size(PHONE)
    await page.reload()
    await expect(page.locator("[data-suggestions] [data-suggestion]").first).to_be_visible(
        timeout=LIVE
    )
    await screenshot(page, "suggestions-en-390")
