"""The leads list's bulk bar in a real browser: hidden until a lead is selected, select all,
only the select the chosen action needs, and the action applied."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.factories import browser_signup, live_lead, live_login


async def test_bulk_bar_select_all_and_move(page: Any, live_server: str) -> None:
    account = await browser_signup(page)
    headers = await live_login(live_server, account["email"])
    for name in ("Alice Prado", "Bento Lima", "Caio Reis"):
        await live_lead(live_server, headers, full_name=name)
    await page.goto("/leads")
    bar = page.locator("[data-bulk-bar]")
    await expect(bar).to_be_hidden()  # nothing selected yet
    await page.locator("[data-select-all]").check()
    await expect(bar).to_be_visible()
    await expect(page.locator("[data-bulk-count]")).to_have_text("3 leads selecionados")
    await page.locator("input[name=ids]").first.uncheck()
    await expect(page.locator("[data-bulk-count]")).to_have_text("2 leads selecionados")
    assert await page.locator("[data-select-all]").evaluate("el => el.indeterminate")
    await page.select_option("#bulk-action", "stage")
    await expect(page.locator("#bulk-stage")).to_be_visible()
    await expect(page.locator("#bulk-assignee")).to_be_hidden()
    await page.select_option("#bulk-stage", label="Proposta")
    await page.click("[data-bulk-bar] button[type=submit]")
    await expect(page.locator("body")).to_contain_text("2 de 2 leads atualizados")
    rows = page.locator("tbody tr", has_text="Proposta")
    await expect(rows).to_have_count(2)
