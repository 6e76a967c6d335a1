"""Click-to-call in a real browser, in pt-BR and English, at 1440 and 390 px: the admin sets
up the sandbox telephony on Settings → Telephony, opens a lead, clicks "Ligar"/"Call", watches
the call ring, go on and complete in the lead's calls panel (htmx polling), then finds it on
the timeline with its cost and the recording player. Screenshots under the e2e artifacts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.e2e.conftest import screenshot
from tests.factories import browser_signup, live_lead, live_login

WORDS = {
    "pt-BR": {
        "call": "Ligar",
        "calls": "Chamadas",
        "completed": "Concluída",
        "add": "Adicionar provedor",
    },
    "en": {"call": "Call now", "calls": "Calls", "completed": "Completed", "add": "Add provider"},
}


@pytest.mark.parametrize(
    ("lang", "width"), [("pt-BR", 1440), ("pt-BR", 390), ("en", 1440), ("en", 390)]
)
async def test_call_a_lead_in_the_sandbox(
    page: Any, live_server: str, lang: str, width: int
) -> None:
    words = WORDS[lang]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    account = await browser_signup(page)
    headers = await live_login(live_server, account["email"])
    async with httpx.AsyncClient(base_url=live_server) as c:
        r = await c.patch(
            "/api/v1/auth/me/profile", headers=headers, json={"phone": "+5511977776666"}
        )
        assert r.status_code == 200, r.text
    lead = await live_lead(live_server, headers, full_name="Carla Dias", phone="+5511988887777")
    await page.context.add_cookies([{"name": "lovedcrm_lang", "value": lang, "url": live_server}])
    await page.set_viewport_size({"width": width, "height": 900})

    # Settings → Telephony: add the sandbox with a cost per minute.
    await page.goto("/settings/telephony")
    sandbox = page.locator("#add-sandbox")
    await sandbox.locator("summary").click()
    await sandbox.locator("input[name=cost_per_minute]").fill("0.10")
    await sandbox.locator("input[name=currency]").fill("BRL")
    await sandbox.get_by_role("button", name=words["add"]).click()
    await expect(page.locator(".telephony-config")).to_have_count(1)
    await screenshot(page, f"calls-settings-{lang}-{width}")

    # The lead page: the calls panel and its button.
    await page.goto(f"/leads/{lead['id']}")
    panel = page.locator("[data-calls-panel]")
    await expect(panel.locator("h2")).to_have_text(words["calls"])
    button = panel.locator("[data-call-button]")
    await expect(button).to_contain_text(words["call"])
    await button.click()
    await page.wait_for_url(f"**/leads/{lead['id']}*")
    status = page.locator("[data-calls-panel] .call-item").first
    await expect(status).to_have_attribute("data-call-status", "completed", timeout=45_000)
    await expect(status.locator(".call-status")).to_have_text(words["completed"])
    await expect(status.locator(".call-cost")).to_be_visible()
    await screenshot(page, f"calls-panel-{lang}-{width}")

    # The timeline: the call with its cost and (once downloaded) the recording.
    for _ in range(20):
        await page.goto(f"/leads/{lead['id']}")
        if (
            await page.locator(".tl-item [data-call-cost]").count()
            and await page.locator(".tl-item audio").count()
        ):
            break
        await page.wait_for_timeout(500)
    await expect(page.locator(".tl-item [data-call-cost]").first).to_contain_text("BRL")
    await expect(page.locator(".tl-item audio").first).to_be_attached()
    wide = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert wide <= 1, wide
    await screenshot(page, f"calls-timeline-{lang}-{width}")
    assert errors == []
