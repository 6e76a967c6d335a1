"""Switching the active voice provider through the shared provider_migrations mechanism: a
call in progress finishes on the old provider (its signed callbacks still verified with the
old configuration), new calls use the new one, rollback is one action, every step audited."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
from tests.factories import (
    catch_up_with_database,
    create_lead,
    join_and_login,
    owner_sql,
    signup,
    web_login,
)

from lovedcrm.calls import switching
from lovedcrm.calls.models import CallLog, VoipConfig
from lovedcrm.calls.providers.twilio import signature
from lovedcrm.config import Settings
from lovedcrm.core.clock import ManualClock
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.jobs.engine import run_until_idle
from lovedcrm.messaging.providers.base import ConnectionCheck

TOKEN = "twilio-auth-token-0123456789"


class FakeCheck:
    """The injectable voice connection check: answers ok unless the provider is down."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.checked: list[str] = []

    async def __call__(self, settings: Settings, row: VoipConfig) -> ConnectionCheck:
        self.checked.append(row.provider_type)
        if row.provider_type in self.down:
            return ConnectionCheck(ok=False, status="failed", detail="HTTP 503 from provider")
        return ConnectionCheck(ok=True, status="connected", detail="ok")


@pytest.fixture
def fake_check() -> Iterator[FakeCheck]:
    check = FakeCheck()
    previous = switching.use_check(check)
    try:
        yield check
    finally:
        switching.use_check(previous)


async def _me(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get("/api/v1/auth/me", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _setup(client: httpx.AsyncClient) -> dict[str, Any]:
    admin = await signup(client)
    h = admin["headers"]
    r = await client.patch("/api/v1/auth/me/profile", headers=h, json={"phone": "+5511988887777"})
    assert r.status_code == 200, r.text
    twilio = await client.post(
        "/api/v1/calls/configs",
        headers=h,
        json={
            "provider_type": "twilio",
            "account_sid": "AC0123456789abcdef",
            "auth_token": TOKEN,
            "business_numbers": ["+551130001000"],
            "cost_per_minute": "0.0140",
        },
    )
    assert twilio.status_code == 201, twilio.text
    assert twilio.json()["is_active"] is True  # the organization's first
    sandbox = await client.post(
        "/api/v1/calls/configs",
        headers=h,
        json={"provider_type": "sandbox", "business_numbers": ["+551130002000"]},
    )
    assert sandbox.status_code == 201, sandbox.text
    lead = await create_lead(client, h, phone="+5511977776666")
    me = await _me(client, h)
    return {
        "h": h,
        "org": str(me["organization_id"]),
        "user": me["user"]["id"],
        "email": me["user"]["email"],
        "twilio": twilio.json(),
        "sandbox": sandbox.json(),
        "lead": lead,
    }


def _call_in_progress(owner: sa.Engine, s: dict[str, Any], sid: str) -> str:
    """A call placed through Twilio before the switch, still ringing."""
    call_id = str(uuid.uuid4())
    owner_sql(
        owner,
        "INSERT INTO call_logs (id, organization_id, lead_id, user_id, provider_type,"
        " provider_call_id, direction, from_number, to_number, status, metadata) VALUES"
        " (CAST(:id AS uuid), CAST(:org AS uuid), CAST(:lead AS uuid), CAST(:u AS uuid),"
        " 'twilio', :sid, 'outbound', '+551130001000', '+5511977776666', 'in_progress',"
        " CAST(:meta AS jsonb))",
        id=call_id,
        org=s["org"],
        lead=s["lead"]["id"],
        u=s["user"],
        sid=sid,
        meta=json.dumps({"voip_config_id": s["twilio"]["id"]}),
    )
    return call_id


async def _signed_twilio_callback(
    client: httpx.AsyncClient, settings: Settings, config_id: str, form: dict[str, str]
) -> httpx.Response:
    path = f"/webhooks/calls/{config_id}"
    url = settings.base_url.rstrip("/") + path
    body = urlencode(form)
    sig = signature(TOKEN, url, list(form.items()))
    return await client.post(
        path,
        content=body,
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": sig,
        },
    )


async def test_switch_with_a_call_in_progress_then_rollback(
    client: httpx.AsyncClient,
    owner: sa.Engine,
    database: Database,
    settings: Settings,
    fake_check: FakeCheck,
    manual_clock: ManualClock,  # the sandbox call stays where it is
) -> None:
    s = await _setup(client)
    h = s["h"]
    sid = "CA" + uuid.uuid4().hex
    call_id = _call_in_progress(owner, s, sid)

    # The Twilio configuration cannot be removed while it is active or has a call running.
    r = await client.delete(f"/api/v1/calls/configs/{s['twilio']['id']}", headers=h)
    assert r.status_code == 409, r.text

    r = await client.post(f"/api/v1/calls/configs/{s['sandbox']['id']}/activate", headers=h)
    assert r.status_code == 200, r.text
    migration = r.json()
    assert migration["migration_type"] == "voice"
    assert migration["status"] == "completed"
    assert (migration["from_provider"], migration["to_provider"]) == ("twilio", "sandbox")
    assert [st["code"] for st in migration["migration_data"]["steps"]] == [
        "requested",
        "checking",
        "switched",
    ]
    assert fake_check.checked == ["sandbox"]

    # Still 409: the call placed through Twilio has not finished (its callbacks need it).
    r = await client.delete(f"/api/v1/calls/configs/{s['twilio']['id']}", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "config_has_calls_in_progress"

    # The call in progress finishes on Twilio: its signed callback is verified with the old
    # configuration and applied, priced at Twilio's rate.
    async with tenant_transaction(database.sessionmaker, uuid.UUID(s["org"])) as session:
        call = await session.get(CallLog, uuid.UUID(call_id))
        assert call is not None
        row = await switching.config_for_call(session, call)
        assert row is not None and str(row.id) == s["twilio"]["id"] and not row.is_active
        active = await switching.active_config(session, uuid.UUID(s["org"]))
        assert active is not None and str(active.id) == s["sandbox"]["id"]
    r = await _signed_twilio_callback(
        client,
        settings,
        s["twilio"]["id"],
        {"CallSid": sid, "CallStatus": "completed", "CallDuration": "61", "SequenceNumber": "3"},
    )
    assert r.status_code == 200, r.text
    # Acknowledged at once, applied by the calls.apply_events job.
    catch_up_with_database(database)
    await run_until_idle(database, settings, types=["calls.apply_events"])
    [(status, cost, currency)] = owner_sql(
        owner,
        "SELECT status, cost_amount, cost_currency FROM call_logs WHERE id = CAST(:id AS uuid)",
        id=call_id,
    )
    assert status == "completed" and str(cost) == "0.02800" and currency == "USD"
    # A wrongly signed callback is still refused after the switch.
    r = await client.post(
        f"/webhooks/calls/{s['twilio']['id']}",
        content="CallSid=x&CallStatus=completed",
        headers={"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": "no"},
    )
    assert r.status_code == 403

    # New calls use the new provider.
    r = await client.post("/api/v1/calls", headers=h, json={"lead_id": s["lead"]["id"]})
    assert r.status_code in (200, 201, 202), r.text
    assert r.json()["provider_type"] == "sandbox"

    # Rollback is one action; rolling back something not completed is a 409.
    r = await client.post(f"/api/v1/calls/migrations/{migration['id']}/rollback", headers=h)
    assert r.status_code == 200, r.text
    back = r.json()
    assert back["status"] == "completed" and back["to_provider"] == "twilio"
    assert back["migration_data"]["rollback_of"] == migration["id"]
    configs = (await client.get("/api/v1/calls/configs", headers=h)).json()
    assert [c["id"] for c in configs if c["is_active"]] == [s["twilio"]["id"]]

    history = (await client.get("/api/v1/calls/migrations", headers=h)).json()
    assert [m["id"] for m in history] == [back["id"], migration["id"]]
    actions = owner_sql(
        owner,
        "SELECT action FROM audit_logs WHERE organization_id = CAST(:o AS uuid)"
        " AND resource_type = 'provider_migration'",
        o=s["org"],
    )
    steps = ["pending", "in_progress", "completed"]
    assert sorted(a for (a,) in actions) == sorted([f"provider_migration.{x}" for x in steps] * 2)


async def test_failed_check_changes_nothing_and_bad_requests(
    client: httpx.AsyncClient, owner: sa.Engine, fake_check: FakeCheck
) -> None:
    s = await _setup(client)
    h = s["h"]
    fake_check.down.add("sandbox")
    r = await client.post(f"/api/v1/calls/configs/{s['sandbox']['id']}/activate", headers=h)
    assert r.status_code == 200
    failed = r.json()
    assert failed["status"] == "failed"
    assert "HTTP 503" in failed["migration_data"]["steps"][-1]["note"]
    configs = (await client.get("/api/v1/calls/configs", headers=h)).json()
    assert [c["provider_type"] for c in configs if c["is_active"]] == ["twilio"]

    r = await client.post(f"/api/v1/calls/migrations/{failed['id']}/rollback", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "not_completed"
    r = await client.post(f"/api/v1/calls/configs/{s['twilio']['id']}/activate", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "already_active"
    r = await client.post(f"/api/v1/calls/configs/{uuid.uuid4()}/activate", headers=h)
    assert r.status_code == 404
    r = await client.post(f"/api/v1/calls/migrations/{uuid.uuid4()}/rollback", headers=h)
    assert r.status_code == 404
    # Voice history holds only voice switches, and a WhatsApp switch is not a voice one.
    wa = await client.post("/api/v1/whatsapp/configs", headers=h, json={"provider_type": "sandbox"})
    wa_switch = (
        await client.post(f"/api/v1/whatsapp/configs/{wa.json()['id']}/activate", headers=h)
    ).json()
    r = await client.post(f"/api/v1/calls/migrations/{wa_switch['id']}/rollback", headers=h)
    assert r.status_code == 404
    voice = (await client.get("/api/v1/calls/migrations", headers=h)).json()
    assert [m["id"] for m in voice] == [failed["id"]]

    # Another organization's configuration is not found; a sales member may not switch.
    other = await signup(client)
    r = await client.post(
        f"/api/v1/calls/configs/{s['sandbox']['id']}/activate", headers=other["headers"]
    )
    assert r.status_code == 404
    sales = await join_and_login(client, h, "sales")
    r = await client.post(f"/api/v1/calls/configs/{s['sandbox']['id']}/activate", headers=sales)
    assert r.status_code == 403
    r = await client.get("/api/v1/calls/migrations", headers=sales)
    assert r.status_code == 403


async def test_switching_page_activate_and_undo(
    client: httpx.AsyncClient, fake_check: FakeCheck
) -> None:
    s = await _setup(client)
    await web_login(client, s["email"])
    page = "/settings/telephony/switching"
    r = await client.get(page)
    assert r.status_code == 200, r.text
    assert "Provedor das novas chamadas" in r.text
    assert f'action="{page}/{s["sandbox"]["id"]}/activate"' in r.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
    assert csrf is not None
    r = await client.post(
        f"{page}/{s['sandbox']['id']}/activate",
        data={"csrf_token": csrf.group(1), "back": page},
    )
    assert r.status_code == 303 and r.headers["location"] == page
    await client.post("/preferences/language", data={"csrf_token": csrf.group(1), "language": "en"})
    r = await client.get(page)
    assert "Provider for new calls" in r.text
    rows = re.findall(r'<tr id="voice-migration-([^"]+)">', r.text)
    assert len(rows) == 1
    assert f'action="{page}/migrations/{rows[0]}/rollback"' in r.text
    r = await client.post(
        f"{page}/migrations/{rows[0]}/rollback",
        data={"csrf_token": csrf.group(1), "back": "https://evil.example/"},
    )
    assert r.status_code == 303 and r.headers["location"] == page  # only our own pages
    r = await client.get(page)
    assert len(re.findall(r'<tr id="voice-migration-', r.text)) == 2
