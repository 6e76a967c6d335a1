"""Billing in a real browser: a new organization on its trial opens Settings → Billing
(plan, trial days left, usage bars, the plans compared), upgrades through the sandbox
checkout and comes back on the paid plan. Screenshots at 1440 and 390 px."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.e2e.conftest import DESKTOP, PHONE, screenshot
from tests.factories import browser_signup


async def test_trial_org_upgrades_through_the_sandbox_checkout(page: Any) -> None:
    await browser_signup(page)
    await page.goto("/settings/billing")
    await expect(page.locator("h2#plan-h")).to_have_text("Seu plano")
    await expect(page.locator(".kpi-value")).to_have_text("Pro")
    await expect(page.get_by_text("Teste grátis", exact=True)).to_be_visible()
    await expect(page.get_by_text("dias do seu teste grátis")).to_be_visible()
    await expect(page.locator("progress.usage-bar")).to_have_count(0)  # billing off: no limit
    await expect(page.locator(".plan-card")).to_have_count(3)
    await screenshot(page, "billing-trial-1440")
    await page.set_viewport_size(PHONE)
    await screenshot(page, "billing-trial-390")
    await page.set_viewport_size(DESKTOP)

    card = page.locator(".plan-card").filter(has_text="Enterprise")
    await card.locator("select[name=cycle]").select_option("yearly")
    await card.get_by_role("button", name="Escolher Enterprise").click()
    await page.wait_for_url("**/billing/sandbox/checkout?plan=enterprise&cycle=yearly")
    await expect(page.get_by_text("nenhum cartão é cobrado")).to_be_visible()
    await screenshot(page, "billing-checkout-1440")
    await page.get_by_role("button", name="Pagar").click()
    await page.wait_for_url("**/settings/billing")
    await expect(page.locator(".toast").first).to_contain_text("Enterprise")
    await expect(page.locator(".kpi-value")).to_have_text("Enterprise")
    await expect(page.get_by_text("Ativa", exact=True)).to_be_visible()
    await expect(page.locator(".plan-current")).to_contain_text("Enterprise")
    await screenshot(page, "billing-active-1440")
    await page.set_viewport_size(PHONE)
    await screenshot(page, "billing-active-390")
