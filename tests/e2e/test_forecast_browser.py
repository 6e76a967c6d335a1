"""The revenue forecast page in a real browser, in pt-BR and English, at 1440 and 390 px:
the Chart.js chart draws (from /static/forecast.js, no inline script), the cards and the
table show the numbers, nothing overflows the phone's width; and the empty state of an
organization with no history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from playwright.async_api import expect

from tests.e2e.conftest import PHONE, screenshot
from tests.factories import browser_signup, live_login, owner_sql


def _history(owner: sa.Engine, org: str, who: str) -> None:
    """Half a year of closed deals (about 60 % won, 1,000–6,000 each) and 12 open ones."""
    stage = owner_sql(
        owner,
        "SELECT id FROM pipeline_stages WHERE organization_id = :o ORDER BY stage_order LIMIT 1",
        o=org,
    )[0][0]
    now = datetime.now(UTC)
    for i in range(90):
        closed = now - timedelta(days=2 + i * 2)
        won = i % 5 < 3
        owner_sql(
            owner,
            "INSERT INTO leads (id, organization_id, full_name, stage_id, assigned_to,"
            " estimated_value, status, converted_at, lost_reason, created_at, updated_at)"
            " VALUES (:id, :o, :name, :s, :u, :v, :st, :conv, :reason, :created, :closed)",
            id=str(uuid.uuid4()),
            o=org,
            name=f"Cliente {i}",
            s=stage,
            u=who,
            v=1000 + (i * 537) % 5000 if won else None,
            st="converted" if won else "lost",
            conv=closed if won else None,
            reason=None if won else "preço",
            created=closed - timedelta(days=5 + i % 20),
            closed=closed,
        )
    for i in range(12):
        owner_sql(
            owner,
            "INSERT INTO leads (id, organization_id, full_name, stage_id, assigned_to,"
            " estimated_value, status, created_at) VALUES (:id, :o, :name, :s, :u, :v,"
            " 'active', :created)",
            id=str(uuid.uuid4()),
            o=org,
            name=f"Aberto {i}",
            s=stage,
            u=who,
            v=2500,
            created=now - timedelta(days=1 + i),
        )


async def _account(page: Any, live_server: str) -> dict[str, str]:
    account = await browser_signup(page)
    headers = await live_login(live_server, account["email"])
    async with httpx.AsyncClient(base_url=live_server) as http:
        me = (await http.get("/api/v1/auth/me", headers=headers)).json()
    return {"org": str(me["organization_id"]), "user": str(me["user"]["id"])}


async def _no_sideways_scroll(page: Any) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1, width


@pytest.mark.parametrize(
    ("language", "words"), [("pt-BR", "Previsão de receita"), ("en", "Revenue forecast")]
)
async def test_the_forecast_page_draws_its_chart_in_both_languages(
    page: Any, live_server: str, owner: sa.Engine, language: str, words: str
) -> None:
    ids = await _account(page, live_server)
    _history(owner, ids["org"], ids["user"])
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.context.add_cookies(
        [{"name": "lovedcrm_lang", "value": language, "url": live_server}]
    )
    await page.goto("/reports/forecast")
    await expect(page.locator("#forecast-h")).to_have_text(words)
    await expect(page.locator("[data-forecast-month]")).to_have_count(3)
    # The chart drew: Chart.js registered an instance on the canvas.
    drawn = await page.evaluate(
        "() => { const c = document.getElementById('forecast-chart');"
        " const chart = window.Chart && Chart.getChart(c);"
        " if (!chart) return null;"
        " return chart.data.datasets.map(d => d.data.filter(v => v !== null).length); }"
    )
    assert drawn is not None and drawn[0] >= 6 and drawn[-1] == 3, drawn
    table = page.locator("table.forecast-table tbody tr")
    await expect(table).to_have_count(3)
    await expect(page.locator("a[href='/reports/forecast.csv']")).to_be_visible()
    if language == "en":
        await expect(page.locator("table.forecast-table thead")).to_contain_text("80 % range")
    else:
        await expect(page.locator("table.forecast-table thead")).to_contain_text("Faixa de 80 %")
    await screenshot(page, f"forecast-1440-{language}")
    await page.set_viewport_size(PHONE)
    await page.wait_for_timeout(100)  # Chart.js resizes on the next frame
    await _no_sideways_scroll(page)
    await screenshot(page, f"forecast-390-{language}")
    assert errors == []


async def test_an_organization_with_no_history_sees_what_will_appear(
    page: Any, live_server: str
) -> None:
    await browser_signup(page)
    await page.goto("/reports/forecast")
    empty = page.locator("[data-forecast-empty]")
    await expect(empty).to_contain_text("Nenhum negócio foi ganho ou perdido ainda")
    await expect(page.locator("#forecast-chart")).to_have_count(0)
    await page.set_viewport_size(PHONE)
    await _no_sideways_scroll(page)
    await screenshot(page, "forecast-empty-390-pt-BR")
