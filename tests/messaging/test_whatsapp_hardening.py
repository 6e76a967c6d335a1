"""What an attacker and a careless admin found in WhatsApp (issue 10), through the API and the
pages against the fake providers on loopback:

- provider URLs go through the outbound guard: refused at save time (a literal loopback or
  metadata address, ``localhost``) and at call time (a name that resolves to loopback, a
  redirect to loopback), with the reason, unless the installation allows the address;
- a masked secret sent back keeps the stored one; a secret that cannot go into an HTTP
  header is refused naming the field (and one stored before is a failed check, not a 500);
- marking a conversation read needs what answering needs: a viewer only looks;
- webhook bodies that are not objects fail for good on the first try;
- a sender that is not a phone number is kept unlinked, never a lead or a merge key."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from lovedcrm.app import create_app
from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.messaging import whatsapp_configs
from lovedcrm.messaging.models import WhatsappConfig
from lovedcrm.messaging.providers.cloud import CloudApiProvider
from lovedcrm.messaging.providers.waha import WahaProvider
from tests.factories import (
    activate_sandbox,
    create_lead,
    csrf_token,
    join_and_login,
    owner_sql,
    run_wa_jobs,
    signup,
    web_accept_invitation,
    web_signup,
)
from tests.fakes import FakeServer, RecordedRequest, Reply
from tests.fakes.dns import FakeDns
from tests.fakes.graph_api import (
    ACCESS_TOKEN,
    PHONE_NUMBER_ID,
    FakeGraphApi,
    meta_signature,
    meta_text_message,
)
from tests.fakes.waha import API_KEY, FakeWaha, waha_message_event

APP_SECRET = "meta-app-secret-123"
CONFIGS = "/api/v1/whatsapp/configs"


class Redirector(FakeServer):
    """A "Graph API" that answers every call with a redirect to ``location``."""

    location = "http://127.0.0.2/"

    def handle(self, request: RecordedRequest) -> Reply:
        return Reply(302, b"", "text/plain", headers={"Location": self.location})


@pytest.fixture(scope="module")
def graph() -> Iterator[FakeGraphApi]:
    with FakeGraphApi() as fake:
        yield fake


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDns]:
    fake = FakeDns(monkeypatch)
    yield fake
    fake.release_all()


@pytest.fixture(scope="module")
def strict_settings(settings: Settings) -> Settings:
    """An installation that allows no private address (the default)."""
    return settings.model_copy(update={"outbound_allow": ()})


@pytest.fixture
async def strict(strict_settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(strict_settings, database=database)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.31", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def business(graph_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "provider_type": "business_api",
        "business_phone_id": PHONE_NUMBER_ID,
        "access_token": ACCESS_TOKEN,
        "app_secret": APP_SECRET,
        "graph_base_url": graph_url,
        **extra,
    }


def fields_of(r: httpx.Response) -> dict[str, str]:
    return {e["field"]: e["message"] for e in r.json().get("errors", [])}


async def check(c: httpx.AsyncClient, h: dict[str, str], config_id: str) -> dict[str, Any]:
    r = await c.post(f"{CONFIGS}/{config_id}/check", headers=h)
    assert r.status_code == 200, r.text
    return dict(r.json())


# --- provider URLs go through the outbound guard -------------------------------------------------


async def test_provider_urls_refused_at_save_time(strict: httpx.AsyncClient) -> None:
    h = (await signup(strict))["headers"]
    for url, why in [
        ("http://127.0.0.1:9", "loopback"),
        ("http://localhost:3000", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::ffff:169.254.169.254]", "link-local"),
        ("http://10.0.0.7:3000", "private"),
    ]:
        r = await strict.post(CONFIGS, headers=h, json=business(url))
        assert r.status_code == 422, (url, r.text)
        assert why in fields_of(r)["graph_base_url"], (url, r.json())
        bridge = {"provider_type": "web_unofficial", "session_id": "s", "bridge_url": url}
        r = await strict.post(CONFIGS, headers=h, json=bridge)
        assert r.status_code == 422 and why in fields_of(r)["bridge_url"], (url, r.text)
    # Editing an existing configuration is checked the same way.
    r = await strict.post(CONFIGS, headers=h, json=business("https://graph.facebook.com"))
    assert r.status_code == 201, r.text
    r = await strict.patch(
        f"{CONFIGS}/{r.json()['id']}", headers=h, json={"graph_base_url": "http://127.0.0.1:9"}
    )
    assert r.status_code == 422 and "loopback" in fields_of(r)["graph_base_url"]


async def test_a_name_resolving_to_loopback_fails_the_check_naming_why(
    strict: httpx.AsyncClient, dns: FakeDns
) -> None:
    """Saved (a name is only resolved when called), then "Test connection" refuses it: the
    bridge on loopback never hears of it."""
    h = (await signup(strict))["headers"]
    dns.answer("waha.example.test", "127.0.0.1")
    with FakeWaha(api_key=API_KEY) as waha:
        waha.add_session("default", "WORKING")
        body = {
            "provider_type": "web_unofficial",
            "session_id": "default",
            "bridge_url": f"http://waha.example.test:{waha.port}",
            "bridge_api_key": API_KEY,
        }
        r = await strict.post(CONFIGS, headers=h, json=body)
        assert r.status_code == 201, r.text
        result = await check(strict, h, r.json()["id"])
        assert result["ok"] is False and result["status"] == "failed", result
        assert "waha.example.test resolves to 127.0.0.1" in result["detail"]
        assert "loopback" in result["detail"]
        assert waha.requests == []


async def test_an_address_allowed_once_is_refused_when_no_longer_allowed(
    client: httpx.AsyncClient, strict: httpx.AsyncClient, graph: FakeGraphApi
) -> None:
    """Saved where loopback was allowed; checked and activated where it is not: a failed
    check naming why, and nothing switched (no 500)."""
    h = (await signup(client))["headers"]
    r = await client.post(CONFIGS, headers=h, json=business(graph.url))
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert (await check(client, h, cid))["ok"] is True
    before = len(graph.requests)
    result = await check(strict, h, cid)
    assert result["ok"] is False and "127.0.0.1 is a loopback address" in result["detail"]
    r = await strict.post(f"{CONFIGS}/{cid}/activate", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "failed", r.text
    assert len(graph.requests) == before


async def test_a_redirect_to_loopback_is_not_followed(client: httpx.AsyncClient) -> None:
    h = (await signup(client))["headers"]
    with Redirector() as redirector:
        redirector.location = f"http://127.0.0.2:{redirector.port}/v21.0/{PHONE_NUMBER_ID}"
        r = await client.post(CONFIGS, headers=h, json=business(redirector.url))
        assert r.status_code == 201, r.text
        result = await check(client, h, r.json()["id"])
        assert len(redirector.requests) == 1  # the first call only
    assert result["ok"] is False, result
    assert "redirecting to http://127.0.0.2" in result["detail"]
    assert "loopback" in result["detail"] and "not followed" in result["detail"]


# --- secrets -------------------------------------------------------------------------------------


async def test_masked_secrets_sent_back_keep_the_stored_ones(
    client: httpx.AsyncClient, graph: FakeGraphApi, settings: Settings, database: Database
) -> None:
    data = await signup(client)
    h = data["headers"]
    r = await client.post(CONFIGS, headers=h, json=business(graph.url, label="Antes"))
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    shown = (await client.get(f"{CONFIGS}/{cid}", headers=h)).json()
    assert shown["access_token"].startswith("••••") and ACCESS_TOKEN not in json.dumps(shown)
    # The form as GET gave it, sent back with one real change.
    r = await client.patch(
        f"{CONFIGS}/{cid}",
        headers=h,
        json={
            "label": "Depois",
            "access_token": shown["access_token"],
            "app_secret": shown["app_secret"],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "Depois" and r.json()["access_token"] == shown["access_token"]
    async with tenant_transaction(database.sessionmaker, uuid.UUID(data["organization_id"])) as s:
        row = await s.get(WhatsappConfig, uuid.UUID(cid))
        assert row is not None
        stored = whatsapp_configs.decrypt(settings, row)
    assert stored.access_token == ACCESS_TOKEN and stored.app_secret == APP_SECRET
    assert (await check(client, h, cid))["ok"] is True  # the real token still works


async def test_secrets_that_cannot_go_in_a_header_are_refused_naming_the_field(
    client: httpx.AsyncClient, graph: FakeGraphApi
) -> None:
    h = (await signup(client))["headers"]
    for name, value in [
        ("access_token", "tökén-ação"),
        ("access_token", "EAAG\r\nX-Injected: 1"),
        ("access_token", "••••••••"),
        ("app_secret", "segrédo"),
    ]:
        r = await client.post(CONFIGS, headers=h, json=business(graph.url, **{name: value}))
        assert r.status_code == 422, (name, value, r.text)
        assert set(fields_of(r)) == {name}, r.json()
    bridge = {"provider_type": "web_unofficial", "session_id": "s", "bridge_url": graph.url}
    r = await client.post(CONFIGS, headers=h, json={**bridge, "bridge_api_key": "chave\tsecreta"})
    assert r.status_code == 422 and set(fields_of(r)) == {"bridge_api_key"}
    r = await client.post(CONFIGS, headers=h, json=business(graph.url))
    cid = r.json()["id"]
    r = await client.patch(f"{CONFIGS}/{cid}", headers=h, json={"access_token": "•••• ü"})
    assert r.status_code == 422 and set(fields_of(r)) == {"access_token"}


async def test_a_bad_secret_stored_before_is_a_failed_check_not_a_crash(
    client: httpx.AsyncClient, graph: FakeGraphApi, settings: Settings, database: Database
) -> None:
    data = await signup(client)
    h, org = data["headers"], uuid.UUID(data["organization_id"])
    r = await client.post(CONFIGS, headers=h, json=business(graph.url))
    cid = r.json()["id"]
    async with tenant_transaction(database.sessionmaker, org) as s:
        row = await s.get(WhatsappConfig, uuid.UUID(cid))
        assert row is not None
        row.access_token = whatsapp_configs.encrypt(settings, org, "access_token", "••••••••")
    result = await check(client, h, cid)
    assert result["ok"] is False and "access token" in result["detail"]
    r = await client.post(f"{CONFIGS}/{cid}/activate", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "failed", r.text


async def test_the_settings_page_refuses_a_bad_secret_next_to_its_input(
    client: httpx.AsyncClient, graph: FakeGraphApi
) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, "/settings/whatsapp")
    form = {"csrf_token": csrf, **business(graph.url, access_token="tökén")}
    r = await client.post("/settings/whatsapp", data=form)
    assert r.status_code == 422, r.text[:500]
    assert 'id="new-business_api-access_token-error"' in r.text
    assert "Cole o segredo exatamente como foi emitido" in r.text  # pt-BR, the default
    assert "tökén" not in r.text  # a secret typed into a failed form is not echoed back
    form = {"csrf_token": csrf, **business("http://169.254.169.254/")}
    r = await client.post("/settings/whatsapp", data=form)
    assert r.status_code == 422 and 'id="new-business_api-graph_base_url-error"' in r.text
    assert "Este endereço nunca é chamado" in r.text
    form = {"csrf_token": csrf, **business("http://10.0.0.7:3000")}
    r = await client.post("/settings/whatsapp", data=form)
    assert r.status_code == 422 and "LOVEDCRM_OUTBOUND_ALLOW" in r.text


# --- reading is not writing ----------------------------------------------------------------------


async def _conversation_with_unread(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> tuple[dict[str, str], dict[str, str], str]:
    """An organization with a sales member whose lead sent a message; (admin headers, sales
    headers, lead id)."""
    h = (await signup(client))["headers"]
    await activate_sandbox(client, h)
    sales = await join_and_login(client, h, "sales")
    lead = await create_lead(client, sales, phone="+5511955550001")
    r = await client.post(
        "/api/v1/whatsapp/sandbox/inbound",
        headers=h,
        json={"from_number": "+5511955550001", "content": "Oi!"},
    )
    assert r.status_code == 202, r.text
    await run_wa_jobs(database, settings)
    return h, sales, lead["id"]


async def _unread(client: httpx.AsyncClient, h: dict[str, str], lead_id: str) -> int:
    convs = (await client.get("/api/v1/conversations", headers=h)).json()
    return int(next(c["unread"] for c in convs if c["lead_id"] == lead_id))


async def test_a_viewer_cannot_mark_conversations_read(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    h, sales, lead_id = await _conversation_with_unread(client, database, settings)
    viewer = await join_and_login(client, h, "viewer")
    r = await client.post(f"/api/v1/leads/{lead_id}/messages/read", headers=viewer)
    assert r.status_code == 403, r.text
    assert await _unread(client, h, lead_id) == 1
    r = await client.post(f"/api/v1/leads/{lead_id}/messages/read", headers=sales)
    assert r.status_code == 200 and r.json() == {"read": 1}
    assert await _unread(client, h, lead_id) == 0


async def test_a_viewer_opening_the_conversation_page_leaves_it_unread(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    h, _, lead_id = await _conversation_with_unread(client, database, settings)
    await web_accept_invitation(client, h, role="viewer")
    page = await client.get(f"/inbox/{lead_id}")
    assert page.status_code == 200 and "Oi!" in page.text
    r = await client.get(f"/inbox/{lead_id}/thread", params={"read": "1"})
    assert r.status_code == 200
    assert await _unread(client, h, lead_id) == 1


# --- inbound bodies and senders ------------------------------------------------------------------


async def cloud_org(client: httpx.AsyncClient, graph: FakeGraphApi) -> tuple[dict[str, Any], str]:
    data = await signup(client)
    r = await client.post(CONFIGS, headers=data["headers"], json=business(graph.url))
    assert r.status_code == 201, r.text
    return data, r.json()["id"]


async def post_signed(client: httpx.AsyncClient, config_id: str, body: bytes) -> None:
    r = await client.post(
        f"/webhooks/whatsapp/{config_id}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": meta_signature(body, APP_SECRET),
        },
    )
    assert r.status_code == 200, r.text


async def test_bodies_that_are_not_objects_fail_for_good_at_once(
    client: httpx.AsyncClient,
    graph: FakeGraphApi,
    database: Database,
    settings: Settings,
    owner: sa.Engine,
) -> None:
    data, cid = await cloud_org(client, graph)
    deep: dict[str, Any] = {"entry": [{"changes": [{"value": {}}]}]}
    for _ in range(40):
        deep = {"entry": [deep]}
    bodies = {
        b"null": "not a JSON object (got null)",
        b"[]": "not a JSON object (got list)",
        b'"text"': "not a JSON object (got str)",
        b"[" * 5000 + b"]" * 5000: "nested too deeply",
        json.dumps(deep).encode(): "nests more than",
    }
    for body in bodies:
        await post_signed(client, cid, body)
    await run_wa_jobs(database, settings)
    rows = owner_sql(
        owner,
        "SELECT job_data->>'body', status, attempts, error_message FROM background_jobs "
        "WHERE job_type = 'whatsapp.inbound' AND organization_id = :o",
        o=data["organization_id"],
    )
    assert len(rows) == len(bodies)
    for body, status, attempts, error in rows:
        expected = bodies[body.encode()]
        assert (status, attempts) == ("failed", 1), (body[:20], status, attempts, error)
        assert expected in error and "Error" not in error, error


async def test_senders_that_are_not_numbers_stay_unlinked(
    client: httpx.AsyncClient,
    graph: FakeGraphApi,
    database: Database,
    settings: Settings,
    owner: sa.Engine,
) -> None:
    data, cid = await cloud_org(client, graph)
    bad = ["abc", "+", "1" * 40, "٥٥١١٩٨٧٦٥٤٣٢١"]
    for sender in [*bad, "5511966660001"]:
        body = meta_text_message(f"from {sender}", from_number=sender, name="Quem")
        await post_signed(client, cid, json.dumps(body).encode())
    await run_wa_jobs(database, settings)
    leads = (await client.get("/api/v1/leads", headers=data["headers"])).json()
    assert [lead["phone"] for lead in leads["items"]] == ["+5511966660001"]
    rows = owner_sql(
        owner,
        "SELECT metadata->>'sender', lead_id, conversation_id, from_number FROM messages "
        "WHERE organization_id = :o AND lead_id IS NULL ORDER BY created_at",
        o=data["organization_id"],
    )
    assert sorted(r[0] for r in rows) == sorted(bad)
    assert all(r[1:] == (None, None, None) for r in rows)


def test_adapters_never_turn_garbage_into_a_number() -> None:
    http = whatsapp_configs.idle_client()
    cloud = CloudApiProvider(
        client=http, phone_number_id=PHONE_NUMBER_ID, access_token="t", app_secret=None
    )
    for sender in ("abc", "+", "٥٥١١٩٨٧٦٥٤٣٢١", "1" * 40):
        [msg] = cloud.parse_webhook(meta_text_message("x", from_number=sender)).messages
        assert msg.from_number is None and msg.sender == sender
    [msg] = cloud.parse_webhook(meta_text_message("x", from_number="5511987654321")).messages
    assert msg.from_number == "+5511987654321"
    waha = WahaProvider(
        client=http, base_url="http://waha", api_key=None, session="s", hmac_key="k"
    )
    [msg] = waha.parse_webhook(waha_message_event("x", from_="abc@c.us")).messages
    assert msg.from_number is None and msg.sender == "abc@c.us"
    assert waha.parse_webhook(waha_message_event("x", from_="1203634@g.us")).messages == []


async def test_lead_phones_are_validated_as_e164(client: httpx.AsyncClient) -> None:
    h = (await signup(client))["headers"]
    for phone in ("abc", "+", "1" * 40, "+0000000000"):
        r = await client.post("/api/v1/leads", headers=h, json={"full_name": "X", "phone": phone})
        assert r.status_code == 422 and "phone" in fields_of(r), (phone, r.text)
    lead = await create_lead(client, h, phone="٠١١ ٩٨٧٦٥-٤٣٢١")  # Arabic-Indic digits
    assert lead["phone"] == "+5511987654321"
