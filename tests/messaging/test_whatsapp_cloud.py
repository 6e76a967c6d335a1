"""The Cloud API end to end: Meta's webhooks signed as Meta signs them, posted to the app,
processed by the jobs; sends to a fake Graph API on loopback. Also the WAHA webhook."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from lovedcrm.config import Settings
from lovedcrm.core.clock import ManualClock
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import set_tenant
from lovedcrm.messaging import whatsapp
from lovedcrm.messaging.models import Message, WhatsappConfig
from lovedcrm.messaging.whatsapp_configs import decrypt
from tests.factories import (
    catch_up_with_database,
    create_lead,
    create_template,
    make_due,
    run_wa_jobs,
    signup,
)
from tests.fakes.graph_api import (
    ACCESS_TOKEN,
    PHONE_NUMBER_ID,
    FakeGraphApi,
    meta_image_message,
    meta_signature,
    meta_status,
    meta_text_message,
)
from tests.fakes.waha import (
    API_KEY,
    FakeWaha,
    waha_ack_event,
    waha_headers,
    waha_message_event,
    waha_session_event,
)

APP_SECRET = "meta-app-secret-123"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16


@pytest.fixture(scope="module")
def graph() -> Iterator[FakeGraphApi]:
    with FakeGraphApi() as fake:
        yield fake


@pytest.fixture
async def org(client: httpx.AsyncClient, graph: FakeGraphApi) -> dict[str, Any]:
    data = await signup(client, full_name="Carla Cloud")
    h = data["headers"]
    r = await client.post(
        "/api/v1/whatsapp/configs",
        headers=h,
        json={
            "provider_type": "business_api",
            "label": "Comercial",
            "business_phone_id": PHONE_NUMBER_ID,
            "access_token": ACCESS_TOKEN,
            "app_secret": APP_SECRET,
            "graph_base_url": graph.url,
        },
    )
    assert r.status_code == 201, r.text
    cfg = r.json()
    assert ACCESS_TOKEN not in r.text and APP_SECRET not in r.text  # masked
    assert cfg["webhook_url"].endswith(f"/webhooks/whatsapp/{cfg['id']}")
    r = await client.post(f"/api/v1/whatsapp/configs/{cfg['id']}/activate", headers=h)
    assert r.json()["status"] == "completed", r.text
    data["config"] = cfg
    return data


async def post_meta(
    client: httpx.AsyncClient, config_id: str, payload: dict[str, Any], secret: str = APP_SECRET
) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await client.post(
        f"/webhooks/whatsapp/{config_id}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": meta_signature(body, secret),
        },
    )


def _count_inbound_jobs(database: Database, org_id: str) -> int:
    engine = create_engine(database.owner_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM background_jobs "
                        "WHERE job_type = 'whatsapp.inbound' AND organization_id = :o"
                    ),
                    {"o": org_id},
                ).scalar_one()
            )
    finally:
        engine.dispose()


async def _conversations(client: httpx.AsyncClient, h: dict[str, str]) -> list[dict[str, Any]]:
    return list((await client.get("/api/v1/conversations", headers=h)).json())


async def _messages(client: httpx.AsyncClient, h: dict[str, str], lead_id: str) -> list[Any]:
    return list((await client.get(f"/api/v1/leads/{lead_id}/messages", headers=h)).json())


async def test_meta_verification_handshake(client: httpx.AsyncClient, org: dict[str, Any]) -> None:
    cfg = org["config"]
    url = f"/webhooks/whatsapp/{cfg['id']}"
    token = cfg["webhook_verify_token"]
    ok = await client.get(
        url, params={"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158"}
    )
    assert ok.status_code == 200 and ok.text == "1158"
    bad = await client.get(
        url, params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"}
    )
    assert bad.status_code == 403
    unknown = await client.get(f"/webhooks/whatsapp/{uuid.uuid4()}", params={"hub.mode": "x"})
    assert unknown.status_code == 404


async def test_bad_or_missing_signature_stores_nothing(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database
) -> None:
    cid, org_id = org["config"]["id"], org["organization_id"]
    before = _count_inbound_jobs(database, org_id)
    payload = meta_text_message("hi")
    r = await post_meta(client, cid, payload, secret="wrong-secret")
    assert r.status_code == 403 and r.json()["code"] == "webhook_signature_invalid"
    body = json.dumps(payload).encode()
    r = await client.post(f"/webhooks/whatsapp/{cid}", content=body)
    assert r.status_code == 401 and r.json()["code"] == "webhook_signature_missing"
    # Tampered: signed, then changed.
    sig = meta_signature(body, APP_SECRET)
    r = await client.post(
        f"/webhooks/whatsapp/{cid}",
        content=body.replace(b"hi", b"ho"),
        headers={"X-Hub-Signature-256": sig},
    )
    assert r.status_code == 403
    assert _count_inbound_jobs(database, org_id) == before


async def test_redelivered_webhook_stores_one_message(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database, settings: Settings
) -> None:
    h, cid = org["headers"], org["config"]["id"]
    payload = meta_text_message("Olá, quero um orçamento", from_number="5511987654444", name="Rita")
    for _ in range(3):
        assert (await post_meta(client, cid, payload)).status_code == 200
    await run_wa_jobs(database, settings)
    convs = await _conversations(client, h)
    assert len(convs) == 1 and convs[0]["phone"] == "+5511987654444"
    msgs = await _messages(client, h, convs[0]["lead_id"])
    assert len(msgs) == 1 and msgs[0]["provider_type"] == "whatsapp_business"
    # A known sender in the old 8-digit mobile form is linked to the same lead.
    await post_meta(client, cid, meta_text_message("oi de novo", from_number="551187654444"))
    await run_wa_jobs(database, settings)
    assert len(await _conversations(client, h)) == 1
    assert len(await _messages(client, h, convs[0]["lead_id"])) == 2


async def _lead_with_inbound(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    database: Database,
    settings: Settings,
    phone: str,
) -> str:
    await post_meta(client, org["config"]["id"], meta_text_message("oi", from_number=phone))
    catch_up_with_database(database)  # under a manual clock: the webhook is due
    await run_wa_jobs(database, settings)
    convs = await _conversations(client, org["headers"])
    return next(c["lead_id"] for c in convs if c["phone"] == "+" + phone)


async def test_statuses_out_of_order_and_before_the_message(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    graph: FakeGraphApi,
    database: Database,
    settings: Settings,
) -> None:
    h, cid = org["headers"], org["config"]["id"]
    lead_id = await _lead_with_inbound(client, org, database, settings, "5511966660001")
    r = await client.post(f"/api/v1/leads/{lead_id}/messages", headers=h, json={"content": "Oi!"})
    assert r.status_code == 202, r.text
    message_id = r.json()["id"]
    await run_wa_jobs(database, settings)
    assert graph.sent[-1]["text"]["body"] == "Oi!" and graph.sent[-1]["to"] == "+5511966660001"
    msg = (await client.get(f"/api/v1/messages/{message_id}", headers=h)).json()
    wamid = msg["provider_message_id"]
    assert msg["status"] == "sent" and wamid.startswith("wamid.")

    # read arrives before delivered; the message ends read, with both times.
    await post_meta(client, cid, meta_status(wamid, "read"))
    await post_meta(client, cid, meta_status(wamid, "delivered"))
    await post_meta(client, cid, meta_status(wamid, "sent"))
    await run_wa_jobs(database, settings)
    msg = (await client.get(f"/api/v1/messages/{message_id}", headers=h)).json()
    assert msg["status"] == "read" and msg["delivered_at"] and msg["read_at"]

    # A status for a message whose id is not known yet is kept, then applied.
    early = "wamid.EARLY" + uuid.uuid4().hex
    await post_meta(client, cid, meta_status(early, "delivered"))
    await run_wa_jobs(database, settings)
    r = await client.post(f"/api/v1/leads/{lead_id}/messages", headers=h, json={"content": "2"})
    second = r.json()["id"]
    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, uuid.UUID(org["organization_id"]))
        row = await s.get(Message, uuid.UUID(second))
        assert row is not None
        await whatsapp.record_sent(s, row.organization_id, row, early, dict(row.metadata_ or {}))
    msg = (await client.get(f"/api/v1/messages/{second}", headers=h)).json()
    assert msg["status"] == "delivered" and msg["provider_message_id"] == early

    # failed with Meta's error: the reason is kept.
    r = await client.post(f"/api/v1/leads/{lead_id}/messages", headers=h, json={"content": "3"})
    third = r.json()["id"]
    await run_wa_jobs(database, settings)
    wamid3 = (await client.get(f"/api/v1/messages/{third}", headers=h)).json()[
        "provider_message_id"
    ]
    await post_meta(
        client, cid, meta_status(wamid3, "failed", error_code=131026, error_title="Undeliverable")
    )
    await run_wa_jobs(database, settings)
    msg = (await client.get(f"/api/v1/messages/{third}", headers=h)).json()
    assert msg["status"] == "failed" and "131026" in msg["failed_reason"]


async def test_24_hour_window(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    graph: FakeGraphApi,
    database: Database,
    settings: Settings,
) -> None:
    h = org["headers"]
    lead = await create_lead(client, h, full_name="Fria", phone="11 97777-0000")
    sent_before = len(graph.sent)
    r = await client.post(f"/api/v1/leads/{lead['id']}/messages", headers=h, json={"content": "x"})
    assert r.status_code == 422 and r.json()["code"] == "outside_window"
    assert "24-hour" in r.json()["detail"]
    plain = await create_template(client, h, "Sem Meta", "Oi {{first_name}}")
    r = await client.post(
        f"/api/v1/leads/{lead['id']}/messages", headers=h, json={"template_id": plain["id"]}
    )
    assert r.status_code == 422 and r.json()["code"] == "outside_window"
    # A template mapped to an approved Meta template may be sent.
    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, uuid.UUID(org["organization_id"]))
        await s.execute(
            text(
                "UPDATE message_templates SET whatsapp_template_name = 'retomada', "
                "whatsapp_language = 'pt_BR' WHERE id = :id"
            ),
            {"id": plain["id"]},
        )
    r = await client.post(
        f"/api/v1/leads/{lead['id']}/messages", headers=h, json={"template_id": plain["id"]}
    )
    assert r.status_code == 202, r.text
    await run_wa_jobs(database, settings)
    sent = graph.sent[-1]
    assert sent["type"] == "template" and sent["template"]["name"] == "retomada"
    assert sent["template"]["language"]["code"] == "pt_BR"
    assert sent["template"]["components"][0]["parameters"][0]["text"] == "Fria"
    assert len(graph.sent) == sent_before + 1

    # A customer's message opens the window; 24 hours later it is closed again.
    lead_id = await _lead_with_inbound(client, org, database, settings, "5511977770001")
    r = await client.post(f"/api/v1/leads/{lead_id}/messages", headers=h, json={"content": "ok"})
    assert r.status_code == 202
    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, uuid.UUID(org["organization_id"]))
        await s.execute(
            text("UPDATE messages SET created_at = :t WHERE lead_id = :l AND direction='inbound'"),
            {"t": datetime.now(UTC) - timedelta(hours=25), "l": lead_id},
        )
    r = await client.post(f"/api/v1/leads/{lead_id}/messages", headers=h, json={"content": "x"})
    assert r.status_code == 422 and r.json()["code"] == "outside_window"


async def test_provider_errors_retry_or_fail_with_a_reason(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    graph: FakeGraphApi,
    database: Database,
    settings: Settings,
) -> None:
    h = org["headers"]
    lead_id = await _lead_with_inbound(client, org, database, settings, "5511988880001")
    # An outage: the message stays queued, shows the error, and leaves once Meta is back.
    graph.down = True
    try:
        r = await client.post(
            f"/api/v1/leads/{lead_id}/messages", headers=h, json={"content": "volta"}
        )
        mid = r.json()["id"]
        await run_wa_jobs(database, settings)
        msg = (await client.get(f"/api/v1/messages/{mid}", headers=h)).json()
        assert msg["status"] == "pending" and "503" in msg["metadata"]["last_error"]
    finally:
        graph.down = False
    await run_wa_jobs(database, settings, due_now=True)
    msg = (await client.get(f"/api/v1/messages/{mid}", headers=h)).json()
    assert msg["status"] == "sent" and "last_error" not in msg["metadata"]

    # Meta refuses for good (131047 at send time): failed, with the reason, no retry.
    graph.fail_next(131047, 400, message="Re-engagement message")
    r = await client.post(f"/api/v1/leads/{lead_id}/messages", headers=h, json={"content": "x"})
    mid = r.json()["id"]
    await run_wa_jobs(database, settings)
    msg = (await client.get(f"/api/v1/messages/{mid}", headers=h)).json()
    assert msg["status"] == "failed" and "24-hour" in msg["failed_reason"]


async def test_images_are_downloaded_and_served_to_the_organization_only(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    graph: FakeGraphApi,
    database: Database,
    settings: Settings,
) -> None:
    h, cid = org["headers"], org["config"]["id"]
    big = JPEG + b"\x01" * (10 * 1_048_576 - len(JPEG))  # a 10 MB image
    graph.add_media("media-10mb", big, "image/jpeg")
    graph.add_media("media-huge", JPEG, "image/jpeg", declared_size=40 * 1_048_576)
    graph.add_media("media-svg", b"<svg onload=alert(1)>", "image/svg+xml")
    phone = "5511933330001"
    for media_id, caption in (
        ("media-10mb", "foto"),
        ("media-huge", "grande"),
        ("media-svg", "svg"),
    ):
        r = await post_meta(
            client, cid, meta_image_message(media_id, caption=caption, from_number=phone)
        )
        assert r.status_code == 200
    await run_wa_jobs(database, settings)
    lead_id = next(
        c["lead_id"] for c in await _conversations(client, h) if c["phone"] == "+" + phone
    )
    msgs = {m["content"]: m for m in await _messages(client, h, lead_id)}
    photo = msgs["foto"]
    assert photo["message_type"] == "image" and photo["metadata"]["attachment_status"] == "stored"
    [att] = photo["attachments"]
    assert att["file_size"] == len(big) and att["file_type"] == "image/jpeg"
    got = await client.get(att["url"], headers=h)
    assert got.status_code == 200 and got.content == big
    assert got.headers["x-content-type-options"] == "nosniff"
    # Refused files: the message is kept and says why, with the limit named.
    assert msgs["grande"]["attachments"] == []
    assert "16 MB" in msgs["grande"]["metadata"]["attachment_error"]
    assert "image/svg+xml" in msgs["svg"]["metadata"]["attachment_error"]
    # Another organization cannot fetch it by id.
    other = await signup(client)
    assert (await client.get(att["url"], headers=other["headers"])).status_code == 404


async def test_switch_with_messages_in_flight_and_rollback(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    graph: FakeGraphApi,
    database: Database,
    settings: Settings,
    manual_clock: ManualClock,  # the sandbox's receipts stay in the future: "sent" stays
) -> None:
    h, cloud_id = org["headers"], org["config"]["id"]
    lead_id = await _lead_with_inbound(client, org, database, settings, "5511944440001")
    queued = []
    for i in range(3):
        r = await client.post(
            f"/api/v1/leads/{lead_id}/messages", headers=h, json={"content": f"fila {i}"}
        )
        queued.append(r.json()["id"])
    sent_before = len(graph.sent)
    sandbox = (
        await client.post("/api/v1/whatsapp/configs", headers=h, json={"provider_type": "sandbox"})
    ).json()
    r = await client.post(f"/api/v1/whatsapp/configs/{sandbox['id']}/activate", headers=h)
    migration = r.json()
    assert migration["status"] == "completed"
    assert [s["status"] for s in migration["migration_data"]["steps"]] == [
        "pending",
        "in_progress",
        "completed",
    ]
    assert migration["from_provider"] == "business_api" and migration["to_provider"] == "sandbox"
    # Both providers' webhooks are accepted during and after the switch.
    r = await post_meta(client, cloud_id, meta_text_message("late", from_number="5511944440001"))
    assert r.status_code == 200
    catch_up_with_database(database)
    await run_wa_jobs(database, settings)
    msgs = {m["id"]: m for m in await _messages(client, h, lead_id)}
    assert any(m["content"] == "late" for m in msgs.values())
    # What was queued left through the new provider, none lost, none twice.
    assert len(graph.sent) == sent_before
    for mid in queued:
        m = msgs[mid]
        assert m["status"] == "sent" and m["provider_type"] == "whatsapp_sandbox"
        assert m["metadata"]["switched_from"] == "whatsapp_business"

    # Rollback is one action: the Cloud API is active again.
    r = await client.post(f"/api/v1/whatsapp/migrations/{migration['id']}/rollback", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert r.json()["to_provider"] == "business_api"
    configs = (await client.get("/api/v1/whatsapp/configs", headers=h)).json()
    assert [c["id"] for c in configs if c["is_active"]] == [cloud_id]
    engine = create_engine(database.owner_url)
    try:
        with engine.connect() as conn:
            actions = list(
                conn.execute(
                    text(
                        "SELECT action FROM audit_logs WHERE organization_id = :o "
                        "AND resource_type = 'provider_migration' ORDER BY created_at"
                    ),
                    {"o": org["organization_id"]},
                ).scalars()
            )
    finally:
        engine.dispose()
    steps = ["provider_migration.pending", "provider_migration.in_progress"]
    # Three switches (the first activation, to the sandbox, the rollback), each step audited.
    # (One transaction shares one now(): compare as sorted lists.)
    assert sorted(actions) == sorted([*steps, "provider_migration.completed"] * 3)

    # A failed switch changes nothing.
    graph.down = True
    try:
        r = await client.post(f"/api/v1/whatsapp/configs/{sandbox['id']}/activate", headers=h)
        assert r.json()["status"] == "completed"  # the sandbox always answers
        r = await client.post(f"/api/v1/whatsapp/configs/{cloud_id}/activate", headers=h)
        failed = r.json()
        assert failed["status"] == "failed", failed
        assert "did not answer" in failed["migration_data"]["steps"][-1]["note"]
    finally:
        graph.down = False
    configs = (await client.get("/api/v1/whatsapp/configs", headers=h)).json()
    assert [c["provider_type"] for c in configs if c["is_active"]] == ["sandbox"]


async def test_waha_webhooks_are_verified_and_processed(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    data = await signup(client)
    h = data["headers"]
    with FakeWaha() as waha:
        waha.add_session("default", "WORKING")
        r = await client.post(
            "/api/v1/whatsapp/configs",
            headers=h,
            json={
                "provider_type": "web_unofficial",
                "session_id": "default",
                "bridge_url": waha.url,
                "bridge_api_key": API_KEY,
            },
        )
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        r = await client.post(f"/api/v1/whatsapp/configs/{cid}/activate", headers=h)
        assert r.json()["status"] == "completed", r.text
        async with database.sessionmaker() as s, s.begin():
            await set_tenant(s, uuid.UUID(data["organization_id"]))
            row = (
                await s.execute(select(WhatsappConfig).where(WhatsappConfig.id == uuid.UUID(cid)))
            ).scalar_one()
            key = decrypt(settings, row).hmac_key
        assert key
        body = json.dumps(
            waha_message_event("Oi pelo WhatsApp Web", from_="5511922220001@c.us")
        ).encode()
        bad = await client.post(
            f"/webhooks/whatsapp/{cid}", content=body, headers=waha_headers(body, "wrong")
        )
        assert bad.status_code == 403
        ok = await client.post(
            f"/webhooks/whatsapp/{cid}", content=body, headers=waha_headers(body, key)
        )
        assert ok.status_code == 200
        await run_wa_jobs(database, settings)
        [conv] = await _conversations(client, h)
        assert conv["phone"] == "+5511922220001" and conv["last_message"] == "Oi pelo WhatsApp Web"

        r = await client.post(
            f"/api/v1/leads/{conv['lead_id']}/messages", headers=h, json={"content": "Olá!"}
        )
        mid = r.json()["id"]
        await run_wa_jobs(database, settings)
        msg = (await client.get(f"/api/v1/messages/{mid}", headers=h)).json()
        assert msg["status"] == "sent" and msg["provider_type"] == "whatsapp_web"
        ack = json.dumps(waha_ack_event(msg["provider_message_id"], 3)).encode()
        await client.post(f"/webhooks/whatsapp/{cid}", content=ack, headers=waha_headers(ack, key))
        await run_wa_jobs(database, settings)
        msg = (await client.get(f"/api/v1/messages/{mid}", headers=h)).json()
        assert msg["status"] == "read"
        # The bridge reports its session: the configuration's status follows.
        for raw, expected in (("SCAN_QR_CODE", "disconnected"), ("WORKING", "connected")):
            event = json.dumps(waha_session_event(raw)).encode()
            r = await client.post(
                f"/webhooks/whatsapp/{cid}", content=event, headers=waha_headers(event, key)
            )
            assert r.status_code == 200
            await run_wa_jobs(database, settings)
            cfg = (await client.get(f"/api/v1/whatsapp/configs/{cid}", headers=h)).json()
            assert cfg["connection_status"] == expected, (raw, cfg["connection_status"])
    make_due(database)


async def test_editing_keeps_or_clears_fields_as_sent(
    client: httpx.AsyncClient, org: dict[str, Any]
) -> None:
    h, cid = org["headers"], org["config"]["id"]
    url = f"/api/v1/whatsapp/configs/{cid}"
    # An empty secret keeps the stored one; a required field cannot be cleared.
    r = await client.patch(url, headers=h, json={"access_token": "", "label": "Vendas"})
    assert r.status_code == 200 and r.json()["label"] == "Vendas"
    assert r.json()["access_token"].endswith(ACCESS_TOKEN[-4:])
    for body in ({"business_phone_id": ""}, {"business_phone_id": None}):
        r = await client.patch(url, headers=h, json=body)
        assert r.status_code == 422, r.text
        assert "business_phone_id" in r.json()["detail"]
    r = await client.patch(url, headers=h, json={"label": None})
    assert r.status_code == 200 and r.json()["label"] is None
    steps = (await client.get("/api/v1/whatsapp/migrations", headers=h)).json()[0]
    assert [s["code"] for s in steps["migration_data"]["steps"]] == [
        "requested",
        "checking",
        "switched",
    ]


async def test_outside_the_window_only_approved_variants_are_chosen(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    graph: FakeGraphApi,
    database: Database,
    settings: Settings,
) -> None:
    h = org["headers"]
    a = await create_template(
        client,
        h,
        "Retomada A",
        "Oi {{first_name}}",
        whatsapp_template_name="retomada_a",
        whatsapp_language="pt_BR",
    )
    await create_template(
        client, h, "Retomada B (sem Meta)", "Olá {{first_name}}", parent_template_id=a["id"]
    )
    for i in range(6):
        lead = await create_lead(client, h, full_name=f"Fria {i}", phone=f"1197000100{i}")
        r = await client.post(
            f"/api/v1/leads/{lead['id']}/messages", headers=h, json={"template_id": a["id"]}
        )
        assert r.status_code == 202, r.text
        assert r.json()["metadata"]["template"]["whatsapp_template_name"] == "retomada_a"
