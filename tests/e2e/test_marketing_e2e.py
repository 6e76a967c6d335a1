"""Marketing in a real browser: an admin writes an e-mail campaign (subject, HTML and text
with variables, an audience from the leads' filters), sees its preview and who may receive
it, sends it, and reads the results (the server's worker sends through its mail backend);
at 1440 and 390 px, nothing overflowing the phone's width."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa
from playwright.async_api import expect

from tests.e2e.conftest import PHONE, screenshot
from tests.factories import browser_signup, live_login, owner_sql


async def test_create_preview_and_send_a_campaign(
    page: Any, live_server: str, owner: sa.Engine
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    account = await browser_signup(page)
    headers = await live_login(live_server, account["email"])
    async with httpx.AsyncClient(base_url=live_server) as http:
        org = str((await http.get("/api/v1/auth/me", headers=headers)).json()["organization_id"])
    owner_sql(
        owner,
        "INSERT INTO leads (organization_id, full_name, email, stage_id, source, custom_fields)"
        " SELECT CAST(:o AS uuid), n, lower(n) || '@example.com',"
        " (SELECT id FROM pipeline_stages WHERE organization_id = CAST(:o AS uuid)"
        "  ORDER BY stage_order LIMIT 1), 'newsletter', '{}'::jsonb"
        " FROM unnest(ARRAY['Marina', 'Otavio', 'Paula']) AS n",
        o=org,
    )
    owner_sql(
        owner,
        "INSERT INTO lead_consents (organization_id, lead_id, purpose, legal_basis, status,"
        " source, evidence, recorded_at) SELECT organization_id, id, 'email_marketing',"
        " 'consent', 'granted', 'form', '{}'::jsonb, now() FROM leads"
        " WHERE organization_id = CAST(:o AS uuid) AND full_name IN ('Marina', 'Otavio')",
        o=org,
    )

    await page.goto("/marketing")
    await expect(page.locator("#campaigns-h")).to_have_text("Campanhas de e-mail")
    await page.click("[data-new-campaign]")
    await page.fill("#c-name", "Novidades de dezembro")
    await page.fill("#c-subject", "{{primeiro_nome}}, chegou a coleção nova")
    await page.fill(
        "#c-html", '<p>Olá {{primeiro_nome}}!</p><p><a href="https://loja.example.com">Ver</a></p>'
    )
    await page.fill("#c-text", "Olá {{primeiro_nome}}! https://loja.example.com")
    await page.fill("#a-source", "newsletter")
    await page.click("[data-save-campaign]")
    await page.wait_for_url("**/marketing/campaigns/*")
    await expect(page.locator("[data-preview-subject]")).to_contain_text("chegou a coleção nova")
    await expect(page.locator("[data-audience-count]")).to_contain_text("2 de 3")
    name = (await page.locator("[data-preview-subject]").inner_text()).split(",")[0]
    preview = page.frame_locator("[data-preview-html]")
    await expect(preview.locator("body")).to_contain_text(f"Olá {name}!")
    await screenshot(page, "marketing-campaign-1440")

    # Already on the campaign's URL: wait for the post's own navigation, not the URL.
    async with page.expect_navigation():
        await page.click("[data-send-campaign]")
    for _ in range(40):
        await page.reload()
        sent = page.locator("[data-result=sent] .kpi-value")
        if await sent.count() and (await sent.inner_text()).strip() == "2":
            break
        await page.wait_for_timeout(250)
    await expect(page.locator("[data-result=sent] .kpi-value")).to_have_text("2")
    await expect(page.locator("[data-result=skipped_no_consent] .kpi-value")).to_have_text("1")
    await screenshot(page, "marketing-results-1440")

    await page.set_viewport_size(PHONE)
    await page.reload()
    await expect(page.locator("[data-results]")).to_be_visible()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1, width
    await screenshot(page, "marketing-results-390")
    await page.goto("/marketing/integrations")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1, width
    await screenshot(page, "marketing-integrations-390")
    assert errors == []
