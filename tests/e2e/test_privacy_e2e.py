"""LGPD and the audit trail in a real browser (pt-BR): on the lead page, record a consent,
export the person's data (a zip downloaded once) and erase it; then Configurações →
Auditoria at 1440 and 390 px (screenshots), filtered, without sideways scrolling on a phone."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
from playwright.async_api import expect

from tests.e2e.conftest import PHONE, screenshot
from tests.factories import browser_signup, live_lead, live_login

pytestmark = pytest.mark.asyncio

NAME = "Valquíria Exportada"
EMAIL = "valquiria@exemplo.com.br"


async def _reload_until(page: Any, selector: str, tries: int = 60) -> None:
    """The job runs on the live server's worker: reload until its result shows (the
    assertion is on what the page shows, the loop only gives the worker its turn)."""
    for _ in range(tries):
        await page.reload()
        await page.wait_for_selector("[data-privacy-panel]")
        if await page.locator(selector).count():
            return
        await page.wait_for_timeout(500)
    raise AssertionError(f"{selector} never appeared")


async def test_export_and_erase_from_the_lead_page(page: Any, live_server: str) -> None:
    account = await browser_signup(page)
    headers = await live_login(live_server, account["email"])
    lead = await live_lead(
        live_server, headers, full_name=NAME, email=EMAIL, phone="+5511977776666"
    )
    await page.goto(f"/leads/{lead['id']}")
    panel = page.locator("[data-privacy-panel]")
    await expect(panel).to_contain_text("Privacidade (LGPD)")

    # A consent with its legal basis and evidence.
    await page.select_option("#consent-purpose", "whatsapp_marketing")
    await page.select_option("#consent-basis", "consent")
    await page.fill("#consent-evidence", "Aceitou pelo formulário do site")
    await page.click("form.consent-form button[type=submit]")
    await expect(page.locator('[data-consent="whatsapp_marketing:granted"]')).to_be_visible()
    await expect(panel).to_contain_text("Marketing por WhatsApp")

    # The export: a job, then a download that works once.
    # The form posts and redirects back to the lead: wait for that page before reloading,
    # or the reload races the redirect.
    async with page.expect_navigation():
        await page.click("[data-export-lead]")
    await _reload_until(page, "[data-download]")
    async with page.expect_download() as info:
        await page.click("[data-download]")
    download = await info.value
    data = await download.path()
    assert data is not None
    with zipfile.ZipFile(io.BytesIO(data.read_bytes())) as archive:
        body = json.loads(archive.read("data.json"))
    assert body["lead"]["email"] == EMAIL
    assert body["lead_consents"][0]["purpose"] == "whatsapp_marketing"

    await page.locator("[data-privacy-panel]").scroll_into_view_if_needed()
    await screenshot(page, "lead-privacy-panel-1440")
    erase = page.locator("[data-erase-lead]")
    await expect(erase).to_have_text("Apagar os dados da pessoa")
    # Legible: the lead page's outlined danger style, not red on red.
    await expect(erase).to_have_css("color", "rgb(185, 28, 28)")
    await expect(erase).not_to_have_css("background-color", "rgb(185, 28, 28)")

    # The erasure (confirmed), then the lead shows as erased, anonymised.
    await page.check(".privacy-erase input[name=confirm]")
    async with page.expect_navigation():
        await page.click("[data-erase-lead]")
    await _reload_until(page, '[data-privacy-request="lead_erasure:done"]')
    await expect(page.locator("[data-lead-erased]")).to_be_visible()
    await expect(page.locator("h1")).not_to_contain_text(NAME)
    await expect(page.locator("body")).not_to_contain_text(EMAIL)

    # The trail shows it all, filtered to the privacy actions.
    await page.goto("/settings/audit")
    await expect(page.locator("[data-audit-table]")).to_be_visible()
    await page.select_option("#audit-action", "privacy.erasure_completed")
    await page.click("form.audit-filters button[type=submit]")
    await expect(page.locator('[data-audit-row="privacy.erasure_completed"]')).to_have_count(1)
    await page.goto("/settings/audit")
    await screenshot(page, "audit-1440")
    await page.set_viewport_size(PHONE)
    await page.goto("/settings/audit")
    await expect(page.locator("[data-audit-table]")).to_be_visible()
    await screenshot(page, "audit-390")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1, width
