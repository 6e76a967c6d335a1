"""Facebook Lead Ads and Google Ads lead forms into the pipeline: verified webhooks, the lead
fetched from the (loopback fake) Graph API, the duplicate and assignment rules, the WhatsApp
welcome, replays, Graph errors, the form mapping, the 90-day backfill and ROI."""

from __future__ import annotations

import json
from typing import Any

import httpx

from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from tests.factories import activate_sandbox, create_lead, create_template, web_login
from tests.fakes.graph_fake import (
    PAGE_TOKEN,
    VERIFY_TOKEN,
    FakeLeadAdsGraph,
    google_lead_form,
    hub_signature,
    leadgen_webhook,
)
from tests.marketing.conftest import (
    connect_facebook,
    connect_google,
    owner_rows,
    run_marketing,
)


async def _post_leadgen(
    client: httpx.AsyncClient, integration_id: str, body: bytes, signature: str | None
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-hub-signature-256"] = signature
    return await client.post(f"/webhooks/marketing/{integration_id}", content=body, headers=headers)


async def _deliver(
    client: httpx.AsyncClient, integration_id: str, leadgen_id: str, **kw: Any
) -> None:
    """A signed leadgen webhook for ``leadgen_id``, accepted."""
    body = leadgen_webhook(leadgen_id, **kw)
    r = await _post_leadgen(client, integration_id, body, hub_signature(body))
    assert r.status_code == 200, r.text


async def test_connect_masks_secrets_and_answers_the_subscription_check(
    client: httpx.AsyncClient, org: dict[str, Any], graph: FakeLeadAdsGraph
) -> None:
    fb = await connect_facebook(client, org["headers"], graph)
    assert PAGE_TOKEN not in json.dumps(fb)
    assert fb["access_token"].endswith(PAGE_TOKEN[-4:]) and fb["access_token"].startswith("•")
    assert fb["secrets"]["app_secret"].startswith("•")
    assert fb["webhook_url"].endswith(f"/webhooks/marketing/{fb['id']}")
    url = f"/webhooks/marketing/{fb['id']}"
    ok = await client.get(
        url,
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": VERIFY_TOKEN,
            "hub.challenge": "1158201444",
        },
    )
    assert ok.status_code == 200 and ok.text == "1158201444"
    wrong = await client.get(
        url, params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "x"}
    )
    assert wrong.status_code == 403


async def test_a_signed_leadgen_webhook_becomes_one_assigned_lead_with_a_welcome_queued(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    graph: FakeLeadAdsGraph,
    database: Database,
    settings: Settings,
) -> None:
    await activate_sandbox(client, org["headers"])
    template = await create_template(
        client,
        org["headers"],
        name="Boas-vindas",
        content="Oi {{first_name}}! Recebemos seu cadastro.",
    )
    fb = await connect_facebook(client, org["headers"], graph, welcome_template_id=template["id"])
    graph.add_lead(
        "L-100",
        full_name="Carla Dias",
        email="carla@example.com",
        phone_number="+5511987650001",
    )
    body = leadgen_webhook("L-100")
    r = await _post_leadgen(client, fb["id"], body, hub_signature(body))
    assert r.status_code == 200, r.text
    assert r.json()["new"] == 1
    await run_marketing(database, settings)

    leads = owner_rows(
        database,
        "SELECT id, full_name, email, phone, source, assigned_to FROM leads"
        " WHERE organization_id = :org AND source = 'facebook_ads'",
        org=org["org_id"],
    )
    assert len(leads) == 1
    lead = leads[0]
    assert (lead.full_name, lead.email, lead.phone) == (
        "Carla Dias",
        "carla@example.com",
        "+5511987650001",
    )
    sales = owner_rows(database, "SELECT id FROM users WHERE email = :e", e=org["sales_id"])
    assert lead.assigned_to == sales[0].id  # the round-robin rule picked the sales member
    welcome = owner_rows(
        database,
        "SELECT content, status FROM messages WHERE lead_id = :lead AND direction = 'outbound'",
        lead=lead.id,
    )
    assert len(welcome) == 1 and "Carla" in welcome[0].content
    assert graph.requests_to("/v21.0/L-100")  # fetched from the Graph API

    # Attribution: on the receipt, visible through the API (per lead and per campaign).
    r = await client.get(f"/api/v1/marketing/leads/{lead.id}/attribution", headers=org["headers"])
    assert r.status_code == 200
    (receipt,) = r.json()
    assert (receipt["campaign_id"], receipt["adset_id"], receipt["ad_id"]) == (
        "cmp-1",
        "adset-1",
        "ad-1",
    )
    r = await client.get(
        "/api/v1/marketing/ad-leads", headers=org["headers"], params={"campaign_id": "cmp-1"}
    )
    assert [x["lead_id"] for x in r.json()] == [str(lead.id)]
    # ... and on the lead's page, whose attribution panel names the campaign and the ad.
    await web_login(client, org["email"])
    page = await client.get(f"/leads/{lead.id}")
    assert f'hx-get="/marketing/leads/{lead.id}/attribution"' in page.text
    panel = await client.get(f"/marketing/leads/{lead.id}/attribution")
    assert panel.status_code == 200 and "Campanha Verão" in panel.text and "ad-1" in panel.text
    r = await client.get("/api/v1/leads", headers=org["headers"], params={"source": "facebook_ads"})
    assert [x["id"] for x in r.json()["items"]] == [str(lead.id)]

    # A replay (the same leadgen id again) stores nothing new and makes no duplicate.
    r = await _post_leadgen(client, fb["id"], body, hub_signature(body))
    assert r.status_code == 200 and r.json()["new"] == 0
    await run_marketing(database, settings)
    count = owner_rows(
        database, "SELECT count(*) FROM leads WHERE organization_id = :org", org=org["org_id"]
    )
    assert count[0][0] == 1


async def test_wrong_or_missing_signature_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, org: dict[str, Any], graph: FakeLeadAdsGraph, database: Database
) -> None:
    fb = await connect_facebook(client, org["headers"], graph)
    body = leadgen_webhook("L-200")
    assert (await _post_leadgen(client, fb["id"], body, None)).status_code == 401
    assert (
        await _post_leadgen(client, fb["id"], body, hub_signature(body, "other-secret"))
    ).status_code == 403
    tampered = body.replace(b"L-200", b"L-201")
    assert (await _post_leadgen(client, fb["id"], tampered, hub_signature(body))).status_code == 403
    rows = owner_rows(
        database,
        "SELECT count(*) FROM ad_lead_receipts WHERE organization_id = :org",
        org=org["org_id"],
    )
    assert rows[0][0] == 0
    jobs = owner_rows(
        database,
        "SELECT count(*) FROM background_jobs"
        " WHERE organization_id = :org AND job_type LIKE 'marketing.%'",
        org=org["org_id"],
    )
    assert jobs[0][0] == 0
    # Signed, but the organization's plan leaves marketing out: refused, nothing stored.
    from tests.billing.conftest import enforce

    await enforce(database, org["org_id"], "starter")
    r = await _post_leadgen(client, fb["id"], body, hub_signature(body))
    assert r.status_code == 403 and r.json()["code"] == "feature_not_in_plan", r.text
    assert r.json()["feature"] == "marketing"
    rows = owner_rows(
        database,
        "SELECT count(*) FROM ad_lead_receipts WHERE organization_id = :org",
        org=org["org_id"],
    )
    assert rows[0][0] == 0


async def test_an_existing_lead_gets_the_attribution_not_a_duplicate(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    graph: FakeLeadAdsGraph,
    database: Database,
    settings: Settings,
) -> None:
    existing = await create_lead(
        client, org["headers"], full_name="Paulo Reis", email="paulo@example.com"
    )
    fb = await connect_facebook(client, org["headers"], graph)
    graph.add_lead("L-300", full_name="Paulo R.", email="PAULO@example.com")
    await _deliver(client, fb["id"], "L-300")
    await run_marketing(database, settings)
    receipt = owner_rows(
        database, "SELECT lead_id, status FROM ad_lead_receipts WHERE provider_lead_id = 'L-300'"
    )
    assert str(receipt[0].lead_id) == existing["id"] and receipt[0].status == "imported"
    count = owner_rows(
        database, "SELECT count(*) FROM leads WHERE organization_id = :org", org=org["org_id"]
    )
    assert count[0][0] == 1


async def test_graph_errors_are_retried_then_shown_on_the_integration(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    graph: FakeLeadAdsGraph,
    database: Database,
    settings: Settings,
) -> None:
    fb = await connect_facebook(client, org["headers"], graph)
    graph.add_lead("L-400", full_name="Rita", email="rita@example.com")
    graph.fail_next(500, 2, times=2)  # two transient failures, then it works
    await _deliver(client, fb["id"], "L-400")
    await run_marketing(database, settings)
    assert len(graph.requests_to("/v21.0/L-400")) == 3
    assert (
        owner_rows(
            database, "SELECT status FROM ad_lead_receipts WHERE provider_lead_id = 'L-400'"
        )[0][0]
        == "imported"
    )

    graph.fail_next(500, 2, times=10)  # never works: after the last attempt, a visible error
    await _deliver(client, fb["id"], "L-401")
    await run_marketing(database, settings)
    r = await client.get("/api/v1/marketing/integrations", headers=org["headers"])
    (row,) = r.json()
    assert row["sync_status"] == "error" and "500" in row["sync_error"]
    await web_login(client, org["email"])
    page = await client.get("/marketing/integrations")
    assert page.status_code == 200 and "data-sync-error" in page.text


async def test_a_google_lead_form_the_same_way_with_test_leads_kept_apart(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    database: Database,
    settings: Settings,
) -> None:
    google = await connect_google(client, org["headers"], "g-key-123456")
    url = f"/webhooks/marketing/{google['id']}"
    form = google_lead_form(
        "G-1",
        "g-key-123456",
        FULL_NAME="Jane Doe",
        EMAIL="jane@example.com",
        PHONE_NUMBER="+5511912340000",
    )
    wrong = dict(form, google_key="g-key-wrong")
    assert (await client.post(url, json=wrong)).status_code == 403
    assert (
        await client.post(url, json={k: v for k, v in form.items() if k != "google_key"})
    ).status_code == 401
    assert (
        owner_rows(
            database,
            "SELECT count(*) FROM ad_lead_receipts WHERE organization_id = :o",
            o=org["org_id"],
        )[0][0]
        == 0
    )
    assert (await client.post(url, json=form)).status_code == 200
    assert (await client.post(url, json=form)).json()["new"] == 0  # replay
    test_form = google_lead_form(
        "G-2", "g-key-123456", is_test=True, FULL_NAME="Test Lead", EMAIL="t@example.com"
    )
    assert (await client.post(url, json=test_form)).status_code == 200
    await run_marketing(database, settings)
    leads = owner_rows(
        database,
        "SELECT full_name, assigned_to FROM leads WHERE organization_id = :o",
        o=org["org_id"],
    )
    assert [(x.full_name, x.assigned_to is not None) for x in leads] == [("Jane Doe", True)]
    statuses = dict(
        owner_rows(
            database,
            "SELECT provider_lead_id, status FROM ad_lead_receipts WHERE organization_id = :o",
            o=org["org_id"],
        )
    )
    assert statuses == {"G-1": "imported", "G-2": "test"}


async def test_form_mapping_custom_field_consent_and_preview(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    graph: FakeLeadAdsGraph,
    database: Database,
    settings: Settings,
) -> None:
    fb = await connect_facebook(client, org["headers"], graph)
    graph.add_lead(
        "L-500",
        form_id="form-9",
        full_name="Bruno",
        email="bruno@example.com",
        cidade="Recife",
        aceito_emails="Sim",
    )
    await _deliver(client, fb["id"], "L-500", form_id="form-9")
    await run_marketing(database, settings)
    r = await client.get(f"/api/v1/marketing/integrations/{fb['id']}/forms", headers=org["headers"])
    (form,) = r.json()
    assert form["form_id"] == "form-9" and form["sample"]["cidade"] == "Recife"
    assert form["preview"] == {"full_name": "Bruno", "email": "bruno@example.com"}
    r = await client.put(
        f"/api/v1/marketing/integrations/{fb['id']}/forms/form-9/mapping",
        headers=org["headers"],
        json={"mapping": {"cidade": "company", "aceito_emails": "consent"}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["preview"]["company"] == "Recife"
    bad = await client.put(
        f"/api/v1/marketing/integrations/{fb['id']}/forms/form-9/mapping",
        headers=org["headers"],
        json={"mapping": {"cidade": "password"}},
    )
    assert bad.status_code == 422
    graph.add_lead(
        "L-501",
        form_id="form-9",
        full_name="Célia",
        email="celia@example.com",
        cidade="Natal",
        aceito_emails="Sim",
    )
    await _deliver(client, fb["id"], "L-501", form_id="form-9")
    await run_marketing(database, settings)
    lead = owner_rows(database, "SELECT id, company FROM leads WHERE email = 'celia@example.com'")[
        0
    ]
    assert lead.company == "Natal"
    consent = owner_rows(
        database, "SELECT purpose, status, source FROM lead_consents WHERE lead_id = :l", l=lead.id
    )
    assert [tuple(c) for c in consent] == [("email_marketing", "granted", "ads:facebook")]
    await web_login(client, org["email"])
    page = await client.get(f"/marketing/integrations/{fb['id']}/forms")
    assert page.status_code == 200 and "form-9" in page.text


async def test_backfill_of_the_last_90_days_is_paged_and_skips_known_leads(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    graph: FakeLeadAdsGraph,
    database: Database,
    settings: Settings,
) -> None:
    fb = await connect_facebook(client, org["headers"], graph)
    for n in range(5):
        graph.add_lead(f"B-{n}", full_name=f"Back {n}", email=f"back{n}@example.com")
    body = leadgen_webhook("B-0")  # one already arrived by webhook
    assert (await _post_leadgen(client, fb["id"], body, hub_signature(body))).status_code == 200
    r = await client.post(
        f"/api/v1/marketing/integrations/{fb['id']}/backfill", headers=org["headers"]
    )
    assert r.status_code == 202 and r.json()["queued"] is True
    await run_marketing(database, settings)
    assert len(graph.requests_to("/v21.0/form-1/leads")) == 3  # 5 leads, 2 per page
    emails = {
        r[0]
        for r in owner_rows(
            database, "SELECT email FROM leads WHERE organization_id = :o", o=org["org_id"]
        )
    }
    assert emails == {f"back{n}@example.com" for n in range(5)}


async def test_roi_from_a_spend_csv(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    graph: FakeLeadAdsGraph,
    database: Database,
    settings: Settings,
) -> None:
    fb = await connect_facebook(client, org["headers"], graph)
    for n in range(4):
        graph.add_lead(f"R-{n}", full_name=f"Roi {n}", email=f"roi{n}@example.com")
        await _deliver(client, fb["id"], f"R-{n}")
    await run_marketing(database, settings)
    owner_rows(
        database,
        "UPDATE leads SET status = 'converted', converted_at = now(), estimated_value = 1500"
        " WHERE email = 'roi0@example.com'",
    )
    csv = (
        "date,campaign_id,campaign_name,amount\n"
        '2026-11-01,cmp-1,Campanha Verão,"100,00"\n'
        "2026-11-02,cmp-1,,300\n"
        "2026-11-02,cmp-2,Outra,50\n"
    )
    r = await client.post(
        "/api/v1/marketing/spend",
        headers=org["headers"],
        files={"file": ("spend.csv", csv.encode(), "text/csv")},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"rows": 3}
    bad = await client.post(
        "/api/v1/marketing/spend",
        headers=org["headers"],
        files={
            "file": ("spend.csv", b"date,campaign_id,amount\nnot-a-date,cmp-1,10\n", "text/csv")
        },
    )
    assert bad.status_code == 422
    r = await client.get("/api/v1/marketing/roi", headers=org["headers"])
    rows = {x["campaign_id"]: x for x in r.json()}
    cmp1 = rows["cmp-1"]
    assert (cmp1["spend"], cmp1["leads"], cmp1["won"]) == ("400.00", 4, 1)
    assert cmp1["cost_per_lead"] == "100.00" and cmp1["cost_per_won"] == "400.00"
    assert cmp1["return"] == "3.75"
    assert rows["cmp-2"]["leads"] == 0 and rows["cmp-2"]["cost_per_lead"] is None
    await web_login(client, org["email"])
    page = await client.get("/marketing/roi")
    assert page.status_code == 200 and 'data-roi="cmp-1"' in page.text


async def test_spend_from_the_graph_insights(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    graph: FakeLeadAdsGraph,
    database: Database,
    settings: Settings,
) -> None:
    fb = await connect_facebook(client, org["headers"], graph)
    r = await client.post(
        f"/api/v1/marketing/integrations/{fb['id']}/spend-sync", headers=org["headers"]
    )
    assert r.status_code == 422  # no ad account yet
    r = await client.patch(
        f"/api/v1/marketing/integrations/{fb['id']}",
        headers=org["headers"],
        json={"ad_account_id": "act_123"},
    )
    assert r.status_code == 200 and r.json()["ad_account_id"] == "act_123"
    graph.insights = [  # three rows: two pages of the fake's two, every page read
        {
            "campaign_id": "cmp-9",
            "campaign_name": "Inverno",
            "spend": "12.34",
            "account_currency": "USD",
            "date_start": "2026-11-01",
        },
        {
            "campaign_id": "cmp-9",
            "campaign_name": "Inverno",
            "spend": "7.66",
            "account_currency": "USD",
            "date_start": "2026-11-02",
        },
        {
            "campaign_id": "cmp-9",
            "campaign_name": "Inverno",
            "spend": "5.00",
            "account_currency": "USD",
            "date_start": "2026-11-03",
        },
    ]
    r = await client.post(
        f"/api/v1/marketing/integrations/{fb['id']}/spend-sync", headers=org["headers"]
    )
    assert r.status_code == 202
    await run_marketing(database, settings)
    assert graph.requests_to("/v21.0/act_123/insights")
    rows = {
        x["campaign_id"]: x
        for x in (await client.get("/api/v1/marketing/roi", headers=org["headers"])).json()
    }
    assert rows["cmp-9"]["spend"] == "25.00" and rows["cmp-9"]["campaign_name"] == "Inverno"
    assert len(graph.requests_to("/v21.0/act_123/insights")) == 2
    # The ad account's currency, as the insights give it.
    spend = owner_rows(
        database,
        "SELECT DISTINCT currency FROM ad_spend WHERE organization_id = :o",
        o=org["org_id"],
    )
    assert [r[0] for r in spend] == ["USD"]


def test_graph_usage_headers_slow_the_reads_down() -> None:
    """The usage Graph reports in its headers (the app's, a business use case's, an ad
    account's) turns into the wait before the next call of a long read."""
    from datetime import timedelta

    from lovedcrm.marketing.graph import GraphClient, usage_of

    assert usage_of({}) == (0.0, 0)
    app = '{"call_count": 12, "total_cputime": 30, "total_time": 8}'
    assert usage_of({"x-app-usage": app}) == (30.0, 0)
    business = (
        '{"1234": [{"type": "pages", "call_count": 95, "total_cputime": 20, "total_time": 40,'
        ' "estimated_time_to_regain_access": 7}]}'
    )
    assert usage_of({"x-business-use-case-usage": business}) == (95.0, 7)
    assert usage_of({"x-ad-account-usage": '{"acc_id_util_pct": 80.5}'}) == (80.5, 0)
    assert usage_of({"x-app-usage": "not json", "x-ad-account-usage": "[1]"}) == (0.0, 0)
    base = timedelta(seconds=3)
    graph = GraphClient(Settings(), None, "t")
    assert graph.pace(base) == base
    graph.usage = 80
    assert graph.pace(base) == timedelta(minutes=1)
    graph.usage = 92
    assert graph.pace(base) == timedelta(minutes=5)
    graph.regain_minutes = 7
    assert graph.pace(base) == timedelta(minutes=7)


async def test_a_backfill_near_the_pages_quota_waits_longer(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    graph: FakeLeadAdsGraph,
    database: Database,
    settings: Settings,
    manual_clock: Any,
) -> None:
    from lovedcrm.jobs.engine import run_until_idle

    fb = await connect_facebook(client, org["headers"], graph)
    for n in range(3):
        graph.add_lead(f"Q-{n}", full_name=f"Quota {n}", email=f"quota{n}@example.com")
    graph.usage_headers = {
        "X-Business-Use-Case-Usage": '{"99": [{"type": "pages", "call_count": 91,'
        ' "total_cputime": 5, "total_time": 5, "estimated_time_to_regain_access": 0}]}'
    }
    r = await client.post(
        f"/api/v1/marketing/integrations/{fb['id']}/backfill", headers=org["headers"]
    )
    assert r.status_code == 202
    await run_until_idle(database, settings, types=["marketing.backfill"], timeout=30)
    [wait] = [
        row.wait
        for row in owner_rows(
            database,
            "SELECT extract(epoch FROM scheduled_for - :now) AS wait FROM background_jobs"
            " WHERE organization_id = :o AND job_type = 'marketing.backfill'"
            " AND status = 'pending'",
            o=org["org_id"],
            now=manual_clock.now(),
        )
    ]
    assert float(wait) >= 5 * 60  # the quota at 91 %: five minutes, not three seconds
