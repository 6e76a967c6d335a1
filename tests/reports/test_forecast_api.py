"""The forecast of an organization on the real database: the API's numbers, the same on the
page, in the chart's data and in the CSV; a sales member's forecast of their own deals; the
calibrated probability and the stage's win rate; an organization with no history."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from lovedcrm.core.clock import ManualClock
from tests.factories import join, login, owner_sql, signup, web_login


async def _me(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get("/api/v1/auth/me", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _lead(owner: sa.Engine, org: str, who: str, stage: str, **row: Any) -> str:
    lead_id = str(uuid.uuid4())
    owner_sql(
        owner,
        "INSERT INTO leads (id, organization_id, full_name, stage_id, assigned_to,"
        " estimated_value, status, converted_at, lost_reason, created_at, updated_at,"
        " lead_score, probability_percentage, score_last_calculated_at)"
        " VALUES (:id, :o, 'Deal', :stage, :who, :value, :status, :conv, :reason, :created,"
        " :updated, :score, :prob, :scored)",
        id=lead_id,
        o=org,
        stage=stage,
        who=who,
        value=row.get("value"),
        status=row["status"],
        conv=row.get("converted_at"),
        reason="price" if row["status"] == "lost" else None,
        created=row["created_at"],
        updated=row.get("updated_at", row["created_at"]),
        score=row.get("score", 0),
        prob=row.get("probability", 0),
        scored=row.get("scored_at"),
    )
    return lead_id


def _history(owner: sa.Engine, org: str, who: str, stages: list[str], now: Any, won: int, lost: int,
             open_: int) -> None:  # fmt: skip
    """Closed deals over the last half year (10 days from opening to close, moved from the
    first stage to the second), and deals opened two days ago in the first stage."""
    for i in range(won + lost):
        closed = now - timedelta(days=3 + (i * 180) // (won + lost))
        created = closed - timedelta(days=10)
        if i < won:
            lead = _lead(owner, org, who, stages[1], status="converted", value=1000,
                         created_at=created, converted_at=closed)  # fmt: skip
        else:
            lead = _lead(owner, org, who, stages[1], status="lost", created_at=created,
                         updated_at=closed)  # fmt: skip
        owner_sql(
            owner,
            "INSERT INTO lead_activities (organization_id, lead_id, activity_type, title,"
            " metadata, created_at) VALUES (:o, :l, 'stage_change', 'x',"
            " jsonb_build_object('from_stage_id', CAST(:f AS text), 'to_stage_id',"
            " CAST(:t AS text)), :at)",
            o=org,
            l=lead,
            f=stages[0],
            t=stages[1],
            at=created + timedelta(days=1),
        )
    for _ in range(open_):
        _lead(owner, org, who, stages[0], status="active", value=2000,
              created_at=now - timedelta(days=2))  # fmt: skip


async def _organization(
    client: httpx.AsyncClient, owner: sa.Engine, clock: ManualClock
) -> dict[str, Any]:
    admin = await signup(client)
    me = await _me(client, admin["headers"])
    org = str(me["organization_id"])
    sales_email = await join(client, admin["headers"], "sales")
    sales_headers = await login(client, sales_email)
    sales_id = str((await _me(client, sales_headers))["user"]["id"])
    stages = [
        str(r[0])
        for r in owner_sql(
            owner,
            "SELECT id FROM pipeline_stages WHERE organization_id = :o ORDER BY stage_order",
            o=org,
        )
    ]
    now = clock.now()
    _history(owner, org, str(me["user"]["id"]), stages, now, won=30, lost=20, open_=10)
    _history(owner, org, sales_id, stages, now, won=6, lost=4, open_=3)
    # One open deal of the admin's scored by a trained (calibrated) model: 70 %.
    _lead(owner, org, str(me["user"]["id"]), stages[0], status="active", value=5000,
          created_at=now - timedelta(days=2), score=70, probability=70,
          scored_at=now)  # fmt: skip
    # ...which is the organization's active trained model, in charge since yesterday.
    owner_sql(
        owner,
        "INSERT INTO lead_scoring_models (organization_id, model_name, model_version,"
        " model_type, config_data, scoring_factors, is_active, training_completed_at,"
        " updated_at) VALUES (:o, 'trained', '1', 'ml_model', '{}', '{}', true, :t, :t)",
        o=org,
        t=now - timedelta(days=1),
    )
    return {
        "admin": admin,
        "sales_headers": sales_headers,
        "sales_email": sales_email,
        "org": org,
        "stages": stages,
    }


async def test_the_forecast_api_for_managers_and_for_a_sales_member(
    client: httpx.AsyncClient, owner: sa.Engine, manual_clock: ManualClock
) -> None:
    built = await _organization(client, owner, manual_clock)
    r = await client.get("/api/v1/reports/forecast", headers=built["admin"]["headers"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    assert (body["open_deals"], body["closed_deals"], body["won_deals"]) == (14, 60, 36)
    assert body["win_rate"] == 0.6
    assert body["calibrated_deals"] == 1 and body["stage_rate_deals"] == 13
    assert body["currency"] == "BRL"
    assert len(body["months"]) == 3
    for m in body["months"]:
        assert m["low95"] <= m["low80"] <= m["high80"] <= m["high95"]
        assert m["expected"] >= m["already_won"]
    # Every open deal is 2 days old and deals close after 10: within this month or the next.
    opened_total = sum(m["from_open_deals"] for m in body["months"])
    assert abs(opened_total - (13 * 0.6 * 2000 + 0.7 * 5000)) < 0.1 * opened_total
    assert sum(h["deals"] for h in body["history"]) == 36
    assert sum(h["revenue"] for h in body["history"]) == 36_000

    r = await client.get("/api/v1/reports/forecast", headers=built["sales_headers"])
    assert r.status_code == 200, r.text
    mine = r.json()
    assert (mine["open_deals"], mine["closed_deals"], mine["won_deals"]) == (3, 10, 6)
    assert sum(h["revenue"] for h in mine["history"]) == 6000
    assert mine["calibrated_deals"] == 0

    # The same request twice the same day: the same numbers (a seeded simulation).
    again = await client.get("/api/v1/reports/forecast", headers=built["sales_headers"])
    assert again.json() == mine


async def test_the_page_the_chart_and_the_csv_show_the_apis_numbers(
    client: httpx.AsyncClient, owner: sa.Engine, manual_clock: ManualClock
) -> None:
    built = await _organization(client, owner, manual_clock)
    await web_login(client, built["sales_email"])
    api = (await client.get("/api/v1/reports/forecast", headers=built["sales_headers"])).json()
    page = await client.get("/reports/forecast")
    assert page.status_code == 200
    text = page.text
    assert "Previsão de receita" in text and "NaN" not in text
    assert "{# tabs: included by the lead at integration #}" not in text
    match = re.search(r'data-chart="([^"]+)"', text)
    assert match is not None
    chart = json.loads(html.unescape(match.group(1)))
    assert chart["forecast"] == api["months"]
    assert [h["month"] for h in chart["history"]] == [h["month"] for h in api["history"]]
    for m in api["months"]:
        assert f'data-forecast-month="{m["month"]}"' in text
        assert f'data-expected="{m["expected"]}"' in text
    assert '<script src="/static/forecast.js" defer></script>' in text
    assert "<script>" not in text  # the CSP allows no inline script

    r = await client.get("/reports/forecast.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    forecast_rows = [row for row in rows if row["kind"] == "forecast"]
    assert [row["month"] for row in forecast_rows] == [m["month"] for m in api["months"]]
    for row, m in zip(forecast_rows, api["months"], strict=True):
        assert float(row["expected"]) == round(m["expected"], 2)
        assert float(row["low80"]) == round(m["low80"], 2)
        assert float(row["high95"]) == round(m["high95"], 2)
    assert sum(float(row["won"]) for row in rows if row["kind"] == "won") == 6000


async def test_an_organization_with_no_history_gets_an_empty_state(
    client: httpx.AsyncClient, manual_clock: ManualClock
) -> None:
    admin = await signup(client)
    await client.post("/api/v1/leads", headers=admin["headers"], json={"full_name": "Only open"})
    r = await client.get("/api/v1/reports/forecast", headers=admin["headers"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "no_history"
    assert body["months"] == [] and body["history"] == [] and body["win_rate"] is None
    assert body["open_deals"] == 1
    await web_login(client, admin["email"])
    page = await client.get("/reports/forecast")
    assert page.status_code == 200
    assert "Nenhum negócio foi ganho ou perdido ainda" in page.text
    assert "data-chart" not in page.text and "NaN" not in page.text
    assert "/reports/forecast.csv" not in page.text


async def test_the_forecast_needs_a_signed_in_member(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/reports/forecast")
    assert r.status_code == 401
