"""The audit trail on screen and over the API (filters, keyset pages, diffs, CSV), security
events (failed log-ins, a new device, an API key from a new address), consent records,
retention jobs and the organization's deletion with a grace period (ManualClock)."""

from __future__ import annotations

import csv
import io
import uuid

import httpx
import pytest
import sqlalchemy as sa

from lovedcrm.auth import api_keys
from lovedcrm.config import Settings
from lovedcrm.core.clock import ManualClock
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.jobs.engine import run_until_idle
from lovedcrm.jobs.queue import enqueue
from lovedcrm.leads import consent
from tests.factories import (
    PASSWORD,
    create_lead,
    join,
    join_and_login,
    login,
    owner_sql,
    signup,
    web_login,
)

pytestmark = pytest.mark.asyncio


async def test_audit_api_filters_pages_and_diffs(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    h = admin["headers"]
    lead = await create_lead(client, h, full_name="Carla Auditada")
    for title in ("Gerente", "Diretora"):
        r = await client.patch(f"/api/v1/leads/{lead['id']}", headers=h, json={"job_title": title})
        assert r.status_code == 200, r.text

    r = await client.get(
        "/api/v1/audit",
        headers=h,
        params={"action": "update", "resource_type": "lead", "limit": 1},
    )
    assert r.status_code == 200, r.text
    first = r.json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    newest = first["items"][0]
    assert newest["member"] == "Ana Souza"
    diff = {d["field"]: (d["before"], d["after"]) for d in newest["diff"]}
    assert diff["job_title"] == ("Gerente", "Diretora")
    r = await client.get(
        "/api/v1/audit",
        headers=h,
        params={"action": "update", "limit": 1, "cursor": first["next_cursor"]},
    )
    second = r.json()["items"][0]
    assert second["id"] != newest["id"]
    assert {d["field"]: d["after"] for d in second["diff"]}["job_title"] == "Gerente"

    # Period and member filters.
    today = newest["created_at"][:10]
    r = await client.get("/api/v1/audit", headers=h, params={"until": "2000-01-01"})
    assert r.json()["items"] == []
    r = await client.get("/api/v1/audit", headers=h, params={"since": today, "limit": 200})
    assert len(r.json()["items"]) >= 3
    r = await client.get("/api/v1/audit", headers=h, params={"user_id": str(uuid.uuid4())})
    assert r.json()["items"] == []

    # Admins only (audit:read): a salesperson is refused, a bad cursor is a 4xx.
    sales = await join_and_login(client, h, "sales")
    assert (await client.get("/api/v1/audit", headers=sales)).status_code == 403
    r = await client.get("/api/v1/audit", headers=h, params={"cursor": "nonsense"})
    assert 400 <= r.status_code < 500


async def test_audit_csv_and_page(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    h = admin["headers"]
    lead = await create_lead(client, h, full_name="=Fórmula Perigosa")
    await client.patch(f"/api/v1/leads/{lead['id']}", headers=h, json={"company": "Acme"})
    r = await client.get("/api/v1/audit/export.csv", headers=h, params={"action": "update"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["created_at", "member", "action"]
    assert len(rows) >= 2 and all(row[2] == "update" for row in rows[1:])
    assert any("Acme" in row[-1] for row in rows[1:])

    await web_login(client, admin["email"])
    r = await client.get("/settings/audit", params={"action": "update"})
    assert r.status_code == 200
    assert 'data-audit-row="update"' in r.text and "Acme" in r.text
    assert 'data-audit-row="create"' not in r.text
    r = await client.get("/settings/audit.csv", params={"entity": "lead"})
    assert r.status_code == 200 and "lead" in r.text


async def test_security_events(client: httpx.AsyncClient, database: Database) -> None:
    admin = await signup(client)
    h = admin["headers"]
    email = await join(client, h, "sales")

    # A failed log-in into a member's account reaches the organization's page and API.
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": "errada-123"})
    assert r.status_code == 401
    r = await client.get("/api/v1/audit/login-failures", headers=h)
    assert r.status_code == 200
    failures = r.json()
    assert failures and failures[0]["member"] == "Member sales"
    assert failures[0]["failure_reason"] == "bad_credentials"

    # The first log-in sets the baseline; one from a new device scores 30 (+10 for the
    # failure just before, same e-mail and address).
    await login(client, email)
    r = await client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": PASSWORD},
        headers={"User-Agent": "Navegador-Novo/9.9"},
    )
    assert r.status_code == 200
    r = await client.get("/api/v1/audit", headers=h, params={"action": "login", "security": "true"})
    risky = [e for e in r.json()["items"] if e["risk_score"]]
    assert risky, r.json()
    fields = {d["field"]: d["after"] for d in risky[0]["diff"]}
    assert fields["new_device"] is True and risky[0]["risk_score"] >= 30

    # An API key used from a new address: a security event when usage is written.
    r = await client.post(
        "/api/v1/api-keys", headers=h, json={"name": "integração", "scopes": ["leads:read"]}
    )
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    r = await client.get("/api/v1/leads", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    await api_keys.flush_usage(database)
    r = await client.get(
        "/api/v1/audit", headers=h, params={"action": "security.api_key_new_address"}
    )
    events = r.json()["items"]
    assert len(events) == 1 and events[0]["risk_score"] == 10
    # The same address again: no new event.
    await client.get("/api/v1/leads", headers={"Authorization": f"Bearer {key}"})
    await api_keys.flush_usage(database)
    r = await client.get(
        "/api/v1/audit", headers=h, params={"action": "security.api_key_new_address"}
    )
    assert len(r.json()["items"]) == 1


async def test_consents_history_latest_and_may_contact(
    client: httpx.AsyncClient, database: Database, manual_clock: ManualClock
) -> None:
    admin = await signup(client)
    h = admin["headers"]
    a = await create_lead(client, h, full_name="Consentida")
    b = await create_lead(client, h, full_name="Revogou")
    c = await create_lead(client, h, full_name="Nunca perguntada")
    body = {"purpose": "email_marketing", "legal_basis": "consent", "source": "form"}
    for lead, status in ((a, "granted"), (b, "granted"), (b, "withdrawn")):
        r = await client.post(
            f"/api/v1/leads/{lead['id']}/consents", headers=h, json=body | {"status": status}
        )
        assert r.status_code == 201, r.text
    r = await client.get(f"/api/v1/leads/{b['id']}/consents", headers=h)
    assert [x["status"] for x in r.json()] == ["withdrawn", "granted"]
    # Bad input: an unknown purpose is refused by the schema.
    r = await client.post(
        f"/api/v1/leads/{a['id']}/consents",
        headers=h,
        json=body | {"status": "granted", "purpose": "telepathy"},
    )
    assert r.status_code == 422
    # A salesperson cannot record on a lead that is not theirs: 404.
    sales = await join_and_login(client, h, "sales")
    r = await client.post(
        f"/api/v1/leads/{a['id']}/consents", headers=sales, json=body | {"status": "granted"}
    )
    assert r.status_code == 404

    org = uuid.UUID(admin["organization_id"])
    ids = [uuid.UUID(x["id"]) for x in (a, b, c)]
    async with tenant_transaction(database.sessionmaker, org) as session:
        assert await consent.may_contact(session, org, ids) == {ids[0]}
        latest = await consent.latest(session, org, ids, "email_marketing")
        assert latest[ids[1]].status == "withdrawn" and ids[2] not in latest
        # A job's record (no member), as an unsubscribe link would write it.
        await consent.record(
            session,
            organization_id=org,
            lead_id=ids[0],
            purpose="email_marketing",
            legal_basis="consent",
            status="withdrawn",
            source="unsubscribe",
        )
        assert await consent.may_contact(session, org, ids) == set()
        assert await consent.may_contact(session, org, ids, "whatsapp_marketing") == set()


async def test_retention_jobs(
    client: httpx.AsyncClient,
    owner: sa.Engine,
    database: Database,
    settings: Settings,
    manual_clock: ManualClock,
) -> None:
    admin = await signup(client)
    h = admin["headers"]
    org = admin["organization_id"]
    lead = await create_lead(client, h, full_name="Retida")
    owner_sql(
        owner,
        "INSERT INTO messages (organization_id, lead_id, provider_type, direction, content,"
        " status) VALUES (:org, :lead, 'whatsapp_business', 'inbound', 'mensagem antiga',"
        " 'delivered')",
        org=org,
        lead=lead["id"],
    )
    r = await client.put(
        "/api/v1/privacy/retention",
        headers=h,
        json={"message_retention_months": 6, "audit_retention_days": 90},
    )
    assert r.status_code == 200, r.text
    assert r.json()["recording_retention_months"] is None
    r = await client.put("/api/v1/privacy/retention", headers=h, json={"audit_retention_days": 5})
    assert r.status_code == 422
    audit_before = owner_sql(
        owner, "SELECT count(*) FROM audit_logs WHERE organization_id = :org", org=org
    )[0][0]
    assert audit_before > 0

    async def run_daily() -> None:
        async with tenant_transaction(database.sessionmaker, None) as session:
            await enqueue(session, "privacy.retention_all", {}, organization_id=None)
        await run_until_idle(
            database, settings, types=["privacy.retention_all", "privacy.retention"], timeout=60
        )

    # A month later: nothing is old enough.
    manual_clock.advance(days=30)
    await run_daily()
    body = owner_sql(owner, "SELECT content FROM messages WHERE lead_id = :l", l=lead["id"])
    assert body == [("mensagem antiga",)]

    # Seven months later: the body is gone (the message is still counted); the trail
    # is kept 90 days, so its older rows are gone too.
    manual_clock.advance(days=180)
    await run_daily()
    body = owner_sql(owner, "SELECT content FROM messages WHERE lead_id = :l", l=lead["id"])
    assert body == [(None,)]
    left = owner_sql(
        owner,
        "SELECT action FROM audit_logs WHERE organization_id = :org ORDER BY created_at",
        org=org,
    )
    assert ("privacy.retention_applied",) in left
    assert len(left) < audit_before


async def test_organization_deletion_grace_and_cancel(
    client: httpx.AsyncClient,
    owner: sa.Engine,
    database: Database,
    settings: Settings,
    manual_clock: ManualClock,
) -> None:
    admin = await signup(client)
    h = admin["headers"]
    org = admin["organization_id"]
    await create_lead(client, h, full_name="Some Junto")
    manager = await join_and_login(client, h, "manager")
    assert (
        await client.post("/api/v1/privacy/organization/deletion", headers=manager)
    ).status_code == 403

    r = await client.post("/api/v1/privacy/organization/deletion", headers=h)
    assert r.status_code == 202, r.text
    assert (
        await client.post("/api/v1/privacy/organization/deletion", headers=h)
    ).status_code == 409
    r = await client.delete("/api/v1/privacy/organization/deletion", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    jobs = ["privacy.org_deletion", "privacy.org_delete_now"]
    manual_clock.advance(days=31)
    await run_until_idle(database, settings, types=jobs, timeout=60)
    assert owner_sql(owner, "SELECT count(*) FROM organizations WHERE id = :o", o=org) == [(1,)]

    # Scheduled again and not cancelled: gone after the grace period, with a receipt.
    r = await client.post("/api/v1/privacy/organization/deletion", headers=h)
    assert r.status_code == 202
    manual_clock.advance(days=29)
    await run_until_idle(database, settings, types=jobs, timeout=60)
    assert owner_sql(owner, "SELECT count(*) FROM organizations WHERE id = :o", o=org) == [(1,)]
    manual_clock.advance(days=2)
    await run_until_idle(database, settings, types=jobs, timeout=60)
    assert owner_sql(owner, "SELECT count(*) FROM organizations WHERE id = :o", o=org) == [(0,)]
    assert owner_sql(owner, "SELECT count(*) FROM leads WHERE organization_id = :o", o=org) == [
        (0,)
    ]
    receipt = owner_sql(
        owner,
        "SELECT changes FROM audit_logs WHERE action = 'privacy.org_deleted' AND resource_id = :o",
        o=org,
    )
    assert receipt and receipt[0][0]["receipt"]["rows"]["leads"] == 1
