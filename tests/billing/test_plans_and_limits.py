"""Plans, the trial, limits and features, enforced from one function (issue 18)."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa

from lovedcrm.db.engine import Database
from tests.billing.conftest import enforce, web_org
from tests.factories import create_lead, invite, owner_sql


async def test_signup_starts_a_14_day_trial_of_pro(
    client: httpx.AsyncClient, org: dict[str, Any]
) -> None:
    r = await client.get("/api/v1/billing/subscription", headers=org["headers"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["plan"] == "pro"
    assert body["status"] == "trialing"
    assert body["trial_days_left"] in (14, 15)
    assert body["enforced"] is False  # the installation's default: billing off
    assert {u["limit"] for u in body["usage"]} == {
        "seats", "leads", "whatsapp_numbers", "ai_tokens_month", "call_minutes_month",
        "api_calls_month",
    }  # fmt: skip


async def test_billing_off_means_no_limit_and_every_feature(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database
) -> None:
    # Starter allows no calls and no API; with billing off nothing is refused.
    r = await client.get("/api/v1/calls", headers=org["headers"])
    assert r.status_code == 200, r.text
    r = await client.get("/api/v1/scoring/models", headers=org["headers"])
    assert r.status_code != 403


async def test_plans_are_listed_with_prices_limits_and_features(
    client: httpx.AsyncClient, org: dict[str, Any]
) -> None:
    r = await client.get("/api/v1/billing/plans", headers=org["headers"])
    assert r.status_code == 200
    by_key = {p["key"]: p for p in r.json()}
    assert list(by_key) == ["starter", "pro", "enterprise"]
    prices = {(p["currency"], p["cycle"]) for p in by_key["pro"]["prices"]}
    assert prices == {("BRL", "monthly"), ("BRL", "yearly"), ("USD", "monthly"), ("USD", "yearly")}
    assert by_key["enterprise"]["limits"]["leads"] is None
    assert "calls" not in by_key["starter"]["features"]


async def test_lead_limit_refused_with_plan_limit_and_usage(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database
) -> None:
    await enforce(database, org["org_id"], "pro", limit__leads="2")
    h = org["headers"]
    await create_lead(client, h, full_name="One")
    await create_lead(client, h, full_name="Two")
    r = await client.post("/api/v1/leads", headers=h, json={"full_name": "Three"})
    assert r.status_code == 402, r.text
    body = r.json()
    assert body["code"] == "plan_limit_reached"
    assert body["plan"] == "pro"
    assert body["limit"] == "leads"
    assert body["usage"] == 2
    assert body["allowed"] == 2
    assert body["upgrade_url"] == "/settings/billing"


async def test_soft_limit_warns_admins_once(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database, owner: sa.Engine
) -> None:
    await enforce(database, org["org_id"], "pro", limit__leads="5")
    for i in range(5):
        await create_lead(client, org["headers"], full_name=f"Lead {i}")
    rows = owner_sql(
        owner,
        "SELECT changes FROM audit_logs WHERE organization_id = :o AND action = 'plan.soft_limit'",
        o=org["org_id"],
    )
    assert len(rows) == 1
    assert rows[0].changes["allowed"] == 5
    # …and told in the notification centre (once, with the way to billing), in their words.
    r = await client.get(
        "/api/v1/notifications", headers={**org["headers"], "Accept-Language": "pt-BR"}
    )
    near = [n for n in r.json()["items"] if n["notification_type"] == "plan_limit_near"]
    assert len(near) == 1 and near[0]["link"] == "/settings/billing", r.json()
    assert near[0]["data"]["allowed"] == 5
    r = await client.get("/settings/billing", headers=org["headers"])
    r = await client.get("/api/v1/billing/usage", headers=org["headers"])
    leads = next(u for u in r.json() if u["limit"] == "leads")
    assert leads["warning"] is True and leads["percent"] == 100


async def test_seat_limit_counts_members_and_pending_invitations(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database
) -> None:
    await enforce(database, org["org_id"], "pro", limit__seats="2")
    await invite(client, org["headers"], "sales")  # owner + 1 pending = 2
    r = await client.post(
        "/api/v1/invitations",
        headers=org["headers"],
        json={"email": "x@example.com", "role": "sales"},
    )
    assert r.status_code == 402, r.text
    assert r.json()["limit"] == "seats"
    assert r.json()["usage"] == 2


async def test_whatsapp_number_limit(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database
) -> None:
    await enforce(database, org["org_id"], "starter")  # one number
    h = org["headers"]
    r = await client.post("/api/v1/whatsapp/configs", headers=h, json={"provider_type": "sandbox"})
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/whatsapp/configs", headers=h, json={"provider_type": "sandbox"})
    assert r.status_code == 402, r.text
    assert r.json()["limit"] == "whatsapp_numbers"


async def test_call_minutes_limit(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database
) -> None:
    await enforce(database, org["org_id"], "pro", limit__call_minutes_month="0")
    lead = await create_lead(client, org["headers"], full_name="Caller", phone="+5511988887777")
    r = await client.post("/api/v1/calls", headers=org["headers"], json={"lead_id": lead["id"]})
    assert r.status_code == 402, r.text
    assert r.json()["limit"] == "call_minutes_month"


async def test_feature_off_refuses_its_routes(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database
) -> None:
    await enforce(database, org["org_id"], "starter")
    r = await client.get("/api/v1/calls", headers=org["headers"])
    assert r.status_code == 403
    assert r.json()["code"] == "feature_not_in_plan"
    assert r.json()["feature"] == "calls"
    assert r.json()["plan"] == "starter"
    # Leads are in every plan; billing itself is never gated.
    assert (await client.get("/api/v1/leads", headers=org["headers"])).status_code == 200
    assert (
        await client.get("/api/v1/billing/subscription", headers=org["headers"])
    ).status_code == 200


async def test_operator_flag_turns_a_feature_on_without_restart(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database
) -> None:
    await enforce(database, org["org_id"], "starter", calls="on")
    assert (await client.get("/api/v1/calls", headers=org["headers"])).status_code == 200
    await enforce(database, org["org_id"], calls="default")
    assert (await client.get("/api/v1/calls", headers=org["headers"])).status_code == 403


async def test_api_key_needs_the_api_feature(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database
) -> None:
    r = await client.post(
        "/api/v1/api-keys", headers=org["headers"], json={"name": "zap", "scopes": ["leads:read"]}
    )
    assert r.status_code == 201, r.text
    key = {"Authorization": f"Bearer {r.json()['key']}"}
    assert (await client.get("/api/v1/leads", headers=key)).status_code == 200
    await enforce(database, org["org_id"], "starter")
    r = await client.get("/api/v1/leads", headers=key)
    assert r.status_code == 403
    assert r.json()["code"] == "feature_not_in_plan"
    assert r.json()["feature"] == "api"


async def test_checkout_of_unknown_plan_is_422(
    client: httpx.AsyncClient, org: dict[str, Any]
) -> None:
    r = await client.post(
        "/api/v1/billing/checkout", headers=org["headers"], json={"plan": "platinum"}
    )
    assert r.status_code == 422


async def test_downgrade_below_usage_lists_what_to_remove(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database
) -> None:
    for _ in range(3):
        await invite(client, org["headers"], "sales")
    from tests.factories import join

    for _ in range(3):
        await join(client, org["headers"], "sales")
    r = await client.post(
        "/api/v1/billing/checkout", headers=org["headers"], json={"plan": "starter"}
    )
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["code"] == "downgrade_below_usage"
    seats = next(b for b in body["blockers"] if b["limit"] == "seats")
    assert seats["allowed"] == 3 and seats["used"] >= 4 and seats["remove"] == seats["used"] - 3


async def test_sandbox_checkout_activates_the_plan(
    client: httpx.AsyncClient, org: dict[str, Any]
) -> None:
    h = org["headers"]
    r = await client.post("/api/v1/billing/checkout", headers=h, json={"plan": "enterprise"})
    assert r.status_code == 201, r.text
    assert r.json()["url"].startswith("/billing/sandbox/checkout?plan=enterprise")


async def test_the_page_shows_a_limit_refusal(
    client: httpx.AsyncClient, database: Database
) -> None:
    from tests.factories import csrf_token

    await enforce(database, await web_org(client), "pro", limit__leads="0")
    token = await csrf_token(client, "/leads/new")
    r = await client.post(
        "/leads",
        data={"csrf_token": token, "full_name": "Blocked"},
        headers={"Accept-Language": "pt-BR"},
    )
    assert r.status_code == 402, r.text[:500]
    # The form comes back with the reason in the reader's words, naming the way to upgrade.
    assert "Faturamento" in r.text
    assert "Your plan" not in r.text


async def test_api_calls_limit_refuses_api_keys_from_the_metered_figure(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database, owner: sa.Engine
) -> None:
    r = await client.post(
        "/api/v1/api-keys", headers=org["headers"], json={"name": "zap", "scopes": ["leads:read"]}
    )
    key = {"Authorization": f"Bearer {r.json()['key']}"}
    await enforce(database, org["org_id"], "pro", limit__api_calls_month="5")
    assert (await client.get("/api/v1/leads", headers=key)).status_code == 200
    owner_sql(
        owner,
        "INSERT INTO usage_metrics (organization_id, metric_type, metric_value, period_start,"
        " period_end) VALUES (:o, 'api_calls', 5, date_trunc('month', now()),"
        " date_trunc('month', now()) + interval '1 month')",
        o=org["org_id"],
    )
    await enforce(database, org["org_id"])  # drops the cache, as CACHE_SECONDS would
    r = await client.get("/api/v1/leads", headers=key)
    assert r.status_code == 402
    assert (r.json()["code"], r.json()["limit"], r.json()["usage"]) == (
        "plan_limit_reached", "api_calls_month", 5,
    )  # fmt: skip
    # People signed in are not API calls.
    assert (await client.get("/api/v1/leads", headers=org["headers"])).status_code == 200


def test_production_refuses_plans_enforced_with_the_sandbox_checkout() -> None:
    """The sandbox checkout "pays" with no money: in production it is closed, and enforcing
    plans with it is refused at start-up (any admin could take any plan)."""
    import pytest
    from pydantic import SecretStr, ValidationError

    from lovedcrm.billing import service as billing_service
    from lovedcrm.config import Settings

    production: dict[str, Any] = {
        "env": "production",
        "secret_key": SecretStr("p" * 40),
        "encryption_key": SecretStr("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
        "database_url": "postgresql://db/lovedcrm",
    }
    with pytest.raises(ValidationError, match="LOVEDCRM_BILLING_PROVIDER=stripe"):
        Settings(**production, billing_enabled=True, billing_provider="sandbox")
    off = Settings(**production, billing_enabled=False, billing_provider="sandbox")
    assert not billing_service.sandbox_checkout_open(off)
    assert billing_service.sandbox_checkout_open(Settings(billing_provider="sandbox"))
    assert not billing_service.sandbox_checkout_open(Settings(billing_provider="stripe"))
