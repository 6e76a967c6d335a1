"""The WhatsApp Cloud API adapter against a fake Graph API over real HTTP."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from lovedcrm.messaging.providers.base import (
    MediaRef,
    MediaTooLarge,
    OutsideWindowError,
    ProviderError,
    WhatsAppProvider,
)
from lovedcrm.messaging.providers.cloud import CloudApiProvider, error_message
from tests.fakes.graph_api import (
    PHONE_NUMBER_ID,
    FakeGraphApi,
    meta_document_message,
    meta_image_message,
    meta_message,
    meta_signature,
    meta_status,
    meta_text_message,
    meta_value_error,
    meta_webhook,
)

TOKEN = "EAAG-test-token"
SECRET = "app-secret-123"
MB = 1_048_576
MESSAGES_PATH = f"/v21.0/{PHONE_NUMBER_ID}/messages"


@pytest.fixture
def graph() -> Iterator[FakeGraphApi]:
    with FakeGraphApi(access_token=TOKEN) as fake:
        yield fake


def make(
    client: httpx.AsyncClient, base_url: str, *, token: str = TOKEN, secret: str | None = SECRET
) -> CloudApiProvider:
    return CloudApiProvider(
        client=client,
        phone_number_id=PHONE_NUMBER_ID,
        access_token=token,
        app_secret=secret,
        base_url=base_url,
    )


@pytest.fixture
def cloud(http: httpx.AsyncClient, graph: FakeGraphApi) -> CloudApiProvider:
    return make(http, graph.url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- sending ------------------------------------------------------------------------------


def test_conforms_to_protocol(cloud: CloudApiProvider) -> None:
    assert isinstance(cloud, WhatsAppProvider)
    assert cloud.kind == "business_api"


async def test_send_text_wire_format(cloud: CloudApiProvider, graph: FakeGraphApi) -> None:
    result = await cloud.send_text("+5511987654321", "Olá!")
    [req] = graph.requests_to(MESSAGES_PATH, "POST")
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+5511987654321",
        "type": "text",
        "text": {"preview_url": False, "body": "Olá!"},
    }
    assert result.provider_message_id.startswith("wamid.")
    assert result.raw["messages"][0]["id"] == result.provider_message_id


async def test_send_text_reply_context(cloud: CloudApiProvider, graph: FakeGraphApi) -> None:
    await cloud.send_text("+5511987654321", "sim", reply_to="wamid.ORIG")
    assert graph.sent[0]["context"] == {"message_id": "wamid.ORIG"}


async def test_send_template_wire_format(cloud: CloudApiProvider, graph: FakeGraphApi) -> None:
    result = await cloud.send_template(
        "+16505551234",
        name="order_update",
        language="pt_BR",
        parameters=["ABC123", "amanhã"],
        body="Pedido ABC123 chega amanhã",
    )
    assert graph.sent == [
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+16505551234",
            "type": "template",
            "template": {
                "name": "order_update",
                "language": {"code": "pt_BR"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "ABC123"},
                            {"type": "text", "text": "amanhã"},
                        ],
                    }
                ],
            },
        }
    ]
    assert result.provider_message_id.startswith("wamid.")


async def test_send_template_without_parameters(
    cloud: CloudApiProvider, graph: FakeGraphApi
) -> None:
    await cloud.send_template(
        "+16505551234", name="hello", language="en_US", parameters=[], body=""
    )
    assert graph.sent[0]["template"] == {"name": "hello", "language": {"code": "en_US"}}


async def test_send_media_wire_format(cloud: CloudApiProvider, graph: FakeGraphApi) -> None:
    await cloud.send_media(
        "+16505551234", media_type="image", link="https://cdn.example/a.jpg", caption="Foto"
    )
    await cloud.send_media(
        "+16505551234",
        media_type="document",
        link="https://cdn.example/p.pdf",
        caption="Proposta",
        filename="proposta.pdf",
    )
    await cloud.send_media(
        "+16505551234", media_type="audio", link="https://cdn.example/a.ogg", caption="x"
    )
    await cloud.send_media("+16505551234", media_type="video", link="https://cdn.example/v.mp4")
    base = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+16505551234"}
    assert graph.sent == [
        {
            **base,
            "type": "image",
            "image": {"link": "https://cdn.example/a.jpg", "caption": "Foto"},
        },
        {
            **base,
            "type": "document",
            "document": {
                "link": "https://cdn.example/p.pdf",
                "caption": "Proposta",
                "filename": "proposta.pdf",
            },
        },
        # Meta refuses captions on audio: it is dropped.
        {**base, "type": "audio", "audio": {"link": "https://cdn.example/a.ogg"}},
        {**base, "type": "video", "video": {"link": "https://cdn.example/v.mp4"}},
    ]


async def test_send_media_unknown_type_refused(
    cloud: CloudApiProvider, graph: FakeGraphApi
) -> None:
    with pytest.raises(ProviderError) as err:
        await cloud.send_media("+1650", media_type="hologram", link="https://x/y")
    assert not err.value.transient
    assert graph.requests == []


# --- errors -------------------------------------------------------------------------------


async def test_outside_window_raises_outside_window_error(
    cloud: CloudApiProvider, graph: FakeGraphApi
) -> None:
    graph.fail_next(
        131047,
        400,
        message="Re-engagement message",
        details="Message failed to send because more than 24 hours have passed",
    )
    with pytest.raises(OutsideWindowError) as err:
        await cloud.send_text("+16505551234", "oi")
    e = err.value
    assert e.code == "131047"
    assert "24-hour window: only approved templates can be sent" in e.message
    assert not e.transient
    assert e.http_status == 400
    assert e.details is not None and "24 hours" in e.details


@pytest.mark.parametrize(
    ("code", "http_status", "transient"),
    [
        (130429, 429, True),
        (131056, 400, True),
        (80007, 400, True),
        (131000, 500, True),
        (131026, 400, False),
        (131048, 400, False),
        (131008, 400, False),
        (131051, 400, False),
        (368, 403, False),
    ],
)
async def test_graph_error_classes(
    cloud: CloudApiProvider, graph: FakeGraphApi, code: int, http_status: int, transient: bool
) -> None:
    graph.fail_next(code, http_status)
    with pytest.raises(ProviderError) as err:
        await cloud.send_text("+16505551234", "oi")
    assert not isinstance(err.value, OutsideWindowError)
    assert err.value.code == str(code)
    assert err.value.transient is transient
    assert err.value.message == error_message(code)
    assert err.value.http_status == http_status


async def test_unknown_graph_code_keeps_meta_message(
    cloud: CloudApiProvider, graph: FakeGraphApi
) -> None:
    graph.fail_next(999999, 400, message="Something odd")
    with pytest.raises(ProviderError) as err:
        await cloud.send_text("+16505551234", "oi")
    assert err.value.code == "999999"
    assert "Something odd" in err.value.message
    assert not err.value.transient


async def test_bad_token_is_permanent(http: httpx.AsyncClient, graph: FakeGraphApi) -> None:
    cloud = make(http, graph.url, token="wrong")
    with pytest.raises(ProviderError) as err:
        await cloud.send_text("+16505551234", "oi")
    assert err.value.code == "190"
    assert not err.value.transient
    assert "access token" in err.value.message


async def test_503_is_transient(cloud: CloudApiProvider, graph: FakeGraphApi) -> None:
    graph.down = True
    with pytest.raises(ProviderError) as err:
        await cloud.send_text("+16505551234", "oi")
    assert err.value.transient
    assert err.value.code == "503"
    assert err.value.http_status == 503


async def test_connection_refused_is_transient(http: httpx.AsyncClient) -> None:
    cloud = make(http, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ProviderError) as err:
        await cloud.send_text("+16505551234", "oi")
    assert err.value.transient
    assert err.value.code == "network"


async def test_timeout_is_transient(graph: FakeGraphApi) -> None:
    graph.hold = hold = threading.Event()  # Meta takes the request and never answers in time
    try:
        async with httpx.AsyncClient(timeout=0.2) as client:
            with pytest.raises(ProviderError) as err:
                await make(client, graph.url).send_text("+16505551234", "oi")
    finally:
        hold.set()
    assert err.value.transient
    assert err.value.code == "network"


def test_error_message_texts() -> None:
    assert error_message(131047) == error_message("131047")
    assert "24-hour window" in error_message(131047)
    assert "unexpected error" in error_message(42)


# --- media download -----------------------------------------------------------------------


async def test_download_media(cloud: CloudApiProvider, graph: FakeGraphApi) -> None:
    data = b"\xff\xd8\xff" + bytes(10 * MB)
    graph.add_media("777", data, "image/jpeg")
    media = await cloud.download_media(MediaRef(media_id="777"), max_bytes=16 * MB)
    assert media.content == data
    assert media.mime_type == "image/jpeg"
    [info] = graph.requests_to("/v21.0/777", "GET")
    [download] = graph.requests_to("/whatsapp_business/attachments/", "GET")
    assert download.headers["authorization"] == f"Bearer {TOKEN}"
    assert info.headers["authorization"] == f"Bearer {TOKEN}"


async def test_download_keeps_document_filename(
    cloud: CloudApiProvider, graph: FakeGraphApi
) -> None:
    graph.add_media("doc1", b"%PDF-1.7", "application/pdf")
    media = await cloud.download_media(
        MediaRef(media_id="doc1", filename="proposta.pdf"), max_bytes=MB
    )
    assert (media.content, media.filename) == (b"%PDF-1.7", "proposta.pdf")


async def test_download_too_large_by_declared_size(
    cloud: CloudApiProvider, graph: FakeGraphApi
) -> None:
    graph.add_media("777", bytes(10 * MB), "image/jpeg")
    with pytest.raises(MediaTooLarge) as err:
        await cloud.download_media(MediaRef(media_id="777"), max_bytes=5 * MB)
    assert err.value.size == 10 * MB
    assert err.value.limit_bytes == 5 * MB
    # Refused before fetching a byte of the file.
    assert graph.requests_to("/whatsapp_business/attachments/") == []


@pytest.mark.parametrize("omit_length", [False, True])
async def test_download_too_large_when_declared_size_lies(
    cloud: CloudApiProvider, graph: FakeGraphApi, omit_length: bool
) -> None:
    graph.add_media("777", bytes(10 * MB), "image/jpeg", declared_size=1000)
    graph.omit_content_length = omit_length
    with pytest.raises(MediaTooLarge) as err:
        await cloud.download_media(MediaRef(media_id="777"), max_bytes=5 * MB)
    assert len(graph.requests_to("/whatsapp_business/attachments/")) == 1
    # Caught by the Content-Length header, or (without one) by counting streamed bytes.
    assert err.value.size == (None if omit_length else 10 * MB)


async def test_download_unknown_media_is_permanent(cloud: CloudApiProvider) -> None:
    with pytest.raises(ProviderError) as err:
        await cloud.download_media(MediaRef(media_id="nope"), max_bytes=MB)
    assert err.value.code == "100"
    assert not err.value.transient


# --- connection check ---------------------------------------------------------------------


async def test_check_connection_ok(cloud: CloudApiProvider, graph: FakeGraphApi) -> None:
    check = await cloud.check_connection()
    assert check.ok and check.status == "connected"
    assert "+1 555-000-1234" in check.detail and "Loved CRM" in check.detail
    assert graph.requests_to(f"/v21.0/{PHONE_NUMBER_ID}", "GET")


async def test_check_connection_bad_token(http: httpx.AsyncClient, graph: FakeGraphApi) -> None:
    check = await make(http, graph.url, token="expired").check_connection()
    assert not check.ok
    assert check.status == "failed"
    assert "access token is invalid or expired" in check.detail


async def test_check_connection_down(cloud: CloudApiProvider, graph: FakeGraphApi) -> None:
    graph.down = True
    check = await cloud.check_connection()
    assert not check.ok and check.status == "disconnected"


# --- webhook signature --------------------------------------------------------------------


def test_verify_webhook(cloud: CloudApiProvider) -> None:
    body = json.dumps(meta_text_message("oi")).encode()
    good = {"x-hub-signature-256": meta_signature(body, SECRET)}
    assert cloud.verify_webhook(good, body)
    assert not cloud.verify_webhook(good, body.replace(b"oi", b"io"))  # tampered body
    assert not cloud.verify_webhook({"x-hub-signature-256": meta_signature(body, "other")}, body)
    assert not cloud.verify_webhook({}, body)  # missing
    assert not cloud.verify_webhook({"x-hub-signature-256": "md5=abc"}, body)  # malformed
    assert not cloud.verify_webhook({"x-hub-signature-256": "sha256=zz\u00e9"}, body)


def test_verify_webhook_without_secret(http: httpx.AsyncClient) -> None:
    cloud = make(http, "http://unused", secret=None)
    body = b"{}"
    assert not cloud.verify_webhook({"x-hub-signature-256": meta_signature(body, "")}, body)


# --- webhook parsing ----------------------------------------------------------------------


def test_parse_text(cloud: CloudApiProvider) -> None:
    payload = meta_text_message(
        "Olá, quero um orçamento",
        from_number="5511987654321",
        name="Maria",
        wamid="wamid.IN1",
        timestamp=1749416383,
        context_id="wamid.OUT0",
        referral={"source_id": "120", "source_type": "ad", "ctwa_clid": "ARAk"},
    )
    parsed = cloud.parse_webhook(payload)
    [m] = parsed.messages
    assert m.provider_message_id == "wamid.IN1"
    assert m.from_number == "+5511987654321"
    assert m.to_number == "+15550001234"
    assert m.contact_name == "Maria"
    assert m.message_type == "text"
    assert m.content == "Olá, quero um orçamento"
    assert m.timestamp == datetime(2025, 6, 8, 20, 59, 43, tzinfo=UTC)
    assert m.reply_to == "wamid.OUT0"
    assert m.metadata["referral"]["ctwa_clid"] == "ARAk"
    assert m.media is None
    assert parsed.statuses == [] and parsed.errors == []


def test_parse_image(cloud: CloudApiProvider) -> None:
    parsed = cloud.parse_webhook(meta_image_message("m1", caption="Olha", mime_type="image/png"))
    [m] = parsed.messages
    assert m.message_type == "image"
    assert m.content == "Olha"
    assert m.media == MediaRef(
        media_id="m1",
        mime_type="image/png",
        sha256="Bi6B+IkpJkhiAN9qXZB1vJ53ZTpO4gUSTvDpwr+tB60=",
    )


def test_parse_document(cloud: CloudApiProvider) -> None:
    [m] = cloud.parse_webhook(meta_document_message("d1", filename="contrato.pdf")).messages
    assert m.message_type == "document"
    assert m.content is None
    assert m.media is not None
    assert (m.media.media_id, m.media.filename, m.media.mime_type) == (
        "d1",
        "contrato.pdf",
        "application/pdf",
    )


def test_parse_audio_and_sticker(cloud: CloudApiProvider) -> None:
    audio = meta_message(
        "audio", {"mime_type": "audio/ogg; codecs=opus", "sha256": "x", "id": "a1", "voice": True}
    )
    [m] = cloud.parse_webhook(audio).messages
    assert m.message_type == "audio" and m.media is not None and m.media.media_id == "a1"
    assert m.metadata["voice"] is True
    sticker = meta_message("sticker", {"mime_type": "image/webp", "sha256": "y", "id": "s1"})
    [s] = cloud.parse_webhook(sticker).messages
    assert s.message_type == "sticker" and s.media is not None and s.media.filename is None


def test_parse_location(cloud: CloudApiProvider) -> None:
    payload = meta_message(
        "location",
        {
            "latitude": -23.5505,
            "longitude": -46.6333,
            "name": "Loja Centro",
            "address": "Praça da Sé",
        },
    )
    [m] = cloud.parse_webhook(payload).messages
    assert m.message_type == "location"
    assert m.content == "📍 -23.5505,-46.6333 Loja Centro"
    assert m.metadata["location"]["address"] == "Praça da Sé"


def test_parse_reaction(cloud: CloudApiProvider) -> None:
    payload = meta_message("reaction", {"message_id": "wamid.OUT1", "emoji": "👍"})
    [m] = cloud.parse_webhook(payload).messages
    assert (m.message_type, m.content, m.reply_to) == ("reaction", "👍", "wamid.OUT1")


def test_parse_button_and_interactive(cloud: CloudApiProvider) -> None:
    button = meta_message("button", {"text": "Quero saber mais", "payload": "MORE"})
    [b] = cloud.parse_webhook(button).messages
    assert (b.message_type, b.content, b.metadata["button_payload"]) == (
        "button",
        "Quero saber mais",
        "MORE",
    )
    interactive = meta_message(
        "interactive",
        {"type": "list_reply", "list_reply": {"id": "plan_pro", "title": "Plano Pro"}},
    )
    [i] = cloud.parse_webhook(interactive).messages
    assert (i.message_type, i.content) == ("interactive", "Plano Pro")
    assert i.metadata["interactive"]["id"] == "plan_pro"


def test_parse_contacts(cloud: CloudApiProvider) -> None:
    payload = meta_message(
        "contacts",
        None,
        extra={
            "contacts": [
                {"name": {"formatted_name": "João"}, "phones": [{"phone": "+55 11 91234-5678"}]}
            ]
        },
    )
    [m] = cloud.parse_webhook(payload).messages
    assert m.message_type == "contacts"
    assert m.content == "👤 João (+55 11 91234-5678)"


def test_parse_unknown(cloud: CloudApiProvider) -> None:
    payload = meta_message(
        "unknown",
        None,
        extra={
            "errors": [
                {
                    "code": 131051,
                    "title": "Message type unknown",
                    "message": "Message type unknown",
                    "error_data": {"details": "Message type is currently not supported."},
                }
            ]
        },
    )
    [m] = cloud.parse_webhook(payload).messages
    assert m.message_type == "unknown"
    assert m.content is None
    assert m.metadata["errors"] == [{"code": "131051", "title": "Message type unknown"}]
    # A type this adapter does not know yet is "unknown" too.
    [n] = cloud.parse_webhook(meta_message("poll", {"q": "?"})).messages
    assert n.message_type == "unknown" and n.metadata["raw_type"] == "poll"


def test_parse_statuses(cloud: CloudApiProvider) -> None:
    delivered = cloud.parse_webhook(meta_status("wamid.A", "delivered", timestamp=1698903217))
    [s] = delivered.statuses
    assert s.provider_message_id == "wamid.A"
    assert s.status == "delivered"
    assert s.recipient == "+16505551234"
    assert s.timestamp == datetime.fromtimestamp(1698903217, tz=UTC)
    assert s.error_code is None and delivered.messages == []


def test_parse_failed_status_with_error(cloud: CloudApiProvider) -> None:
    payload = meta_status(
        "wamid.X",
        "failed",
        error_code=131047,
        error_title="Re-engagement message",
        error_details="Message failed to send because more than 24 hours have passed.",
    )
    [s] = cloud.parse_webhook(payload).statuses
    assert s.status == "failed"
    assert s.error_code == "131047"
    assert s.error_message == (
        "Re-engagement message: Message failed to send because more than 24 hours have passed."
    )
    assert "24-hour window" in error_message(s.error_code)


def test_parse_value_errors(cloud: CloudApiProvider) -> None:
    [e] = cloud.parse_webhook(meta_value_error(130429, "Rate limit hit")).errors
    assert isinstance(e, ProviderError)
    assert e.code == "130429" and e.transient
    assert e.message == error_message(130429)


def test_parse_ignores_other_fields_and_garbage(cloud: CloudApiProvider) -> None:
    other = meta_webhook({"messages": [{"from": "1", "id": "x", "type": "text"}]})
    other["entry"][0]["changes"][0]["field"] = "message_template_status_update"
    assert cloud.parse_webhook(other).messages == []
    assert cloud.parse_webhook({}).messages == []
    assert cloud.parse_webhook({"entry": "nope"}).messages == []
    unknown_status = meta_status("wamid.Z", "deleted")
    assert cloud.parse_webhook(unknown_status).statuses == []


def test_parse_several_messages_and_statuses_in_one_post(cloud: CloudApiProvider) -> None:
    a = meta_text_message("um", wamid="wamid.1")
    b = meta_status("wamid.2", "read")
    a["entry"].append(b["entry"][0])
    parsed = cloud.parse_webhook(a)
    assert [m.provider_message_id for m in parsed.messages] == ["wamid.1"]
    assert [(s.provider_message_id, s.status) for s in parsed.statuses] == [("wamid.2", "read")]
