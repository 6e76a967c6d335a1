"""The costs report (API, CSV, page) and the WhatsApp rate table."""

from __future__ import annotations

import csv
import io
import json
import uuid
from decimal import Decimal
from typing import Any

import httpx
import sqlalchemy as sa
from tests.factories import create_lead, csrf_token, join, login, owner_sql, signup, web_login

PERIOD = "2026-03"
AT = "2026-03-10T12:00:00+00:00"


async def _me(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get("/api/v1/auth/me", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _config(owner: sa.Engine, org: str, provider: str, rate: str | None, active: bool) -> str:
    cid = str(uuid.uuid4())
    owner_sql(
        owner,
        "INSERT INTO voip_configs (id, organization_id, provider_type, is_active, account_sid,"
        " auth_token, api_key, cost_per_minute, config_data) VALUES (CAST(:id AS uuid),"
        " CAST(:org AS uuid), :p, :a, :sid, :tok, :key, CAST(:rate AS numeric), '{}'::jsonb)",
        id=cid,
        org=org,
        p=provider,
        a=active,
        sid="AC123" if provider == "twilio" else None,
        tok="secret" if provider == "twilio" else None,
        key="KEY" if provider == "telnyx" else None,
        rate=rate,
    )
    return cid


def _call(
    owner: sa.Engine,
    org: str,
    user: str,
    provider: str,
    seconds: int,
    cost: str | None,
    currency: str = "USD",
    lead: str | None = None,
    at: str = AT,
    status: str = "completed",
) -> None:
    owner_sql(
        owner,
        "INSERT INTO call_logs (organization_id, lead_id, user_id, provider_type, direction,"
        " status, duration_seconds, cost_amount, cost_currency, created_at) VALUES"
        " (CAST(:org AS uuid), CAST(:lead AS uuid), CAST(:user AS uuid), :p, 'outbound', :s,"
        " :d, CAST(:c AS numeric), :cur, CAST(:at AS timestamptz))",
        org=org,
        lead=lead,
        user=user,
        p=provider,
        s=status,
        d=seconds,
        c=cost,
        cur=currency,
        at=at,
    )


def _message(
    owner: sa.Engine,
    org: str,
    user: str | None,
    lead: str | None,
    *,
    template: str | None = None,
    pricing: str | None = None,
    provider: str = "whatsapp_business",
    direction: str = "outbound",
    status: str = "delivered",
    at: str = AT,
) -> None:
    meta: dict[str, Any] = {}
    if user:
        meta["sent_by"] = user
    if template:
        meta["template"] = {"id": template}
    if pricing:
        meta["pricing"] = {"category": pricing}
    owner_sql(
        owner,
        "INSERT INTO messages (organization_id, lead_id, provider_type, direction, message_type,"
        " content, status, metadata, created_at) VALUES (CAST(:org AS uuid),"
        " CAST(:lead AS uuid), :p, :d, :t, 'oi', :s, CAST(:m AS jsonb),"
        " CAST(:at AS timestamptz))",
        org=org,
        lead=lead,
        p=provider,
        d=direction,
        t="template" if template else "text",
        s=status,
        m=json.dumps(meta),
        at=at,
    )


def _template(owner: sa.Engine, org: str, user: str, category: str) -> str:
    tid = str(uuid.uuid4())
    owner_sql(
        owner,
        "INSERT INTO message_templates (id, organization_id, created_by, name, category, content)"
        " VALUES (CAST(:id AS uuid), CAST(:org AS uuid), CAST(:u AS uuid), :n, :c, 'Oi')",
        id=tid,
        org=org,
        u=user,
        n=f"t-{tid[:6]}",
        c=category,
    )
    return tid


def _amounts(items: list[dict[str, Any]]) -> dict[str, Decimal]:
    return {i["currency"]: Decimal(i["amount"]) for i in items}


async def _organization(client: httpx.AsyncClient, owner: sa.Engine) -> dict[str, Any]:
    admin = await signup(client)
    me = await _me(client, admin["headers"])
    org, admin_id = str(me["organization_id"]), admin["user"]["id"]
    sales_email = await join(client, admin["headers"], "sales")
    sales_headers = await login(client, sales_email)
    sales_id = (await _me(client, sales_headers))["user"]["id"]
    lead = await create_lead(client, admin["headers"], source="google_ads")
    _config(owner, org, "twilio", "0.0140", True)
    _config(owner, org, "telnyx", "0.0070", False)
    # Admin: two Twilio calls (reported price; fallback-priced 61 s = 2 min) on a Google lead.
    _call(owner, org, admin_id, "twilio", 61, "0.02800", lead=lead["id"])
    _call(owner, org, admin_id, "twilio", 30, "0.01300", lead=lead["id"])
    # Sales: one Telnyx call priced in BRL (another currency), one call with no known cost.
    _call(owner, org, sales_id, "telnyx", 125, "0.10500", currency="BRL")
    _call(owner, org, sales_id, "telnyx", 10, None, status="in_progress")
    # Another month: not in the report.
    _call(owner, org, admin_id, "twilio", 600, "1.00000", at="2026-02-10T12:00:00+00:00")
    follow_up = _template(owner, org, admin_id, "follow_up")
    utility = _template(owner, org, admin_id, "utility")
    _message(owner, org, admin_id, lead["id"], template=follow_up)  # marketing (default)
    _message(owner, org, admin_id, lead["id"], template=utility)  # utility
    _message(owner, org, sales_id, None)  # a reply in the window: service
    _message(owner, org, sales_id, None, pricing="authentication")  # reported category
    _message(owner, org, admin_id, lead["id"], status="failed", template=follow_up)  # not billed
    _message(owner, org, None, lead["id"], direction="inbound")  # not billed
    _message(owner, org, admin_id, lead["id"], provider="whatsapp_web")  # not billed by Meta
    return {
        "admin": admin["headers"],
        "sales": sales_headers,
        "org": org,
        "admin_id": admin_id,
        "sales_id": sales_id,
    }


async def test_cost_report_groups_currencies_and_comparison(
    client: httpx.AsyncClient, owner: sa.Engine
) -> None:
    o = await _organization(client, owner)
    r = await client.get(
        "/api/v1/costs", params={"period": PERIOD, "group_by": "user"}, headers=o["admin"]
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["scope"] == "organization" and report["period"] == PERIOD
    rows = {row["key"]: row for row in report["rows"]}
    admin, sales = rows[o["admin_id"]], rows[o["sales_id"]]
    assert admin["label"] == "Ana Souza"
    assert admin["calls"] == 2 and admin["billed_minutes"] == 3
    assert _amounts(admin["voice"]) == {"USD": Decimal("0.041")}
    assert admin["messages"] == 2
    assert admin["messages_by_category"] == {
        "marketing": 1,
        "utility": 1,
        "authentication": 0,
        "service": 0,
    }
    # The default table: marketing 0.35 + utility 0.045 BRL.
    assert _amounts(admin["whatsapp"]) == {"BRL": Decimal("0.395")}
    assert _amounts(admin["total"]) == {"USD": Decimal("0.041"), "BRL": Decimal("0.395")}
    assert sales["calls"] == 2 and sales["unpriced_calls"] == 1
    assert _amounts(sales["voice"]) == {"BRL": Decimal("0.105")}
    assert sales["messages_by_category"]["service"] == 1
    assert sales["messages_by_category"]["authentication"] == 1
    # Totals per currency, never USD + BRL.
    totals = report["totals"]
    assert _amounts(totals["voice"]) == {"USD": Decimal("0.041"), "BRL": Decimal("0.105")}
    assert _amounts(totals["total"]) == {
        "USD": Decimal("0.041"),
        "BRL": Decimal("0.105") + Decimal("0.395") + Decimal("0.175"),
    }
    # The same calls on the other provider, from both configured rates.
    compare = {c["provider"]: c for c in report["comparisons"]}
    twilio = compare["twilio"]
    assert twilio["billed_minutes"] == 3
    assert Decimal(twilio["at_own_rate"]["amount"]) == Decimal("0.0420")
    [telnyx_alt] = twilio["alternatives"]
    assert telnyx_alt["provider"] == "telnyx" and telnyx_alt["configured"] is True
    assert Decimal(telnyx_alt["amount"]) == Decimal("0.0210")
    assert telnyx_alt["currency"] == "USD"


async def test_other_provider_not_configured_is_said_not_invented(
    client: httpx.AsyncClient, owner: sa.Engine
) -> None:
    admin = await signup(client)
    org = str((await _me(client, admin["headers"]))["organization_id"])
    _config(owner, org, "twilio", "0.0140", True)
    _call(owner, org, admin["user"]["id"], "twilio", 120, None)
    r = await client.get(
        "/api/v1/costs", params={"period": PERIOD, "group_by": "provider"}, headers=admin["headers"]
    )
    [compare] = r.json()["comparisons"]
    [alt] = compare["alternatives"]
    assert alt == {
        "provider": "telnyx",
        "configured": False,
        "currency": None,
        "cost_per_minute": None,
        "amount": None,
    }
    [row] = r.json()["rows"]
    assert row["key"] == "twilio" and row["unpriced_calls"] == 1 and row["voice"] == []


async def test_groupings_scope_and_csv(client: httpx.AsyncClient, owner: sa.Engine) -> None:
    o = await _organization(client, owner)
    by = {}
    for group in ("provider", "source", "month"):
        r = await client.get(
            "/api/v1/costs", params={"period": "2026", "group_by": group}, headers=o["admin"]
        )
        assert r.status_code == 200, r.text
        by[group] = {row["key"]: row for row in r.json()["rows"]}
    assert set(by["provider"]) >= {"twilio", "telnyx", "whatsapp_business"}
    assert by["source"]["google_ads"]["calls"] == 2
    assert by["source"][None]["calls"] == 3  # the sales calls and February's have no lead
    assert by["month"]["2026-02"]["calls"] == 1 and by["month"]["2026-03"]["calls"] == 4

    # A sales member sees only their own calls and messages.
    r = await client.get("/api/v1/costs", params={"period": PERIOD}, headers=o["sales"])
    mine = r.json()
    assert mine["scope"] == "own"
    assert [row["key"] for row in mine["rows"]] == [o["sales_id"]]
    assert mine["totals"]["calls"] == 2 and mine["totals"]["messages"] == 2

    r = await client.get(
        "/api/v1/costs",
        params={"period": PERIOD, "group_by": "provider", "format": "csv"},
        headers=o["admin"],
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(r.text)))
    total = [line for line in lines if line["provider"] == "total"]
    assert {line["currency"] for line in total} == {"USD", "BRL"}
    usd = next(line for line in total if line["currency"] == "USD")
    assert Decimal(usd["voice_cost"]) == Decimal("0.041")


async def test_bad_input_is_refused(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    h = admin["headers"]
    for params in ({"period": "2026-13"}, {"period": "march"}, {"group_by": "lead"}):
        r = await client.get("/api/v1/costs", params=params, headers=h)
        assert r.status_code == 422, (params, r.text)
    r = await client.put(
        "/api/v1/costs/whatsapp-rates", headers=h, json={"currency": "real", "rates": {}}
    )
    assert r.status_code == 422 and "currency" in r.text
    r = await client.put(
        "/api/v1/costs/whatsapp-rates",
        headers=h,
        json={"currency": "BRL", "rates": {"marketing": "-1"}},
    )
    assert r.status_code == 422 and "marketing" in r.text
    r = await client.put(
        "/api/v1/costs/whatsapp-rates",
        headers=h,
        json={"currency": "BRL", "rates": {"promo": "1"}},
    )
    assert r.status_code == 422


async def test_whatsapp_rate_table(client: httpx.AsyncClient, owner: sa.Engine) -> None:
    o = await _organization(client, owner)
    r = await client.get("/api/v1/costs/whatsapp-rates", headers=o["admin"])
    assert r.status_code == 200
    assert r.json()["customized"] is False and r.json()["currency"] == "BRL"
    r = await client.put(
        "/api/v1/costs/whatsapp-rates",
        headers=o["admin"],
        json={
            "currency": "BRL",
            "rates": {"marketing": "0.50", "utility": "0.10"},
            "template_categories": {"follow_up": "utility"},
        },
    )
    assert r.status_code == 200, r.text
    rates = r.json()
    assert rates["customized"] is True
    assert Decimal(rates["rates"]["marketing"]) == Decimal("0.50")
    assert Decimal(rates["rates"]["authentication"]) == Decimal("0.1750")  # kept
    # A sales member reads the table but cannot change it.
    r = await client.put(
        "/api/v1/costs/whatsapp-rates",
        headers=o["sales"],
        json={"currency": "BRL", "rates": {"marketing": "0"}},
    )
    assert r.status_code == 403
    # The report uses the new table and mapping: follow_up now bills as utility.
    r = await client.get("/api/v1/costs", params={"period": PERIOD}, headers=o["admin"])
    admin_row = next(row for row in r.json()["rows"] if row["key"] == o["admin_id"])
    assert admin_row["messages_by_category"]["utility"] == 2
    assert _amounts(admin_row["whatsapp"]) == {"BRL": Decimal("0.20")}
    [(action,)] = owner_sql(
        owner,
        "SELECT action FROM audit_logs WHERE organization_id = CAST(:o AS uuid)"
        " AND resource_type = 'whatsapp_rates'",
        o=o["org"],
    )
    assert action == "update"


async def test_costs_page_in_both_languages(client: httpx.AsyncClient, owner: sa.Engine) -> None:
    o = await _organization(client, owner)
    me = await _me(client, o["admin"])
    await web_login(client, me["user"]["email"])
    r = await client.get(
        "/reports/costs",
        params={"period": PERIOD, "group_by": "provider"},
    )
    assert r.status_code == 200, r.text
    page = r.text
    assert "Custos" in page and "Twilio" in page
    assert "Telnyx" in page and "US$" in page and "R$" in page
    assert 'data-alternative="telnyx"' in page
    csrf = await csrf_token(client, "/reports/costs")
    await client.post("/preferences/language", data={"csrf_token": csrf, "language": "en"})
    r = await client.get("/reports/costs", params={"period": PERIOD})
    assert r.status_code == 200
    assert "On the other provider" in r.text and "Costs" in r.text
    r = await client.get("/reports/costs", params={"period": "junk"})
    assert r.status_code == 422
    r = await client.get("/reports/costs", params={"period": PERIOD, "format": "csv"})
    assert r.status_code == 200 and r.text.startswith("period,user")
