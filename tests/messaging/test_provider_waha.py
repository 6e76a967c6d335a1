"""The WAHA (WhatsApp Web bridge) adapter against a fake WAHA over real HTTP."""

from __future__ import annotations

import base64
import json
import socket
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from lovedcrm.messaging.providers.base import (
    MediaRef,
    MediaTooLarge,
    ProviderError,
    SessionProvider,
    SessionUpdate,
    WhatsAppProvider,
)
from lovedcrm.messaging.providers.waha import WahaProvider
from tests.fakes.waha import (
    QR_PNG,
    FakeWaha,
    waha_ack_event,
    waha_headers,
    waha_message_event,
    waha_session_event,
)

API_KEY = "waha-secret-key"
HMAC_KEY = "hmac-key-456"
MB = 1_048_576
WEBHOOK = "https://crm.example/webhooks/whatsapp/web/abc"


@pytest.fixture
def bridge() -> Iterator[FakeWaha]:
    with FakeWaha(api_key=API_KEY) as fake:
        yield fake


def make(
    client: httpx.AsyncClient,
    base_url: str,
    *,
    api_key: str | None = API_KEY,
    hmac_key: str | None = HMAC_KEY,
    session: str = "default",
) -> WahaProvider:
    return WahaProvider(
        client=client, base_url=base_url, api_key=api_key, session=session, hmac_key=hmac_key
    )


@pytest.fixture
def waha(http: httpx.AsyncClient, bridge: FakeWaha) -> WahaProvider:
    return make(http, bridge.url)


@pytest.fixture
def working(bridge: FakeWaha) -> FakeWaha:
    bridge.add_session("default", "WORKING")
    return bridge


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_conforms_to_protocols(waha: WahaProvider) -> None:
    assert isinstance(waha, WhatsAppProvider)
    assert isinstance(waha, SessionProvider)
    assert waha.kind == "web_unofficial"


# --- sending ------------------------------------------------------------------------------


@pytest.mark.parametrize("id_style", ["object", "string"])
async def test_send_text(waha: WahaProvider, working: FakeWaha, id_style: str) -> None:
    working.id_style = id_style
    result = await waha.send_text("+55 11 98765-4321", "Olá!")
    [req] = working.requests_to("/api/sendText", "POST")
    assert req.headers["x-api-key"] == API_KEY
    assert req.json == {"session": "default", "chatId": "5511987654321@c.us", "text": "Olá!"}
    assert result.provider_message_id.startswith("true_5511987654321@c.us_")


async def test_send_text_reply_to(waha: WahaProvider, working: FakeWaha) -> None:
    await waha.send_text("+5511987654321", "sim", reply_to="false_5511987654321@c.us_AAA")
    assert working.sent[0][1]["reply_to"] == "false_5511987654321@c.us_AAA"


async def test_send_template_sends_rendered_body(waha: WahaProvider, working: FakeWaha) -> None:
    await waha.send_template(
        "+5511987654321",
        name="boas_vindas",
        language="pt_BR",
        parameters=["Maria"],
        body="Olá Maria, bem-vinda!",
    )
    assert working.sent == [
        (
            "sendText",
            {"session": "default", "chatId": "5511987654321@c.us", "text": "Olá Maria, bem-vinda!"},
        )
    ]


async def test_send_media(waha: WahaProvider, working: FakeWaha) -> None:
    await waha.send_media(
        "+5511987654321", media_type="image", link="https://cdn.example/a.jpg", caption="Foto"
    )
    await waha.send_media(
        "+5511987654321",
        media_type="document",
        link="https://cdn.example/download?id=9",
        filename="proposta.pdf",
    )
    chat = {"session": "default", "chatId": "5511987654321@c.us"}
    assert working.sent == [
        (
            "sendImage",
            {
                **chat,
                "file": {"url": "https://cdn.example/a.jpg", "mimetype": "image/jpeg"},
                "caption": "Foto",
            },
        ),
        (
            "sendFile",
            {
                **chat,
                "file": {
                    "url": "https://cdn.example/download?id=9",
                    "mimetype": "application/pdf",
                    "filename": "proposta.pdf",
                },
            },
        ),
    ]


# --- errors -------------------------------------------------------------------------------


async def test_wrong_api_key(http: httpx.AsyncClient, working: FakeWaha) -> None:
    with pytest.raises(ProviderError) as err:
        await make(http, working.url, api_key="nope").send_text("+5511987654321", "oi")
    assert err.value.code == "401"
    assert "refused the API key" in err.value.message
    assert not err.value.transient


async def test_missing_session(waha: WahaProvider, bridge: FakeWaha) -> None:
    with pytest.raises(ProviderError) as err:
        await waha.send_text("+5511987654321", "oi")
    assert err.value.code == "404"
    assert "Session not found, start it in Settings → WhatsApp" in err.value.message
    assert not err.value.transient


async def test_session_not_working_is_422(waha: WahaProvider, bridge: FakeWaha) -> None:
    bridge.add_session("default", "SCAN_QR_CODE")
    with pytest.raises(ProviderError) as err:
        await waha.send_text("+5511987654321", "oi")
    assert err.value.code == "422"
    assert "Expected: WORKING" in err.value.message
    assert not err.value.transient


async def test_bridge_down_is_transient(waha: WahaProvider, working: FakeWaha) -> None:
    working.down = True
    with pytest.raises(ProviderError) as err:
        await waha.send_text("+5511987654321", "oi")
    assert err.value.transient and err.value.code == "503"


async def test_connection_refused_is_transient(http: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderError) as err:
        await make(http, f"http://127.0.0.1:{free_port()}").send_text("+5511987654321", "oi")
    assert err.value.transient and err.value.code == "network"


# --- media --------------------------------------------------------------------------------


async def test_download_media(waha: WahaProvider, bridge: FakeWaha) -> None:
    data = bytes(10 * MB)
    url = bridge.add_media("photo.jpg", data, "image/jpeg")
    media = await waha.download_media(MediaRef(url=url, mime_type="image/jpeg"), max_bytes=16 * MB)
    assert media.content == data and media.mime_type == "image/jpeg"
    [req] = bridge.requests_to("/api/files/default/photo.jpg")
    assert req.headers["x-api-key"] == API_KEY


@pytest.mark.parametrize("omit_length", [False, True])
async def test_download_too_large(waha: WahaProvider, bridge: FakeWaha, omit_length: bool) -> None:
    bridge.omit_content_length = omit_length
    url = bridge.add_media("big.mp4", bytes(10 * MB), "video/mp4")
    with pytest.raises(MediaTooLarge) as err:
        await waha.download_media(MediaRef(url=url), max_bytes=5 * MB)
    assert err.value.size == (None if omit_length else 10 * MB)


async def test_download_gone_media(waha: WahaProvider, bridge: FakeWaha) -> None:
    with pytest.raises(ProviderError) as err:
        await waha.download_media(MediaRef(url=f"{bridge.url}/api/files/default/x"), max_bytes=MB)
    assert err.value.code == "404" and "no longer available" in err.value.message


async def test_download_without_url(waha: WahaProvider) -> None:
    with pytest.raises(ProviderError):
        await waha.download_media(MediaRef(media_id="x"), max_bytes=MB)


# --- sessions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "ok"),
    [
        ("STOPPED", "disconnected", False),
        ("STARTING", "starting", False),
        ("SCAN_QR_CODE", "qr", False),
        ("WORKING", "connected", True),
        ("FAILED", "failed", False),
    ],
)
async def test_check_connection_statuses(
    waha: WahaProvider, bridge: FakeWaha, raw: str, status: str, ok: bool
) -> None:
    bridge.set_status("default", raw)
    check = await waha.check_connection()
    assert (check.status, check.ok) == (status, ok)
    if ok:
        assert check.detail == "+5511900000000 (Loja Loved)"


async def test_check_connection_without_session(waha: WahaProvider, bridge: FakeWaha) -> None:
    check = await waha.check_connection()
    assert (check.ok, check.status, check.detail) == (False, "disconnected", "session not created")


async def test_check_connection_bad_key(http: httpx.AsyncClient, working: FakeWaha) -> None:
    check = await make(http, working.url, api_key="nope").check_connection()
    assert not check.ok and check.status == "failed" and "API key" in check.detail


async def test_check_connection_unreachable(http: httpx.AsyncClient) -> None:
    check = await make(http, f"http://127.0.0.1:{free_port()}").check_connection()
    assert not check.ok and check.status == "disconnected"


async def test_start_session_creates_with_webhook(waha: WahaProvider, bridge: FakeWaha) -> None:
    check = await waha.start_session(WEBHOOK)
    assert check.status == "qr"
    [req] = bridge.requests_to("/api/sessions", "POST")
    assert req.json == {
        "name": "default",
        "start": True,
        "config": {
            "webhooks": [
                {
                    "url": WEBHOOK,
                    "events": ["message", "message.ack", "session.status"],
                    "hmac": {"key": HMAC_KEY},
                }
            ]
        },
    }


async def test_start_existing_session_calls_start(waha: WahaProvider, bridge: FakeWaha) -> None:
    bridge.add_session("default", "STOPPED")
    check = await waha.start_session(WEBHOOK)
    assert check.status == "qr"
    assert len(bridge.requests_to("/api/sessions/default/start", "POST")) == 1


async def test_start_session_bad_key(http: httpx.AsyncClient, bridge: FakeWaha) -> None:
    with pytest.raises(ProviderError) as err:
        await make(http, bridge.url, api_key="nope").start_session(WEBHOOK)
    assert err.value.code == "401"


async def test_qr_code(waha: WahaProvider, bridge: FakeWaha) -> None:
    bridge.set_status("default", "SCAN_QR_CODE")
    qr = await waha.qr_code()
    assert qr is not None and qr.mimetype == "image/png"
    png = base64.b64decode(qr.data_base64)
    assert png == QR_PNG and png.startswith(b"\x89PNG\r\n\x1a\n")
    # A well-formed PNG: IHDR says 8x8 and the IDAT inflates to 8 rows of 1 + 8 bytes.
    assert png[16:24] == (8).to_bytes(4, "big") * 2
    idat_len = int.from_bytes(png[33:37], "big")
    assert len(zlib.decompress(png[41 : 41 + idat_len])) == 8 * 9
    [req] = bridge.requests_to("/api/default/auth/qr", "GET")
    assert req.headers["accept"] == "application/json"


async def test_qr_code_when_connected_is_none(waha: WahaProvider, working: FakeWaha) -> None:
    assert await waha.qr_code() is None


async def test_logout(waha: WahaProvider, working: FakeWaha) -> None:
    await waha.logout()
    assert len(working.requests_to("/api/sessions/default/logout", "POST")) == 1
    assert working.sessions["default"].status != "WORKING"


async def test_logout_of_missing_session_is_quiet(waha: WahaProvider, bridge: FakeWaha) -> None:
    await waha.logout()


# --- webhook signature --------------------------------------------------------------------


def test_verify_webhook(waha: WahaProvider) -> None:
    body = json.dumps(waha_message_event("oi")).encode()
    headers = waha_headers(body, HMAC_KEY)
    assert waha.verify_webhook(headers, body)
    assert not waha.verify_webhook(headers, body.replace(b"oi", b"io"))  # tampered
    assert not waha.verify_webhook(waha_headers(body, "other-key"), body)  # bad key
    missing = {k: v for k, v in headers.items() if k != "x-webhook-hmac"}
    assert not waha.verify_webhook(missing, body)
    assert not waha.verify_webhook({**headers, "x-webhook-hmac-algorithm": "sha256"}, body)


def test_verify_webhook_without_key(http: httpx.AsyncClient) -> None:
    waha = make(http, "http://unused", hmac_key=None)
    body = b"{}"
    assert not waha.verify_webhook(waha_headers(body, ""), body)


# --- webhook parsing ----------------------------------------------------------------------


def test_parse_text_message(waha: WahaProvider) -> None:
    event = waha_message_event(
        "Quero um orçamento",
        message_id="false_5511987654321@c.us_AAAA",
        timestamp=1667561485,
        notify_name="Maria",
        reply_to="true_5511987654321@c.us_BBBB",
    )
    [m] = waha.parse_webhook(event).messages
    assert m.provider_message_id == "false_5511987654321@c.us_AAAA"
    assert m.from_number == "+5511987654321"
    assert m.to_number == "+5511900000000"
    assert m.contact_name == "Maria"
    assert (m.message_type, m.content) == ("text", "Quero um orçamento")
    assert m.timestamp == datetime.fromtimestamp(1667561485, tz=UTC)
    assert m.reply_to == "true_5511987654321@c.us_BBBB"
    assert m.media is None


@pytest.mark.parametrize(
    ("mime", "kind"),
    [
        ("image/jpeg", "image"),
        ("video/mp4", "video"),
        ("audio/ogg; codecs=opus", "audio"),
        ("application/pdf", "document"),
    ],
)
def test_parse_media_message(waha: WahaProvider, mime: str, kind: str) -> None:
    media = {"url": "http://waha:3000/api/files/default/f", "mimetype": mime, "filename": "f"}
    [m] = waha.parse_webhook(waha_message_event("legenda", media=media)).messages
    assert m.message_type == kind
    assert m.content == "legenda"
    assert m.media == MediaRef(url=media["url"], mime_type=mime, filename="f")


def test_parse_skips_groups_broadcasts_and_own_messages(waha: WahaProvider) -> None:
    for event in (
        waha_message_event("grupo", from_="120363025246125486@g.us"),
        waha_message_event("status", from_="status@broadcast"),
        waha_message_event("eu", from_me=True),
    ):
        assert waha.parse_webhook(event).messages == []


def test_parse_contact_name_fallbacks(waha: WahaProvider) -> None:
    event = waha_message_event("oi", notify_name=None)
    assert waha.parse_webhook(event).messages[0].contact_name is None
    event["payload"]["pushName"] = "Zé"
    assert waha.parse_webhook(event).messages[0].contact_name == "Zé"


@pytest.mark.parametrize(
    ("ack", "status"),
    [(-1, "failed"), (1, "sent"), (2, "delivered"), (3, "read"), (4, "read")],
)
def test_parse_ack(waha: WahaProvider, ack: int, status: str) -> None:
    [s] = waha.parse_webhook(waha_ack_event("true_5511987654321@c.us_X", ack)).statuses
    assert (s.provider_message_id, s.status, s.recipient) == (
        "true_5511987654321@c.us_X",
        status,
        "+5511987654321",
    )
    assert s.error_code is None
    assert (s.error_message is not None) is (status == "failed")


def test_parse_ack_pending_and_inbound_ignored(waha: WahaProvider) -> None:
    assert waha.parse_webhook(waha_ack_event("true_x", 0)).statuses == []
    assert waha.parse_webhook(waha_ack_event("false_x", 3, from_me=False)).statuses == []


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("STOPPED", "disconnected"),
        ("STARTING", "starting"),
        ("SCAN_QR_CODE", "qr"),
        ("WORKING", "connected"),
        ("FAILED", "failed"),
    ],
)
def test_parse_session_status(waha: WahaProvider, raw: str, status: str) -> None:
    parsed = waha.parse_webhook(waha_session_event(raw))
    assert parsed.sessions == [SessionUpdate(status=status, raw_status=raw)]
    assert parsed.messages == [] and parsed.statuses == []


def test_parse_other_events_ignored(waha: WahaProvider) -> None:
    event = waha_message_event("oi")
    event["event"] = "message.any"
    assert waha.parse_webhook(event).messages == []
    assert waha.parse_webhook({}).messages == []
