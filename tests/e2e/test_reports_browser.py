"""The reports in a real browser, in pt-BR and English, at 1440 and 390 px: the tab bar, the
filters, a chart drawn from the page's JSON (no inline script: the CSP holds), the tables
beside them, nothing wider than the screen. Screenshots under the e2e artifacts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.e2e.conftest import screenshot
from tests.factories import browser_signup, live_lead, live_login

SECTIONS = ("/reports", "/reports/pipeline", "/reports/team", "/reports/channels")


async def _some_history(base: str, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=base, headers=headers) as c:
        board = (await c.get("/api/v1/board")).json()
        stages = [col["stage"]["id"] for col in board["columns"]]
        for k, source in enumerate(["site", "site", "ads", "indicação", "ads", "site", "evento"]):
            lead = await live_lead(
                base,
                headers,
                full_name=f"Cliente {k}",
                source=source,
                estimated_value=str(1000 + 250 * k),
            )
            for stage in stages[1 : 1 + k % 4]:
                r = await c.patch(f"/api/v1/leads/{lead['id']}", json={"stage_id": stage})
                assert r.status_code == 200, r.text
            if k % 3 == 0:
                r = await c.patch(f"/api/v1/leads/{lead['id']}", json={"status": "converted"})
                assert r.status_code == 200, r.text
            elif k % 3 == 1:
                r = await c.patch(
                    f"/api/v1/leads/{lead['id']}", json={"status": "lost", "lost_reason": "preço"}
                )
                assert r.status_code == 200, r.text
            r = await c.post(
                f"/api/v1/leads/{lead['id']}/activities",
                json={"type": "note", "title": "Conversa", "description": "Ligou de volta"},
            )
            assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("lang", "width"), [("pt-BR", 1440), ("pt-BR", 390), ("en", 1440), ("en", 390)]
)
async def test_the_reports_read_well(page: Any, live_server: str, lang: str, width: int) -> None:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    account = await browser_signup(page)
    await _some_history(live_server, await live_login(live_server, account["email"]))
    await page.context.add_cookies([{"name": "lovedcrm_lang", "value": lang, "url": live_server}])
    await page.set_viewport_size({"width": width, "height": 900})
    await page.goto("/")
    nav = page.locator("nav.sidebar a[href='/reports']")
    await expect(nav).to_have_count(1)
    await page.goto("/reports")
    title = "Relatórios" if lang == "pt-BR" else "Reports"
    await expect(page.locator("h1")).to_contain_text(title)
    tabs = page.locator("nav.report-tabs a")
    await expect(tabs).to_have_count(6)
    await expect(tabs.last).to_have_attribute("href", "/reports/costs")
    funnel = page.locator("canvas[data-chart='funnel']")
    await expect(funnel).to_be_visible()
    assert (await funnel.bounding_box())["height"] > 100
    await expect(page.locator("#h-funnel")).to_have_text("Funil" if lang == "pt-BR" else "Funnel")
    for path in SECTIONS:
        await page.goto(path)
        await expect(page.locator(".report-filters")).to_be_visible()
        wide = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        culprits = await page.evaluate(
            "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right"
            " > document.documentElement.clientWidth + 1).slice(0, 8).map(e => e.tagName + '.'"
            " + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"
        )
        assert wide <= 1, (path, width, wide, culprits)
        name = path.strip("/").replace("/", "-")
        await screenshot(page, f"{name}-{lang}-{width}")
    # A bad filter: the form again, with the error under the field.
    await page.goto("/reports?start=2026-05-10&end=2026-05-01")
    await expect(page.locator(".field-error")).to_be_visible()
    await screenshot(page, f"reports-bad-filter-{lang}-{width}")
    assert not [e for e in errors if "Content Security Policy" in e or "Chart" in e], errors
