"""Notifications in the browser: a lead assigned to a member reaches that member's bell live
(a second browser, no reload), not the admin's; the bell's list and the Sistema page at
1440 and 390 px (screenshots)."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import expect

from tests.e2e.conftest import DESKTOP, PHONE, screenshot
from tests.factories import PASSWORD, browser_signup, join, live_lead, live_login


async def test_an_assigned_lead_reaches_the_members_bell_live(
    browser: Any, live_server: str
) -> None:
    first = await browser.new_context(viewport=DESKTOP, base_url=live_server, locale="pt-BR")
    second = await browser.new_context(viewport=DESKTOP, base_url=live_server, locale="pt-BR")
    try:
        a = await first.new_page()
        account = await browser_signup(a)
        headers = await live_login(live_server, account["email"])
        async with httpx.AsyncClient(base_url=live_server) as c:
            member_email = await join(c, headers, "sales")
            member_headers = await live_login(live_server, member_email)
            me = (await c.get("/api/v1/auth/me", headers=member_headers)).json()
        b = await second.new_page()
        await b.goto("/login")
        await b.fill("#email", member_email)
        await b.fill("#password", PASSWORD)
        await b.click("form button[type=submit]")
        await b.wait_for_url("**/")
        await expect(b.locator("#bell summary")).to_be_visible()
        await expect(b.locator("[data-bell-count]")).to_have_count(0)
        await a.goto("/")
        await expect(a.locator("#bell summary")).to_be_visible()
        await b.wait_for_timeout(300)  # the bell's stream is open (EventSource)
        lead = await live_lead(
            live_server, headers, full_name="Carla Prado", assigned_to=me["user"]["id"]
        )
        # The member's bell counts it without a reload; the admin's does not.
        await expect(b.locator("[data-bell-count]")).to_have_text("1", timeout=5000)
        await expect(a.locator("[data-bell-count]")).to_have_count(0)
        await b.locator("#bell summary").click()
        await expect(b.locator(".bell-item.unread")).to_contain_text("Carla Prado")
        await screenshot(b, "bell-desktop")
        await b.set_viewport_size(PHONE)
        await screenshot(b, "bell-phone")
        await b.locator(".bell-item").first.click()
        await b.wait_for_url(f"**/leads/{lead['id']}")
        await expect(b.locator("[data-bell-count]")).to_have_count(0)

        await a.goto("/settings/system")
        await expect(a.locator("h2#queue")).to_have_text("Fila de tarefas")
        await expect(a.locator("#bell summary")).to_be_visible()
        await screenshot(a, "system-desktop")
        await a.set_viewport_size(PHONE)
        await expect(a.locator("#bell summary")).to_be_visible()
        await screenshot(a, "system-phone")
    finally:
        await first.close()
        await second.close()
