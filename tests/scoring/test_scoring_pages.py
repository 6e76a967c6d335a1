"""Settings → Lead scoring and the lead page's score panel, as a person uses them."""

from __future__ import annotations

import json
import uuid

import httpx
import sqlalchemy as sa

from tests.factories import (
    csrf_token,
    owner_sql,
    session_headers,
    web_accept_invitation,
    web_login,
    web_signup,
)


async def _lead(client: httpx.AsyncClient, **fields: object) -> dict[str, object]:
    r = await client.post("/api/v1/leads", headers=await session_headers(client), json=fields)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_the_lead_page_loads_its_score_panel(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    lead = await _lead(client, full_name="Joana", source="referral", company="Ateliê")
    page = await client.get(f"/leads/{lead['id']}")
    assert f'hx-get="/leads/{lead["id"]}/score-panel"' in page.text
    panel = await client.get(f"/leads/{lead['id']}/score-panel")
    assert panel.status_code == 200
    assert 'data-factors="up"' in panel.text
    assert "Origem: indicação" in panel.text and "Empresa preenchida" in panel.text
    assert "Faltam 30 leads ganhos e 30 perdidos" in panel.text
    assert 'data-model="rules_based"' in panel.text
    missing = await client.get(f"/leads/{uuid.uuid4()}/score-panel")
    assert missing.status_code == 404 and "data-score-panel-missing" in missing.text


async def test_a_salesperson_gets_no_panel_for_someone_elses_lead(
    client: httpx.AsyncClient,
) -> None:
    admin_email, _, _ = await web_signup(client)
    lead = await _lead(client, full_name="Do admin", assigned_to=None)
    r = await client.post(
        "/api/v1/auth/login", json={"email": admin_email, "password": "s3nha-forte-demais"}
    )
    admin_headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    await web_accept_invitation(client, admin_headers, role="sales")
    panel = await client.get(f"/leads/{lead['id']}/score-panel")
    assert panel.status_code == 404
    page = await client.get("/settings/scoring")
    assert page.status_code == 200
    assert "Só administradores podem retreinar" in page.text
    assert "Retreinar agora" not in page.text  # no button for them
    r = await client.post(
        "/settings/scoring/rules",
        data={"csrf_token": await csrf_token(client, "/settings/scoring"), "base": "10"},
    )
    assert r.status_code in (403, 422)
    await web_login(client, admin_email)


async def test_settings_show_the_status_and_edit_the_rules(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    page = await client.get("/settings/scoring")
    assert page.status_code == 200
    assert 'href="/settings/scoring"' in page.text  # the tab
    assert "Ainda faltam: 30 ganhos e 30 perdidos" in page.text
    assert 'data-active-kind="rules_based"' in page.text
    assert "Retreinar agora" in page.text and "disabled" in page.text
    token = await csrf_token(client, "/settings/scoring")
    form = {
        "csrf_token": token,
        "base": "20",
        "stale_points": "-5",
        "per_message_in": "3",
        "per_activity": "1",
        "engagement_max": "15",
        "fast_reply_minutes": "30",
        "fast_reply_points": "8",
        "company_points": "4",
        "corporate_email_points": "6",
        "sources": "Feira = 25\nsite = 10",
        "value_bands": "5.000 = 5\n20000 = 12",
        "recency": "3 = 10\n14 = 4",
    }
    saved = await client.post("/settings/scoring/rules", data=form)
    assert saved.status_code == 303, saved.text
    rules = (
        await client.get("/api/v1/scoring/rules", headers=await session_headers(client))
    ).json()
    assert rules["base"] == 20 and {"source": "feira", "points": 25} in rules["sources"]
    assert rules["value_bands"] == [
        {"min_value": 5000, "points": 5},
        {"min_value": 20000, "points": 12},
    ]
    bad = await client.post(
        "/settings/scoring/rules", data={**form, "base": "muitos", "recency": "três dias"}
    )
    assert bad.status_code == 422
    assert "Digite um número inteiro." in bad.text
    assert "Uma linha por número de dias" in bad.text
    out_of_range = await client.post("/settings/scoring/rules", data={**form, "base": "500"})
    assert out_of_range.status_code == 422 and "fora do intervalo" in out_of_range.text
    retrain = await client.post("/settings/scoring/retrain", data={"csrf_token": token})
    assert retrain.status_code == 303  # refused, with the reason shown on the next page


async def test_settings_show_metrics_the_calibration_chart_and_history(
    client: httpx.AsyncClient, owner: sa.Engine
) -> None:
    _, org_name, _ = await web_signup(client)
    org = owner_sql(owner, "SELECT id FROM organizations WHERE name = :n", n=org_name)[0][0]
    reliability = [
        {
            "low": b / 10,
            "high": (b + 1) / 10,
            "count": 10,
            "predicted": b / 10 + 0.05,
            "observed": b / 10 + 0.04,
        }
        for b in range(10)
    ]
    config = {
        "status": "trained",
        "roc_auc": 0.91,
        "brier_score": 0.12,
        "calibration_error": 0.01,
        "metrics": {"roc_auc": 0.91, "brier": 0.12, "ece": 0.01, "rows": 100},
        "reliability": reliability,
        "comparison": {"promoted": True, "reason": "ranks recent outcomes better"},
    }
    # A trained model whose artifact is missing: refused, the rules score, the page says so.
    owner_sql(
        owner,
        "INSERT INTO lead_scoring_models (organization_id, model_name, model_version,"
        " model_type, config_data, is_active, training_completed_at)"
        " VALUES (:o, 'Gradient boosting (sigmoid)', '1', 'ml_model', CAST(:c AS jsonb), true,"
        " now())",
        o=org,
        c=json.dumps(config),
    )
    page = await client.get("/settings/scoring")
    assert page.status_code == 200
    assert "falhou na verificação de integridade" in page.text
    assert '<svg class="calibration-chart"' in page.text
    assert page.text.count('class="chart-point"') == 10
    assert 'data-metric="roc_auc">0.91<' in page.text
    assert "data-history" in page.text and "Gradient boosting (sigmoid)" in page.text
    assert "style=" not in page.text.split("<main", 1)[-1]  # no inline style (the CSP)
