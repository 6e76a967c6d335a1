"""The Stripe adapter against a loopback fake speaking Stripe's form-encoded API, and Stripe's
signed webhooks: verification first, idempotent by event id, out-of-order safe; the
subscription's states (trial end, past due → read-only → recovered, canceled)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import sqlalchemy as sa

from lovedcrm.billing import jobs as billing_jobs
from lovedcrm.billing import service
from lovedcrm.config import Settings
from lovedcrm.core.clock import ManualClock
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.jobs.engine import run_until_idle
from lovedcrm.jobs.queue import enqueue
from lovedcrm.organizations import plans
from tests.billing.conftest import enforce
from tests.factories import create_lead, owner_sql, signup
from tests.fakes.stripe_fake import FakeStripe, event, invoice, signed, subscription

HOOK = "/webhooks/stripe"


async def _org(c: httpx.AsyncClient, database: Database) -> dict[str, Any]:
    data = await signup(c)
    data["org_id"] = uuid.UUID(data["organization_id"])
    await enforce(database, data["org_id"])
    return data


def _state(owner: sa.Engine, org_id: uuid.UUID) -> Any:
    return owner_sql(
        owner,
        "SELECT s.status, s.plan_tier, s.stripe_subscription_id, s.past_due_since,"
        " o.plan_tier AS org_plan"
        " FROM subscriptions s JOIN organizations o ON o.id = s.organization_id"
        " WHERE s.organization_id = :o",
        o=org_id,
    )[0]


async def _post(c: httpx.AsyncClient, evt: dict[str, Any], **kw: Any) -> httpx.Response:
    return await c.post(HOOK, **signed(evt, **kw))


async def test_checkout_session_is_form_encoded_to_stripe(
    stripe_client: httpx.AsyncClient, database: Database, fake_stripe: FakeStripe
) -> None:
    org = await _org(stripe_client, database)
    r = await stripe_client.post(
        "/api/v1/billing/checkout",
        headers=org["headers"],
        json={"plan": "pro", "cycle": "yearly", "currency": "USD"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["url"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    (form,) = fake_stripe.posts("/v1/checkout/sessions")
    assert form["mode"] == "subscription"
    assert form["line_items[0][quantity]"] == "1"
    assert form["line_items[0][price_data][currency]"] == "usd"
    assert form["line_items[0][price_data][unit_amount]"] == str(4_900 * 10)
    assert form["line_items[0][price_data][recurring][interval]"] == "year"
    assert form["client_reference_id"] == str(org["org_id"])
    assert form["subscription_data[metadata][organization_id]"] == str(org["org_id"])
    assert form["customer_email"] == org["email"]
    assert form["success_url"].endswith("/settings/billing?checkout=done")


async def test_a_paying_organization_changes_plan_in_the_portal_not_a_second_checkout(
    stripe_client: httpx.AsyncClient, database: Database, fake_stripe: FakeStripe
) -> None:
    org = await _org(stripe_client, database)
    oid = str(org["org_id"])
    evt = event("customer.subscription.created", subscription(oid, "active", plan="pro"))
    assert (await _post(stripe_client, evt)).json()["outcome"] == "applied"
    r = await stripe_client.post(
        "/api/v1/billing/checkout",
        headers={**org["headers"], "Accept-Language": "pt-BR"},
        json={"plan": "enterprise", "cycle": "monthly"},
    )
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "subscription_exists"
    assert "portal de cobrança" in r.json()["detail"]
    assert fake_stripe.posts("/v1/checkout/sessions") == []  # no second subscription started
    # Once it has ended, a new checkout is allowed again.
    ended = event("customer.subscription.deleted", subscription(oid, "canceled", plan="pro"))
    assert (await _post(stripe_client, ended)).json()["outcome"] == "applied"
    r = await stripe_client.post(
        "/api/v1/billing/checkout",
        headers=org["headers"],
        json={"plan": "enterprise", "cycle": "monthly"},
    )
    assert r.status_code == 201, r.text


async def test_subscription_events_activate_and_duplicates_change_nothing(
    stripe_client: httpx.AsyncClient, database: Database, owner: sa.Engine
) -> None:
    org = await _org(stripe_client, database)
    oid = str(org["org_id"])
    first = event("customer.subscription.created", subscription(oid, "active", plan="enterprise"))
    r = await _post(stripe_client, first)
    assert r.status_code == 200 and r.json()["outcome"] == "applied", r.text
    state = _state(owner, org["org_id"])
    assert (state.status, state.org_plan, state.stripe_subscription_id) == (
        "active", "enterprise", f"sub_{oid[:8]}",
    )  # fmt: skip
    # The same event again (Stripe retries): acknowledged, ignored.
    owner_sql(
        owner, "UPDATE organizations SET plan_tier = 'starter' WHERE id = :o", o=org["org_id"]
    )
    r = await _post(stripe_client, first)
    assert r.json()["outcome"] == "duplicate"
    assert _state(owner, org["org_id"]).org_plan == "starter"


async def test_out_of_order_events_keep_the_newest_state(
    stripe_client: httpx.AsyncClient, database: Database, owner: sa.Engine
) -> None:
    org = await _org(stripe_client, database)
    oid = str(org["org_id"])
    now = int(time.time())
    newer = event("customer.subscription.updated", subscription(oid, "past_due"), created=now)
    older = event("customer.subscription.updated", subscription(oid, "active"), created=now - 60)
    assert (await _post(stripe_client, newer)).json()["outcome"] == "applied"
    assert (await _post(stripe_client, older)).json()["outcome"] == "stale"
    assert _state(owner, org["org_id"]).status == "past_due"


async def test_forged_stale_and_unsigned_webhooks_change_nothing(
    stripe_client: httpx.AsyncClient, database: Database, owner: sa.Engine
) -> None:
    org = await _org(stripe_client, database)
    evt = event("customer.subscription.updated", subscription(str(org["org_id"]), "canceled"))
    forged = await stripe_client.post(HOOK, **signed(evt, secret="whsec_wrong"))
    stale = await stripe_client.post(HOOK, **signed(evt, timestamp=int(time.time()) - 301))
    unsigned = await stripe_client.post(HOOK, json=evt)
    body = signed(evt)
    body["content"] = body["content"].replace(b"canceled", b"active__")  # altered in transit
    altered = await stripe_client.post(HOOK, **body)
    for r in (forged, stale, unsigned, altered):
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "bad_signature"
    assert owner_sql(owner, "SELECT 1 FROM billing_events WHERE id = :i", i=evt["id"]) == []
    assert _state(owner, org["org_id"]).status == "trialing"


async def test_replay_after_the_tolerance_is_refused(
    stripe_client: httpx.AsyncClient, database: Database, manual_clock: ManualClock
) -> None:
    org = await _org(stripe_client, database)
    evt = event("customer.subscription.updated", subscription(str(org["org_id"]), "active"))
    captured = signed(evt, timestamp=int(manual_clock.now().timestamp()))
    manual_clock.advance(seconds=301)
    r = await stripe_client.post(HOOK, **captured)
    assert r.status_code == 400


async def test_several_v1_signatures_during_rotation(
    stripe_client: httpx.AsyncClient, database: Database
) -> None:
    org = await _org(stripe_client, database)
    evt = event("customer.subscription.updated", subscription(str(org["org_id"]), "active"))
    r = await stripe_client.post(HOOK, **signed(evt, extra_v1=("0" * 64,)))
    assert r.status_code == 200 and r.json()["outcome"] == "applied"


async def test_past_due_then_read_only_then_recovered(
    stripe_client: httpx.AsyncClient,
    database: Database,
    owner: sa.Engine,
    manual_clock: ManualClock,
) -> None:
    org = await _org(stripe_client, database)
    oid, h = str(org["org_id"]), org["headers"]
    ts = int(manual_clock.now().timestamp())
    created = event("customer.subscription.created", subscription(oid, "active"), created=ts)
    await _post(stripe_client, created, timestamp=ts)
    failed = event(
        "invoice.payment_failed",
        invoice(f"cus_{oid[:8]}", f"sub_{oid[:8]}", paid=False),
        created=ts + 1,
    )
    assert (await _post(stripe_client, failed, timestamp=ts)).json()["outcome"] == "payment_failed"
    assert _state(owner, org["org_id"]).status == "past_due"
    # The members who manage billing are notified, once even if Stripe sends it again.
    await _post(stripe_client, failed, timestamp=ts)
    notified = owner_sql(
        owner,
        "SELECT link FROM notifications WHERE organization_id = :o"
        " AND notification_type = 'payment_failed'",
        o=oid,
    )
    assert notified == [("/settings/billing",)]
    # Within the grace period everything works.
    await create_lead(stripe_client, h, full_name="In grace")
    manual_clock.advance(days=8)
    plans.invalidate(org["org_id"])
    r = await stripe_client.post("/api/v1/leads", headers=h, json={"full_name": "Blocked"})
    assert r.status_code == 402
    assert r.json()["code"] == "subscription_read_only"
    assert (await stripe_client.get("/api/v1/leads", headers=h)).status_code == 200  # reads ok
    assert (await stripe_client.get("/api/v1/billing/subscription", headers=h)).json()["read_only"]
    # Paid: writes again, and nothing was deleted.
    ts2 = int(manual_clock.now().timestamp())
    paid = event("invoice.paid", invoice(f"cus_{oid[:8]}", f"sub_{oid[:8]}"), created=ts2)
    assert (await _post(stripe_client, paid, timestamp=ts2)).json()["outcome"] == "paid"
    assert _state(owner, org["org_id"]).status == "active"
    r = await stripe_client.post("/api/v1/leads", headers=h, json={"full_name": "Back"})
    assert r.status_code == 201, r.text
    leads = (await stripe_client.get("/api/v1/leads", headers=h)).json()["items"]
    assert {lead["full_name"] for lead in leads} >= {"In grace", "Back"}


async def test_trial_ends_into_active_through_stripe(
    stripe_client: httpx.AsyncClient, database: Database, owner: sa.Engine
) -> None:
    org = await _org(stripe_client, database)
    oid = str(org["org_id"])
    now = int(time.time())
    trial = subscription(oid, "trialing", trial_end=now + 86400)
    await _post(stripe_client, event("customer.subscription.created", trial, created=now))
    assert _state(owner, org["org_id"]).status == "trialing"
    ended = subscription(oid, "active", trial_end=now + 86400)
    await _post(stripe_client, event("customer.subscription.updated", ended, created=now + 5))
    assert _state(owner, org["org_id"]).status == "active"


async def test_local_trial_without_subscription_expires_to_starter(
    client: httpx.AsyncClient, database: Database, owner: sa.Engine, manual_clock: ManualClock
) -> None:
    org = await _org(client, database)
    await create_lead(client, org["headers"], full_name="Kept")
    manual_clock.advance(days=15)
    async with tenant_transaction(database.sessionmaker, org["org_id"]) as session:
        assert await service.expire_trial(session, org["org_id"]) is True
    state = _state(owner, org["org_id"])
    assert (state.status, state.org_plan) == ("canceled", "starter")
    leads = (await client.get("/api/v1/leads", headers=org["headers"])).json()["items"]
    assert [lead["full_name"] for lead in leads] == ["Kept"]


async def test_canceled_downgrades_to_starter_keeping_data(
    stripe_client: httpx.AsyncClient, database: Database, owner: sa.Engine
) -> None:
    org = await _org(stripe_client, database)
    oid = str(org["org_id"])
    now = int(time.time())
    await _post(
        stripe_client,
        event("customer.subscription.created", subscription(oid, "active"), created=now),
    )
    await create_lead(stripe_client, org["headers"], full_name="Stays")
    await _post(
        stripe_client,
        event("customer.subscription.deleted", subscription(oid, "canceled"), created=now + 1),
    )
    state = _state(owner, org["org_id"])
    assert (state.status, state.org_plan) == ("canceled", "starter")
    r = await stripe_client.get("/api/v1/calls", headers=org["headers"])
    assert r.json()["code"] == "feature_not_in_plan"
    leads = (await stripe_client.get("/api/v1/leads", headers=org["headers"])).json()["items"]
    assert [lead["full_name"] for lead in leads] == ["Stays"]


async def test_portal_and_invoices_through_stripe(
    stripe_client: httpx.AsyncClient, database: Database, fake_stripe: FakeStripe
) -> None:
    org = await _org(stripe_client, database)
    oid = str(org["org_id"])
    await _post(
        stripe_client,
        event("customer.subscription.created", subscription(oid, "active", customer="cus_9")),
    )
    fake_stripe.invoices = [invoice("cus_9", f"sub_{oid[:8]}"), invoice("cus_other", "sub_x")]
    r = await stripe_client.post("/api/v1/billing/portal", headers=org["headers"])
    assert r.status_code == 201 and r.json()["url"].startswith("https://billing.stripe.com/")
    assert fake_stripe.posts("/v1/billing_portal/sessions")[0]["customer"] == "cus_9"
    r = await stripe_client.get("/api/v1/billing/invoices", headers=org["headers"])
    assert [i["currency"] for i in r.json()] == ["BRL"]
    assert r.json()[0]["amount_cents"] == 24_900
    page = await stripe_client.get("/settings/billing", headers=org["headers"])
    assert page.status_code in (200, 303)


async def test_stripe_down_is_a_clear_error(
    stripe_client: httpx.AsyncClient, database: Database, fake_stripe: FakeStripe
) -> None:
    org = await _org(stripe_client, database)
    fake_stripe.down = True
    r = await stripe_client.post(
        "/api/v1/billing/checkout", headers=org["headers"], json={"plan": "pro"}
    )
    assert r.status_code == 502
    assert r.json()["code"] == "billing_provider_error"


async def test_metering_job_records_usage_and_reports_it_once(
    stripe_client: httpx.AsyncClient,
    database: Database,
    stripe_settings: Settings,
    fake_stripe: FakeStripe,
    owner: sa.Engine,
) -> None:
    org = await _org(stripe_client, database)
    oid = str(org["org_id"])
    await _post(stripe_client, event("customer.subscription.created", subscription(oid, "active")))
    await create_lead(stripe_client, org["headers"], full_name="Metered")
    owner_sql(
        owner,
        "INSERT INTO messages"
        " (organization_id, provider_type, direction, content, message_type, status)"
        " VALUES (:o, 'sandbox', 'outbound', 'hi', 'text', 'sent')",
        o=org["org_id"],
    )
    async with tenant_transaction(database.sessionmaker, org["org_id"]) as session:
        await enqueue(session, billing_jobs.METER, {}, organization_id=org["org_id"])
    await run_until_idle(database, stripe_settings, types=(billing_jobs.METER,), timeout=30)
    rows = dict(
        (r.metric_type, r.metric_value)
        for r in owner_sql(
            owner,
            "SELECT metric_type, metric_value FROM usage_metrics WHERE organization_id = :o",
            o=org["org_id"],
        )
    )
    assert rows["leads"] == 1 and rows["seats"] == 1 and rows["messages_sent"] == 1
    sent = [e for e in fake_stripe.meter_events if e["event_name"] == "lovedcrm_messages_sent"]
    assert len(sent) == 1 and sent[0]["payload[value]"] == "1"
    assert sent[0]["payload[stripe_customer_id]"] == f"cus_{oid[:8]}"
    # Run again: nothing new to report.
    async with tenant_transaction(database.sessionmaker, org["org_id"]) as session:
        await enqueue(session, billing_jobs.METER, {}, organization_id=org["org_id"])
    await run_until_idle(database, stripe_settings, types=(billing_jobs.METER,), timeout=30)
    assert (
        len([e for e in fake_stripe.meter_events if e["event_name"] == "lovedcrm_messages_sent"])
        == 1
    )
