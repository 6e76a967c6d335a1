"""Settings → WhatsApp and Settings → Message templates in a real browser: connect the Cloud
API (a fake Graph API on loopback), see the webhook address and verify token, switch from the
sandbox and back, and screenshots at desktop and phone widths."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.async_api import expect

from tests.e2e.conftest import DESKTOP, PHONE, screenshot
from tests.factories import browser_signup
from tests.fakes.graph_api import ACCESS_TOKEN, PHONE_NUMBER_ID, FakeGraphApi

APP_SECRET = "e2e-app-secret-value"


@pytest.fixture(scope="module")
def graph() -> Iterator[FakeGraphApi]:
    with FakeGraphApi() as fake:
        yield fake


async def test_connect_the_cloud_api_and_switch_providers(
    page: Any, live_server: str, graph: FakeGraphApi
) -> None:
    await browser_signup(page)
    await page.goto("/settings/whatsapp")

    # The sandbox first, activated: the first switch.
    await page.locator("#add-sandbox summary").click()
    await page.locator("#add-sandbox button[type=submit]").click()
    await page.get_by_role("button", name="Ativar").first.click()
    await expect(page.locator(".badge", has_text="Ativo")).to_have_count(1)

    # The Cloud API: a missing field is named, nothing is added.
    form = page.locator("#add-business_api form")
    await page.locator("#add-business_api summary").click()
    await form.locator("[name=business_phone_id]").fill(PHONE_NUMBER_ID)
    await form.locator("button[type=submit]").click()
    box = page.locator("#add-business_api")
    await expect(box.locator("[name=access_token][aria-invalid=true]")).to_be_visible()
    await expect(box.locator("[name=app_secret][aria-invalid=true]")).to_be_visible()
    await expect(box).to_contain_text("Obrigatório para este provedor")

    form = page.locator("#add-business_api form")
    await form.locator("[name=business_phone_id]").fill(PHONE_NUMBER_ID)
    await form.locator("[name=access_token]").fill(ACCESS_TOKEN)
    await form.locator("[name=app_secret]").fill(APP_SECRET)
    await form.locator("[name=graph_base_url]").fill(graph.url)
    await form.locator("button[type=submit]").click()
    html = await page.content()
    assert ACCESS_TOKEN not in html and APP_SECRET not in html  # shown masked only
    await expect(page.locator("input[id^=webhook-]")).to_have_value(
        re.compile(r"/webhooks/whatsapp/[0-9a-f-]{36}$")
    )
    await expect(page.locator("input[id^=verify-]")).to_have_value(re.compile(r".{20,}"))

    # Test the connection, then switch to it: the sandbox is no longer the active one.
    cloud = page.locator("li", has_text="WhatsApp Cloud API").last
    await cloud.get_by_role("button", name="Testar conexão").click()
    await expect(page.locator("body")).to_contain_text("Loved CRM")  # verified_name
    cloud = page.locator("li", has_text="WhatsApp Cloud API").last
    await cloud.get_by_role("button", name="Ativar").click()
    await expect(page.locator("#wa-history-h")).to_be_visible()
    history = page.locator("section[aria-labelledby=wa-history-h]")
    await expect(history.locator("tbody tr")).to_have_count(2)
    await screenshot(page, "settings-whatsapp-desktop")
    await page.set_viewport_size(PHONE)
    await screenshot(page, "settings-whatsapp-phone")
    await page.set_viewport_size(DESKTOP)

    # Undo the switch: the sandbox is active again.
    await history.get_by_role("button", name="Desfazer").first.click()
    await expect(history.locator("tbody tr")).to_have_count(3)
    sandbox_item = page.locator("li", has_text="Sandbox").first
    await expect(sandbox_item.locator(".badge", has_text="Ativo")).to_be_visible()


async def test_templates_page(page: Any, live_server: str) -> None:
    await browser_signup(page)
    await page.goto("/settings/templates")
    await expect(page.locator("h1")).to_be_visible()
    await screenshot(page, "settings-templates-desktop")
    await page.set_viewport_size(PHONE)
    await screenshot(page, "settings-templates-phone")


async def test_no_page_is_wider_than_a_phone(page: Any, live_server: str) -> None:
    """Wide tables and tab rows scroll inside their box; the page itself never scrolls
    sideways (an absolutely placed screen-reader label once widened it)."""
    await browser_signup(page)
    await page.set_viewport_size(PHONE)
    for path in (
        "/",
        "/pipeline",
        "/leads",
        "/inbox",
        "/settings",
        "/settings/whatsapp",
        "/settings/templates",
        "/settings/custom-fields",
    ):
        await page.goto(path)
        widths = await page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert widths[0] <= widths[1], (path, widths)
