"""LGPD for one data subject: the export zip holds every message and file of the person; the
erasure leaves no trace of the person's name, phone or e-mail in any text, varchar or JSON
column of any table, while the reports' totals stay the same; queued work sends nothing."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from lovedcrm.config import Settings
from lovedcrm.core.storage import get_storage
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.jobs.engine import run_until_idle
from lovedcrm.marketing import campaigns
from tests.factories import create_lead, join_and_login, owner_sql, signup

pytestmark = pytest.mark.asyncio

PRIVACY_JOBS = ["privacy.lead_export", "privacy.lead_erasure"]
NAME = "Joaquina Esmeralda Tavares"
EMAIL = "joaquina.tavares@exemplo.com.br"
# A number no other test uses: the search below reads the whole database of the run.
PHONE = f"+55119{uuid.uuid4().int % 10**8:08d}"
REPORTS = ("overview", "funnel", "stages", "owners", "sources", "activity")


@dataclass
class Subject:
    org: str
    lead_id: str
    headers: dict[str, str]
    files: list[str]
    message_ids: list[str]


async def _subject(client: httpx.AsyncClient, owner: sa.Engine, settings: Settings) -> Subject:
    admin = await signup(client)
    headers = admin["headers"]
    org = admin["organization_id"]
    lead = await create_lead(
        client, headers, full_name=NAME, email=EMAIL, phone=PHONE, company="Tavares ME"
    )
    lead_id = lead["id"]
    # An audited change whose diff names the person, a note, a consent with evidence.
    r = await client.patch(
        f"/api/v1/leads/{lead_id}", headers=headers, json={"job_title": "Compradora"}
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/leads/{lead_id}/notes",
        headers=headers,
        json={"description": f"Falei com {NAME} no {PHONE}, e-mail {EMAIL}."},
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/api/v1/leads/{lead_id}/consents",
        headers=headers,
        json={
            "purpose": "email_marketing",
            "legal_basis": "consent",
            "status": "granted",
            "source": "form",
            "evidence": {"text": f"Eu, {NAME}, aceito", "email": EMAIL},
        },
    )
    assert r.status_code == 201, r.text

    storage = get_storage(settings)
    attachment_key = f"test/{uuid.uuid4()}/foto.jpg"
    recording_key = f"test/{uuid.uuid4()}/gravacao.mp3"
    storage.save(attachment_key, b"\xff\xd8 jpeg of the person", "image/jpeg")
    storage.save(recording_key, b"ID3 the person's voice", "audio/mpeg")
    user = owner_sql(owner, "SELECT id FROM users WHERE email = :e", e=admin["email"])[0][0]
    message_ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    owner_sql(
        owner,
        "INSERT INTO messages (id, organization_id, lead_id, provider_type, direction, content,"
        " from_number, to_number, contact_name, status, metadata) VALUES"
        " (:m1, :org, :lead, 'whatsapp_business', 'inbound', :body1, :phone, '+5511300000000',"
        "  :name, 'delivered', CAST(:meta AS jsonb)),"
        " (:m2, :org, :lead, 'whatsapp_business', 'outbound', 'Olá! Segue a proposta.',"
        "  '+5511300000000', :phone, NULL, 'pending', '{}'::jsonb)",
        m1=message_ids[0],
        m2=message_ids[1],
        org=org,
        lead=lead_id,
        body1=f"Oi, aqui é {NAME}, meu e-mail é {EMAIL}",
        phone=PHONE,
        name=NAME,
        meta=json.dumps({"profile": {"name": NAME, "wa_id": PHONE.lstrip("+")}}),
    )
    owner_sql(
        owner,
        "INSERT INTO message_attachments (organization_id, message_id, file_name, file_type,"
        " file_size, file_url) VALUES (:org, :m, :fname, 'image/jpeg', 24, :key)",
        org=org,
        m=message_ids[0],
        fname=f"{NAME}.jpg",
        key=attachment_key,
    )
    owner_sql(
        owner,
        "INSERT INTO call_logs (organization_id, lead_id, user_id, provider_type, direction,"
        " from_number, to_number, status, duration_seconds, recording_url, transcription)"
        " VALUES (:org, :lead, :u, 'sandbox', 'outbound', '+5511300000000', :phone,"
        " 'completed', 95, :key, :tx)",
        org=org,
        lead=lead_id,
        u=user,
        phone=PHONE,
        key=recording_key,
        tx=f"Bom dia, {NAME} falando.",
    )
    owner_sql(
        owner,
        "INSERT INTO calendar_events (organization_id, lead_id, created_by, title, description,"
        " start_time, end_time, timezone, attendees) VALUES (:org, :lead, :u, :title, :desc,"
        " now() + interval '2 days', now() + interval '2 days 1 hour', 'America/Sao_Paulo',"
        " CAST(:att AS jsonb))",
        org=org,
        lead=lead_id,
        u=user,
        title=f"Reunião com {NAME}",
        desc=f"Ligar para {PHONE}",
        att=json.dumps([{"email": EMAIL, "name": NAME}]),
    )
    owner_sql(
        owner,
        "INSERT INTO ai_conversations (organization_id, lead_id, conversation_title,"
        " context_summary) VALUES (:org, :lead, :t, :s)",
        org=org,
        lead=lead_id,
        t=f"Conversa com {NAME}",
        s=f"{NAME} quer um orçamento; telefone {PHONE}",
    )
    key_id = owner_sql(
        owner,
        "INSERT INTO api_keys (organization_id, created_by, key_name, api_key_hash,"
        " api_key_prefix) VALUES (:org, :u, 'hook', :h, 'lcrm_x') RETURNING id",
        org=org,
        u=user,
        h=uuid.uuid4().hex,
    )[0][0]
    sub_id = owner_sql(
        owner,
        "INSERT INTO webhook_subscriptions (organization_id, api_key_id, webhook_url,"
        " secret_token) VALUES (:org, :k, 'https://hooks.example.com/x', 's') RETURNING id",
        org=org,
        k=key_id,
    )[0][0]
    owner_sql(
        owner,
        "INSERT INTO webhook_deliveries (organization_id, subscription_id, event_id,"
        " event_type, attempt, request_body, response_body, succeeded) VALUES"
        " (:org, :s, :e, 'lead.created', 1, :body, 'ok', true)",
        org=org,
        s=sub_id,
        e=str(uuid.uuid4()),
        body=json.dumps({"data": {"full_name": NAME, "email": EMAIL, "phone": PHONE}}),
    )
    owner_sql(
        owner,
        "INSERT INTO analytics_events (organization_id, event_type, event_data)"
        " VALUES (:org, 'lead.viewed', CAST(:d AS jsonb))",
        org=org,
        d=json.dumps({"lead": lead_id, "name": NAME}),
    )
    # A send queued for the lead's pending outbound message, and one naming the lead.
    owner_sql(
        owner,
        "INSERT INTO background_jobs (organization_id, job_type, job_data, status,"
        " scheduled_for) VALUES (:org, 'whatsapp.send', CAST(:d1 AS jsonb), 'pending',"
        " now() + interval '1 hour'), (:org, 'calendar.whatsapp_reminder', CAST(:d2 AS jsonb),"
        " 'pending', now() + interval '1 day')",
        org=org,
        d1=json.dumps({"message_id": message_ids[1]}),
        d2=json.dumps({"lead_id": lead_id, "phone": PHONE}),
    )
    return Subject(org, lead_id, headers, [attachment_key, recording_key], message_ids)


def _traces(owner: sa.Engine, needles: list[str]) -> list[str]:
    """Every (table.column) of any table whose text, varchar or JSON value holds a needle."""
    found: list[str] = []
    with owner.connect() as conn:
        columns = conn.execute(
            sa.text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'public' AND data_type IN"
                " ('text', 'character varying', 'jsonb', 'json', 'character')"
            )
        ).all()
        for table, column, _type in columns:
            for needle in needles:
                hit = conn.execute(
                    sa.text(
                        f'SELECT count(*) FROM "{table}"'
                        f' WHERE strpos(lower("{column}"::text), lower(:n)) > 0'
                    ),
                    {"n": needle},
                ).scalar_one()
                if hit:
                    found.append(f"{table}.{column} ∋ {needle}")
    return found


async def _reports(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    out = {}
    for name in REPORTS:
        r = await client.get(f"/api/v1/reports/{name}", headers=headers)
        assert r.status_code == 200, r.text
        out[name] = r.json()
    return out


async def test_export_then_erase_leaves_no_trace(
    client: httpx.AsyncClient, owner: sa.Engine, settings: Settings, database: Database
) -> None:
    s = await _subject(client, owner, settings)
    needles = [NAME, EMAIL, PHONE, PHONE.lstrip("+")]
    assert _traces(owner, needles), "the fixture did not store the person's data"

    # The export: a zip with every message, the attachment and the recording.
    r = await client.post(f"/api/v1/leads/{s.lead_id}/privacy/export", headers=s.headers)
    assert r.status_code == 202, r.text
    export_id = r.json()["id"]
    await run_until_idle(database, settings, types=PRIVACY_JOBS, timeout=60)
    r = await client.get(f"/api/v1/privacy/requests/{export_id}", headers=s.headers)
    assert r.json()["status"] == "done", r.text
    assert r.json()["receipt"]["contents"]["files_stored"] == 2
    r = await client.post(f"/api/v1/privacy/requests/{export_id}/link", headers=s.headers)
    assert r.status_code == 200, r.text
    url = r.json()["url"]
    r = await client.get(url, headers=s.headers)
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        names = archive.namelist()
        data = json.loads(archive.read("data.json"))
        assert any(n.startswith("attachments/") for n in names)
        assert any(n.startswith("recordings/") for n in names)
        recording = next(n for n in names if n.startswith("recordings/"))
        assert archive.read(recording) == b"ID3 the person's voice"
    assert data["lead"]["email"] == EMAIL
    assert {m["id"] for m in data["messages"]} == set(s.message_ids)
    assert len(data["message_attachments"]) == 1
    assert data["call_logs"][0]["transcription"].startswith("Bom dia")
    assert data["lead_consents"][0]["purpose"] == "email_marketing"
    assert data["lead_activities"] and data["calendar_events"] and data["ai_conversations"]
    # Single use.
    assert (await client.get(url, headers=s.headers)).status_code == 404

    before = await _reports(client, s.headers)
    # The person had unsubscribed from the marketing e-mail (upper case, as typed once).
    owner_sql(
        owner,
        "INSERT INTO email_suppressions (id, organization_id, email, reason, created_at)"
        " VALUES (gen_random_uuid(), :org, :email, 'unsubscribed', now())",
        org=s.org,
        email=EMAIL,
    )

    # The erasure.
    r = await client.post(f"/api/v1/leads/{s.lead_id}/privacy/erase", headers=s.headers)
    assert r.status_code == 202, r.text
    erasure_id = r.json()["id"]
    # Queued work for the lead sees the erasure at once: nothing will be sent.
    pending = owner_sql(
        owner,
        "SELECT job_type, status FROM background_jobs WHERE organization_id = :org"
        " AND job_type IN ('whatsapp.send', 'calendar.whatsapp_reminder')",
        org=s.org,
    )
    assert {status for _t, status in pending} == {"failed"}, pending
    assert owner_sql(owner, "SELECT status FROM messages WHERE id = :m", m=s.message_ids[1]) == [
        ("failed",)
    ]

    await run_until_idle(database, settings, types=PRIVACY_JOBS, timeout=60)
    r = await client.get(f"/api/v1/privacy/requests/{erasure_id}", headers=s.headers)
    receipt = r.json()["receipt"]
    assert r.json()["status"] == "done", r.text
    assert receipt["files_deleted"] == 2
    assert receipt["audit_rows_redacted"] >= 1

    assert _traces(owner, needles) == []
    # The opt-out outlives the data: the address, if it comes back, is still not mailed.
    async with tenant_transaction(database.sessionmaker, uuid.UUID(str(s.org))) as session:
        assert await campaigns.suppressed(session, uuid.UUID(str(s.org)), {EMAIL.upper()}) == {
            EMAIL.upper()
        }
        assert await campaigns.suppressed(session, uuid.UUID(str(s.org)), {"x@y.com"}) == set()
    storage = get_storage(settings)
    assert all(storage.local_path(k) is None for k in s.files)
    assert await _reports(client, s.headers) == before

    # The lead is still there (anonymised, counted), marked as erased; a second erasure or
    # an export is refused.
    r = await client.get(f"/api/v1/leads/{s.lead_id}", headers=s.headers)
    assert r.status_code == 200 and r.json()["email"] is None
    r = await client.post(f"/api/v1/leads/{s.lead_id}/privacy/erase", headers=s.headers)
    assert r.status_code == 409 and r.json()["code"] == "lead_erased"


async def test_export_link_is_single_use_expiring_and_personal(
    client: httpx.AsyncClient, owner: sa.Engine, settings: Settings, database: Database
) -> None:
    admin = await signup(client)
    headers = admin["headers"]
    manager = await join_and_login(client, headers, "manager")
    lead = await create_lead(client, headers, full_name="Rui Exportado", email="rui@ex.com")
    r = await client.post(f"/api/v1/leads/{lead['id']}/privacy/export", headers=headers)
    assert r.status_code == 202, r.text
    request_id = r.json()["id"]
    await run_until_idle(database, settings, types=PRIVACY_JOBS, timeout=60)

    url = (
        await client.post(f"/api/v1/privacy/requests/{request_id}/link", headers=headers)
    ).json()["url"]
    # Another member of the same organization: refused (as if the link did not exist), and
    # the link still works for the one who asked.
    assert (await client.get(url, headers=manager)).status_code == 404
    r = await client.post(f"/api/v1/privacy/requests/{request_id}/link", headers=manager)
    assert r.status_code == 404
    assert (await client.get(url, headers=headers)).status_code == 200
    assert (await client.get(url, headers=headers)).status_code == 404  # used

    # Expired.
    url = (
        await client.post(f"/api/v1/privacy/requests/{request_id}/link", headers=headers)
    ).json()["url"]
    owner_sql(
        owner,
        "UPDATE privacy_requests SET expires_at = now() - interval '1 minute' WHERE id = :id",
        id=request_id,
    )
    r = await client.get(url, headers=headers)
    assert r.status_code == 404 and r.json()["code"] == "export_link_invalid"

    # A sales member cannot erase (no leads:delete); an unknown lead is 404.
    sales = await join_and_login(client, headers, "sales")
    r = await client.post(f"/api/v1/leads/{lead['id']}/privacy/erase", headers=sales)
    assert r.status_code == 403
    r = await client.post(f"/api/v1/leads/{uuid.uuid4()}/privacy/erase", headers=headers)
    assert r.status_code == 404


async def test_organization_export_is_owner_only_and_leaves_secrets_out(
    client: httpx.AsyncClient, settings: Settings, database: Database
) -> None:
    admin = await signup(client)
    headers = admin["headers"]
    await create_lead(client, headers, full_name="Lia Organizada", email="lia@ex.com")
    r = await client.post(
        "/api/v1/api-keys", headers=headers, json={"name": "segredo", "scopes": ["leads:read"]}
    )
    assert r.status_code == 201, r.text
    manager = await join_and_login(client, headers, "manager")
    r = await client.post("/api/v1/privacy/organization/export", headers=manager)
    assert r.status_code == 403
    r = await client.post("/api/v1/privacy/organization/export", headers=headers)
    assert r.status_code == 202, r.text
    request_id = r.json()["id"]
    await run_until_idle(database, settings, types=["privacy.org_export"], timeout=60)
    r = await client.post(f"/api/v1/privacy/requests/{request_id}/link", headers=headers)
    assert r.status_code == 200, r.text
    r = await client.get(r.json()["url"], headers=headers)
    assert r.status_code == 200
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        data = json.loads(archive.read("data.json"))
    assert data["organization"]["id"] == admin["organization_id"]
    assert [lead["full_name"] for lead in data["leads"]] == ["Lia Organizada"]
    assert data["api_keys"] and all("api_key_hash" not in k for k in data["api_keys"])
    assert "privacy_requests" not in data and "background_jobs" not in data
