"""WAHA (devlikeapro/waha), an unofficial WhatsApp Web HTTP bridge the customer runs: sending,
session pairing by QR code, webhook signature and parsing. Wire format:
shared/reference/providers.md §2."""

from __future__ import annotations

import hashlib
import hmac
import json
import mimetypes
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import httpx

from lovedcrm.messaging.providers import (
    as_dict,
    as_str,
    digits,
    epoch_to_datetime,
    fetch_limited,
    header_value,
    network_error,
    sender,
)
from lovedcrm.messaging.providers.base import (
    ConnectionCheck,
    DeliveryStatus,
    DownloadedMedia,
    InboundMessage,
    MediaRef,
    ParsedWebhook,
    ProviderError,
    ProviderKind,
    QrCode,
    SendResult,
    SessionUpdate,
    StatusUpdate,
)

if TYPE_CHECKING:
    from lovedcrm.messaging.providers.base import SessionProvider, WhatsAppProvider

SERVICE = "the WhatsApp bridge"

SESSION_STATUSES: dict[str, str] = {
    "STOPPED": "disconnected",
    "STARTING": "starting",
    "SCAN_QR_CODE": "qr",
    "WORKING": "connected",
    "FAILED": "failed",
}

# ackName → delivery status; PENDING (0) is not reported, the message is already "sent" for us
# once the bridge accepted it.
ACK_STATUSES: dict[str, DeliveryStatus] = {
    "ERROR": "failed",
    "SERVER": "sent",
    "DEVICE": "delivered",
    "READ": "read",
    "PLAYED": "read",
}
_ACK_NAMES = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}

# Individual chats only: c.us (WEBJS) or s.whatsapp.net (NOWEB/GOWS); groups (@g.us),
# broadcasts, channels and linked ids (@lid, not a phone number) are not CRM conversations.
_PERSONAL_SUFFIXES = ("@c.us", "@s.whatsapp.net")

MSG_API_KEY = "The bridge refused the API key: check it in Settings → WhatsApp."
ACK_ERROR_MESSAGE = "WhatsApp Web reported that the message could not be sent."
MSG_NO_SESSION = "Session not found, start it in Settings → WhatsApp."


def _bridge_message(body: bytes) -> str | None:
    """WAHA (NestJS) errors: ``{"statusCode","message","error"}``, ``message`` possibly a list
    of validation messages."""
    try:
        data = as_dict(json.loads(body))
    except ValueError:
        text = body[:300].decode("utf-8", "replace").strip()
        return text or None
    message = data.get("message")
    if isinstance(message, list):
        return "; ".join(str(m) for m in message) or None
    return as_str(message) or as_str(data.get("error"))


def bridge_error(http_status: int, body: bytes, *, context: str = "session") -> ProviderError:
    """Map a non-2xx bridge answer. ``context`` says what a 404 means: the session, or a
    media file that is gone."""
    detail = _bridge_message(body)
    code = str(http_status)
    if http_status >= 500 or http_status == 429:
        return ProviderError(
            code,
            f"The WhatsApp bridge failed (HTTP {http_status}); it will be retried.",
            transient=True,
            http_status=http_status,
            details=detail,
        )
    if http_status in (401, 403):
        return ProviderError(code, MSG_API_KEY, http_status=http_status, details=detail)
    if http_status == 404:
        text = (
            "The media file is no longer available on the bridge."
            if context == "media"
            else MSG_NO_SESSION
        )
        return ProviderError(code, text, http_status=http_status, details=detail)
    text = (
        f"The WhatsApp bridge refused the request: {detail}"
        if detail
        else (f"The WhatsApp bridge refused the request (HTTP {http_status}).")
    )
    return ProviderError(code, text, http_status=http_status, details=detail)


def chat_id(to: str) -> str:
    return f"{digits(to)}@c.us"


def is_personal(jid: str | None) -> bool:
    """A person's chat (not a group, a broadcast or a channel)."""
    return bool(jid) and str(jid).endswith(_PERSONAL_SUFFIXES)


def phone_of(jid: str | None) -> str | None:
    """``"5511987654321@c.us"`` → ``"+5511987654321"``; None for groups and broadcasts, and
    for a person's id that is not a phone number."""
    if not jid or not is_personal(jid):
        return None
    # A device suffix ("5511...:12@s.whatsapp.net") is not part of the number.
    return sender(jid.split("@", 1)[0].split(":", 1)[0])


def _message_id(value: Any) -> str | None:
    """WAHA ids are either a string or (WEBJS) ``{"fromMe","remote","id","_serialized"}``."""
    if isinstance(value, dict):
        return as_str(value.get("_serialized")) or as_str(value.get("id"))
    return as_str(value)


def _type_from_mime(mime: str | None) -> str:
    major = (mime or "").split("/", 1)[0].lower()
    return major if major in ("image", "video", "audio") else "document"


class WahaProvider:
    kind: ProviderKind = "web_unofficial"

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        base_url: str,
        api_key: str | None,
        session: str,
        hmac_key: str | None,
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.session = session
        self.hmac_key = hmac_key

    # --- HTTP ----------------------------------------------------------------------------

    @property
    def _headers(self) -> dict[str, str]:
        return {"X-Api-Key": header_value(self.api_key, "API key")} if self.api_key else {}

    @property
    def _session_path(self) -> str:
        return quote(self.session, safe="")

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return await self.client.request(
                method,
                f"{self.base_url}{path}",
                json=json_body,
                headers={**self._headers, **(headers or {})},
            )
        except httpx.HTTPError as exc:
            raise network_error(exc, SERVICE) from exc

    async def _json(
        self, method: str, path: str, *, json_body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        response = await self._call(method, path, json_body=json_body)
        if response.status_code >= 400:
            raise bridge_error(response.status_code, response.content)
        try:
            return as_dict(response.json()) if response.content else {}
        except ValueError:
            return {}

    async def _send(self, path: str, to: str, fields: dict[str, Any]) -> SendResult:
        body = {"session": self.session, "chatId": chat_id(to), **fields}
        data = await self._json("POST", path, json_body=body)
        message_id = _message_id(data.get("id")) or _message_id(as_dict(data.get("key")).get("id"))
        if not message_id:
            # Not transient: the message may have gone out, a retry could send it twice.
            raise ProviderError(
                "bad_response", "The WhatsApp bridge accepted the message but returned no id."
            )
        return SendResult(provider_message_id=message_id, raw=data)

    # --- sending -------------------------------------------------------------------------

    async def send_text(self, to: str, body: str, *, reply_to: str | None = None) -> SendResult:
        fields: dict[str, Any] = {"text": body}
        if reply_to:
            fields["reply_to"] = reply_to
        return await self._send("/api/sendText", to, fields)

    async def send_template(
        self, to: str, *, name: str, language: str, parameters: list[str], body: str
    ) -> SendResult:
        # WhatsApp Web has no templates: the rendered text goes out as a plain message.
        return await self.send_text(to, body)

    async def send_media(
        self,
        to: str,
        *,
        media_type: str,
        link: str,
        caption: str | None = None,
        filename: str | None = None,
    ) -> SendResult:
        file: dict[str, Any] = {"url": link}
        mime = mimetypes.guess_type(filename or urlsplit(link).path)[0]
        if mime:
            file["mimetype"] = mime
        if filename:
            file["filename"] = filename
        fields: dict[str, Any] = {"file": file}
        if caption:
            fields["caption"] = caption
        path = "/api/sendImage" if media_type == "image" else "/api/sendFile"
        return await self._send(path, to, fields)

    # --- media ---------------------------------------------------------------------------

    async def download_media(self, media: MediaRef, *, max_bytes: int) -> DownloadedMedia:
        if not media.url:
            raise ProviderError(
                "no_media_url", "The bridge did not download this attachment (no media URL)."
            )
        content, content_type = await fetch_limited(
            self.client,
            media.url,
            headers=self._headers,
            max_bytes=max_bytes,
            service=SERVICE,
            on_error=lambda response, body: bridge_error(
                response.status_code, body, context="media"
            ),
        )
        mime = (
            media.mime_type
            or (content_type or "").split(";")[0].strip()
            or "application/octet-stream"
        )
        return DownloadedMedia(content=content, mime_type=mime, filename=media.filename)

    # --- session -------------------------------------------------------------------------

    async def check_connection(self) -> ConnectionCheck:
        try:
            response = await self._call("GET", f"/api/sessions/{self._session_path}")
        except ProviderError as exc:
            # Unreachable for now (retry later), or refused for good (a refused address).
            status = "disconnected" if exc.transient else "failed"
            return ConnectionCheck(ok=False, status=status, detail=exc.message)
        if response.status_code == 404:
            return ConnectionCheck(ok=False, status="disconnected", detail="session not created")
        if response.status_code >= 400:
            error = bridge_error(response.status_code, response.content)
            return ConnectionCheck(
                ok=False,
                status="disconnected" if error.transient else "failed",
                detail=error.message,
            )
        try:
            data = as_dict(response.json())
        except ValueError:
            data = {}
        raw = as_str(data.get("status")) or "UNKNOWN"
        status = SESSION_STATUSES.get(raw, "failed")
        detail = raw
        if status == "connected":
            me = as_dict(data.get("me"))
            number = phone_of(as_str(me.get("id")))
            name = as_str(me.get("pushName"))
            if number:
                detail = f"{number} ({name})" if name else number
        return ConnectionCheck(ok=status == "connected", status=status, detail=detail)

    async def start_session(self, webhook_url: str) -> ConnectionCheck:
        webhook: dict[str, Any] = {
            "url": webhook_url,
            "events": ["message", "message.ack", "session.status"],
        }
        if self.hmac_key:
            webhook["hmac"] = {"key": self.hmac_key}
        body = {"name": self.session, "start": True, "config": {"webhooks": [webhook]}}
        response = await self._call("POST", "/api/sessions", json_body=body)
        if response.status_code in (409, 422) or (
            response.status_code == 400
            and "already exists" in (_bridge_message(response.content) or "")
        ):
            # The session exists already: /start is idempotent.
            await self._json("POST", f"/api/sessions/{self._session_path}/start")
        elif response.status_code >= 400:
            raise bridge_error(response.status_code, response.content)
        return await self.check_connection()

    async def qr_code(self) -> QrCode | None:
        response = await self._call(
            "GET",
            f"/api/{self._session_path}/auth/qr",
            headers={"Accept": "application/json"},
        )
        # No QR while the session is connected or not started yet: not an error for the UI.
        if response.status_code in (400, 404, 409, 422):
            return None
        if response.status_code >= 400:
            raise bridge_error(response.status_code, response.content)
        try:
            data = as_dict(response.json())
        except ValueError:
            return None
        encoded = as_str(data.get("data"))
        if not encoded:
            return None
        return QrCode(mimetype=as_str(data.get("mimetype")) or "image/png", data_base64=encoded)

    async def logout(self) -> None:
        response = await self._call("POST", f"/api/sessions/{self._session_path}/logout")
        # A session that is gone is as logged out as it gets.
        if response.status_code >= 400 and response.status_code != 404:
            raise bridge_error(response.status_code, response.content)

    # --- webhooks ------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        if not self.hmac_key:
            return False
        signature = headers.get("x-webhook-hmac", "").strip().lower()
        algorithm = headers.get("x-webhook-hmac-algorithm", "sha512").strip().lower()
        if not signature or algorithm != "sha512":
            return False
        expected = hmac.new(self.hmac_key.encode(), body, hashlib.sha512).hexdigest()
        return hmac.compare_digest(expected.encode(), signature.encode())

    def parse_webhook(self, payload: dict[str, Any]) -> ParsedWebhook:
        parsed = ParsedWebhook()
        event = as_str(payload.get("event"))
        data = as_dict(payload.get("payload"))
        if event == "message":
            message = _parse_message(data, payload)
            if message is not None:
                parsed.messages.append(message)
        elif event == "message.ack":
            status = _parse_ack(data, payload)
            if status is not None:
                parsed.statuses.append(status)
        elif event == "session.status":
            raw = as_str(data.get("status")) or "UNKNOWN"
            parsed.sessions.append(
                SessionUpdate(status=SESSION_STATUSES.get(raw, "failed"), raw_status=raw)
            )
        return parsed


def _parse_message(data: dict[str, Any], envelope: dict[str, Any]) -> InboundMessage | None:
    # "message" carries only inbound messages in WAHA, but skip our own echo defensively.
    if data.get("fromMe") is True:
        return None
    raw_from = as_str(data.get("from"))
    message_id = _message_id(data.get("id"))
    if not is_personal(raw_from) or not message_id:
        return None
    # None when the id is not a phone number: the message is kept, unlinked, for review.
    from_number = phone_of(raw_from)
    me = as_dict(envelope.get("me"))
    to_number = phone_of(as_str(data.get("to"))) or phone_of(as_str(me.get("id")))
    extra = as_dict(data.get("_data"))
    contact_name = (
        as_str(extra.get("notifyName"))
        or as_str(data.get("notifyName"))
        or as_str(data.get("pushName"))
    )
    content = as_str(data.get("body")) or None
    message_type = "text"
    media: MediaRef | None = None
    metadata: dict[str, Any] = {}
    raw_media = as_dict(data.get("media"))
    location = as_dict(data.get("location"))
    if data.get("hasMedia") is True:
        mime = as_str(raw_media.get("mimetype"))
        message_type = _type_from_mime(mime)
        url = as_str(raw_media.get("url"))
        if url:
            media = MediaRef(url=url, mime_type=mime, filename=as_str(raw_media.get("filename")))
        else:
            # The bridge failed to download it or has media downloads turned off.
            metadata["media_error"] = as_str(as_dict(raw_media.get("error")).get("message")) or (
                "no media URL"
            )
    elif location:
        message_type = "location"
        lat = as_str(location.get("latitude")) or "?"
        lon = as_str(location.get("longitude")) or "?"
        label = as_str(location.get("description")) or ""
        content = f"📍 {lat},{lon} {label}".rstrip()
        metadata["location"] = location
    reply = data.get("replyTo")
    reply_to = _message_id(as_dict(reply).get("id")) if isinstance(reply, dict) else as_str(reply)
    return InboundMessage(
        provider_message_id=message_id,
        from_number=from_number,
        to_number=to_number,
        contact_name=contact_name,
        message_type=message_type,
        content=content,
        timestamp=epoch_to_datetime(data.get("timestamp"))
        if data.get("timestamp") is not None
        else epoch_to_datetime(envelope.get("timestamp"), millis=True),
        media=media,
        reply_to=reply_to or None,
        metadata=metadata,
        sender=raw_from,
    )


def _parse_ack(data: dict[str, Any], envelope: dict[str, Any]) -> StatusUpdate | None:
    # Acks of messages the customer sent us say nothing about our deliveries.
    if data.get("fromMe") is False:
        return None
    message_id = _message_id(data.get("id"))
    name = as_str(data.get("ackName"))
    if name is None:
        ack = data.get("ack")
        name = _ACK_NAMES.get(ack) if isinstance(ack, int) else None
    status = ACK_STATUSES.get((name or "").upper())
    if not message_id or status is None:
        return None
    # Which of from/to is the customer varies by engine; it is the one that is not us.
    me = phone_of(as_str(as_dict(envelope.get("me")).get("id")))
    numbers = (phone_of(as_str(data.get(key))) for key in ("to", "from"))
    recipient = next((n for n in numbers if n and n != me), None)
    # WhatsApp Web gives no reason for an ERROR ack, so there is no code to report either.
    return StatusUpdate(
        provider_message_id=message_id,
        status=status,
        timestamp=epoch_to_datetime(envelope.get("timestamp"), millis=True),
        recipient=recipient,
        error_message=ACK_ERROR_MESSAGE if status == "failed" else None,
    )


if TYPE_CHECKING:
    # Static proof that the adapter satisfies both interfaces.
    def _conforms(provider: WahaProvider) -> tuple[WhatsAppProvider, SessionProvider]:
        return provider, provider
