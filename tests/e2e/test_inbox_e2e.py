"""The inbox in a real browser against `lovedcrm serve` (its worker runs the WhatsApp jobs):
a customer's message arrives live, the sandbox's simulate form, the lead's timeline, a
template reply whose ticks advance without a reload, and screenshots at desktop and phone
widths."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from playwright.async_api import expect

from tests.e2e.conftest import DESKTOP, PHONE, screenshot
from tests.factories import activate_sandbox, browser_signup, live_login

LIVE = 20_000  # ms: the worker polls every 2 s; the machine may be busy


async def _sandbox(base: str, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=base) as c:
        await activate_sandbox(c, headers)


async def _inject(base: str, headers: dict[str, str], phone: str, name: str, text: str) -> None:
    async with httpx.AsyncClient(base_url=base, headers=headers) as c:
        r = await c.post(
            "/api/v1/whatsapp/sandbox/inbound",
            json={"from_number": phone, "contact_name": name, "content": text},
        )
        assert r.status_code == 202, r.text


async def _conversation(base: str, headers: dict[str, str], name: str) -> dict[str, Any]:
    """The conversation once the worker has stored the customer's message."""
    async with httpx.AsyncClient(base_url=base, headers=headers) as c:
        for _ in range(80):
            found = [
                x for x in (await c.get("/api/v1/conversations")).json() if x["lead_name"] == name
            ]
            if found:
                conv: dict[str, Any] = found[0]
                return conv
            await asyncio.sleep(0.25)
    raise AssertionError(f"no conversation with {name}")


async def test_a_customer_message_arrives_live_and_shows_on_the_lead_page(
    page: Any, live_server: str
) -> None:
    account = await browser_signup(page)
    headers = await live_login(live_server, account["email"])
    await _sandbox(live_server, headers)
    await page.goto("/inbox")
    await expect(page.locator(".conv-empty")).to_be_visible()

    # A customer writes (the sandbox's inbound road: a job run by the server's worker).
    await _inject(
        live_server, headers, "(11) 98765-4321", "Marina Souza", "Oi! Vocês abrem sábado?"
    )
    item = page.locator("#conversation-list li.conv", has_text="Marina Souza")
    await expect(item).to_be_visible(timeout=LIVE)
    await expect(item).to_contain_text("Oi! Vocês abrem sábado?")
    await expect(item.locator(".unread-count")).to_contain_text("1")
    await expect(page.locator("#nav-unread")).to_have_text("1", timeout=LIVE)

    # Open it: the bubble, and it is read.
    await item.locator("a").click()
    await page.wait_for_url("**/inbox/*")
    await expect(page.locator("#thread .msg-inbound")).to_contain_text("Oi! Vocês abrem sábado?")
    await expect(page.locator("#nav-unread")).to_be_hidden()

    # The page's simulate form: the next message appears in the open conversation, live.
    await page.locator("#simulate summary").click()
    await expect(page.locator("#sim-phone")).to_have_value("+5511987654321")
    await page.fill("#sim-text", "Queria saber o preço também")
    await page.locator("#simulate button[type=submit]").click()
    await expect(page.locator(".simulate-done")).to_be_visible()
    await expect(
        page.locator("#thread .msg-inbound", has_text="Queria saber o preço também")
    ).to_be_visible(timeout=LIVE)
    # Read at once: the conversation is open in front of someone.
    await expect(item.locator(".unread-count")).to_be_hidden(timeout=LIVE)
    await expect(page.locator("#nav-unread")).to_be_hidden()
    await page.locator("#simulate summary").click()
    await page.locator("#composer-text").click()
    await screenshot(page, "inbox-desktop")

    # The lead's page shows the messages in its timeline.
    await page.locator(".chat-lead-link").click()
    await page.wait_for_url("**/leads/*")
    await expect(page.locator("main")).to_contain_text("Oi! Vocês abrem sábado?")
    await expect(page.locator("main")).to_contain_text("Queria saber o preço também")


async def test_a_template_reply_and_its_ticks_advance_without_a_reload(
    browser: Any, live_server: str
) -> None:
    context = await browser.new_context(viewport=DESKTOP, base_url=live_server, locale="pt-BR")
    try:
        page = await context.new_page()
        account = await browser_signup(page)
        headers = await live_login(live_server, account["email"])
        await _sandbox(live_server, headers)
        async with httpx.AsyncClient(base_url=live_server, headers=headers) as c:
            r = await c.post(
                "/api/v1/templates",
                json={
                    "name": "Envio da proposta",
                    "category": "follow_up",
                    "content": "Olá {{first_name}}, segue a proposta!",
                },
            )
            assert r.status_code == 201, r.text
            template_id = r.json()["id"]
        await _inject(live_server, headers, "21 99876-5432", "Paulo Mendes", "Manda a proposta?")
        conv = await _conversation(live_server, headers, "Paulo Mendes")
        await page.goto(f"/inbox/{conv['lead_id']}")
        await expect(page.locator("#thread .msg-inbound")).to_contain_text("Manda a proposta?")

        # Record every status the page shows for our reply (bubbles are replaced on change).
        await page.evaluate(
            """() => {
              window.__seen = [];
              const look = () => {
                const el = document.querySelector('#thread li.msg-outbound[data-status]');
                const s = el && el.getAttribute('data-status');
                if (s && window.__seen[window.__seen.length - 1] !== s) window.__seen.push(s);
              };
              new MutationObserver(look).observe(document.querySelector('.inbox-chat'),
                {subtree: true, childList: true, attributes: true});
            }"""
        )
        await page.select_option("#composer-template", template_id)
        await expect(page.locator("[data-template-preview]")).to_have_text(
            "Olá Paulo, segue a proposta!"
        )
        await page.locator("[data-send-template]").click()
        reply = page.locator("#thread li.msg-outbound", has_text="Olá Paulo, segue a proposta!")
        await expect(reply).to_be_visible()
        await expect(reply).to_contain_text("Modelo: Envio da proposta")
        await expect(reply).to_have_attribute("data-status", "read", timeout=LIVE)
        await expect(reply.locator(".ticks-read")).to_be_visible()
        seen = await page.evaluate("() => window.__seen")
        order = ["pending", "sent", "delivered", "read"]
        # The bubble advanced live (no reload), in order, to read. "delivered" may not be
        # shown on its own: its receipt is due a second after the send and read's two
        # seconds later, and a worker running late (a loaded machine) handles both in one
        # batch, so the page goes from sent straight to read.
        assert seen[0] in ("pending", "sent") and seen[-1] == "read", seen
        assert len(seen) >= 2 and seen == sorted(seen, key=order.index), seen  # never backwards

        # The list says it too: the last message is ours, read.
        item = page.locator("#conversation-list li.conv", has_text="Paulo Mendes")
        await expect(item.locator(".ticks-read")).to_be_visible(timeout=LIVE)

        await screenshot(page, "inbox-reply-desktop")

        # Phone width: the chat alone, with the way back to the list.
        await page.set_viewport_size(PHONE)
        await expect(page.locator(".chat-back")).to_be_visible()
        await expect(page.locator(".inbox-list")).to_be_hidden()
        await screenshot(page, "inbox-chat-phone")
        await page.locator(".chat-back").click()
        await page.wait_for_url("**/inbox")
        await expect(page.locator(".inbox-list")).to_be_visible()
        await screenshot(page, "inbox-phone")
    finally:
        await context.close()
