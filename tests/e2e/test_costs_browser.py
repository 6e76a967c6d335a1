"""Relatórios → Custos in a real browser, in pt-BR and English, at 1440 and 390 px: the
per-provider table with amounts per currency, the "on the other provider" comparison, the
WhatsApp prices form (saved and shown again), and nothing overflowing the phone's width."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from playwright.async_api import expect

from tests.e2e.conftest import PHONE, screenshot
from tests.factories import browser_signup, live_login, owner_sql


async def _account(page: Any, live_server: str) -> dict[str, str]:
    account = await browser_signup(page)
    headers = await live_login(live_server, account["email"])
    async with httpx.AsyncClient(base_url=live_server) as http:
        me = (await http.get("/api/v1/auth/me", headers=headers)).json()
    return {"org": str(me["organization_id"]), "user": str(me["user"]["id"])}


def _calls(owner: sa.Engine, org: str, user: str) -> None:
    for provider, rate, active in (("twilio", "0.0140", True), ("telnyx", "0.0070", False)):
        owner_sql(
            owner,
            "INSERT INTO voip_configs (organization_id, provider_type, is_active, account_sid,"
            " auth_token, api_key, cost_per_minute) VALUES (CAST(:o AS uuid), :p, :a, :sid,"
            " :tok, :key, CAST(:r AS numeric))",
            o=org,
            p=provider,
            a=active,
            sid="AC1" if provider == "twilio" else None,
            tok="x" if provider == "twilio" else None,
            key="k" if provider == "telnyx" else None,
            r=rate,
        )
    for seconds, cost in ((61, "0.02800"), (300, "0.07000"), (45, None)):
        owner_sql(
            owner,
            "INSERT INTO call_logs (organization_id, user_id, provider_type, direction, status,"
            " duration_seconds, cost_amount, cost_currency) VALUES (CAST(:o AS uuid),"
            " CAST(:u AS uuid), 'twilio', 'outbound', 'completed', :d, CAST(:c AS numeric),"
            " 'USD')",
            o=org,
            u=user,
            d=seconds,
            c=cost,
        )


async def _no_sideways_scroll(page: Any) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1, width


@pytest.mark.parametrize(
    ("language", "heading", "other"),
    [
        ("pt-BR", "Custos", "As mesmas chamadas no Telnyx teriam custado"),
        ("en", "Costs", "The same calls on Telnyx would have cost"),
    ],
)
async def test_the_costs_page_in_both_languages(
    page: Any, live_server: str, owner: sa.Engine, language: str, heading: str, other: str
) -> None:
    ids = await _account(page, live_server)
    _calls(owner, ids["org"], ids["user"])
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.context.add_cookies(
        [{"name": "lovedcrm_lang", "value": language, "url": live_server}]
    )
    await page.goto("/reports/costs?group_by=provider")
    await expect(page.locator("#costs-h")).to_have_text(heading)
    row = page.locator("tr[data-cost-row=twilio]")
    await expect(row).to_contain_text("Twilio")
    await expect(row).to_contain_text("US$ 0,098" if language == "pt-BR" else "$0.098")
    await expect(page.locator("li[data-alternative=telnyx]")).to_contain_text(other)
    await screenshot(page, f"costs-1440-{language}")

    # The WhatsApp prices: a bad value is named under its field; a good one is saved.
    await page.fill("#rate-marketing", "-1")
    await page.locator("form.costs-rates button[type=submit]").click()
    await expect(page.locator("#rate-marketing[aria-invalid=true]")).to_be_visible()
    await page.fill("#rate-marketing", "0,50")
    await page.locator("form.costs-rates button[type=submit]").click()
    await expect(page.locator("#rate-marketing")).to_have_value("0.50")

    await page.set_viewport_size(PHONE)
    await _no_sideways_scroll(page)
    await screenshot(page, f"costs-390-{language}")
    assert errors == []
