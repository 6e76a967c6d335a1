"""The lead page in a real browser: the score panel loads (htmx, from the scoring domain)
and reads out the factors behind the score, in the reader's language."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.e2e.conftest import screenshot
from tests.factories import browser_signup, live_lead, live_login


async def test_the_lead_page_shows_the_score_and_its_factors(page: Any, live_server: str) -> None:
    account = await browser_signup(page)
    headers = await live_login(live_server, account["email"])
    lead = await live_lead(
        live_server,
        headers,
        full_name="Marta Quintana",
        source="referral",
        company="Doces da Marta",
        email="marta@docesdamarta.com.br",
    )
    await page.goto(f"/leads/{lead['id']}")
    panel = page.locator("[data-score-panel]")
    await expect(panel).to_be_visible()
    await expect(panel.locator("[data-score]")).to_have_text("Pontuação: 75")
    up = panel.locator('[data-factors="up"] li')
    await expect(up.first).to_contain_text("Origem: indicação")
    texts = await up.all_inner_texts()
    assert any("Empresa preenchida" in t for t in texts), texts
    await expect(panel.locator("[data-needed]")).to_contain_text("Faltam 30 leads ganhos")
    await screenshot(page, "scoring-lead-panel")
    await page.click("text=Como a pontuação é calculada")
    await expect(page.locator("[data-scoring-status]")).to_contain_text("30 ganhos e 30 perdidos")
    await screenshot(page, "scoring-settings")
