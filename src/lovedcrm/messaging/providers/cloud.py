"""Meta's WhatsApp Cloud API (Graph API): sending, media download, webhook signature and
parsing. Wire format: shared/reference/providers.md §1."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from lovedcrm.messaging.providers import (
    as_dict,
    as_list,
    as_str,
    digits,
    e164,
    epoch_to_datetime,
    fetch_limited,
    header_value,
    network_error,
)
from lovedcrm.messaging.providers import sender as sender_number
from lovedcrm.messaging.providers.base import (
    ConnectionCheck,
    DeliveryStatus,
    DownloadedMedia,
    InboundMessage,
    MediaRef,
    MediaTooLarge,
    OutsideWindowError,
    ParsedWebhook,
    ProviderError,
    ProviderKind,
    SendResult,
    StatusUpdate,
)

if TYPE_CHECKING:
    from lovedcrm.messaging.providers.base import WhatsAppProvider

SERVICE = "the WhatsApp Cloud API"

OUTSIDE_WINDOW = 131047
TOKEN_INVALID = 190

# User-facing texts per Graph/WhatsApp error code; the UI reuses them for failed statuses.
ERROR_MESSAGES: dict[int, str] = {
    1: "The WhatsApp Cloud API reported an unknown error; it will be retried.",
    2: "The WhatsApp Cloud API is temporarily unavailable; it will be retried.",
    4: "Too many calls to the WhatsApp Cloud API from this app; it will be retried shortly.",
    10: "The access token lacks permission for this WhatsApp number.",
    100: "WhatsApp rejected a parameter of the request.",
    190: "The access token is invalid or expired: update it in Settings → WhatsApp.",
    200: "The access token lacks permission for this WhatsApp number.",
    368: "The WhatsApp account is temporarily blocked for policy violations.",
    80007: "The WhatsApp Business Account hit its rate limit; it will be retried shortly.",
    130429: "WhatsApp's sending rate limit was reached; it will be retried shortly.",
    131000: "WhatsApp reported an unexpected error; it will be retried.",
    131008: "A required parameter is missing from the message (check the template variables).",
    131009: "A parameter value of the message is invalid.",
    131026: (
        "The message could not be delivered: the number may not be on WhatsApp, or the "
        "recipient uses an old app or has not accepted WhatsApp's terms."
    ),
    OUTSIDE_WINDOW: "Outside the 24-hour window: only approved templates can be sent.",
    131048: "WhatsApp limited sending from this number because of spam reports; try again later.",
    131051: "This message type is not supported by WhatsApp.",
    131053: "WhatsApp could not fetch or process the media file.",
    131056: "Too many messages to this contact in a short time; it will be retried shortly.",
    132000: "The number of template variables does not match the approved template.",
    132001: "The template does not exist in this language or is not approved yet.",
    133010: "The phone number is not registered with the WhatsApp Cloud API.",
}

# Retrying later can succeed: rate limits and Meta-side hiccups. Everything else needs a change
# by the user (token, template, recipient) before a retry makes sense.
TRANSIENT_CODES = frozenset({1, 2, 4, 80007, 130429, 131000, 131056})

MEDIA_TYPES = frozenset({"image", "document", "audio", "video"})
_CAPTIONED = frozenset({"image", "document", "video"})
_INBOUND_MEDIA = ("image", "document", "audio", "video", "sticker")
_KNOWN_TYPES = frozenset(
    {*_INBOUND_MEDIA, "text", "location", "reaction", "button", "interactive", "contacts"}
)
_STATUSES: dict[str, DeliveryStatus] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
}


def _code_int(code: int | str | None) -> int | None:
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():
        return int(code)
    return None


def error_message(code: int | str | None, fallback: str | None = None) -> str:
    """The user-facing sentence for a WhatsApp error code (``131047`` or ``"131047"``)."""
    number = _code_int(code)
    if number is not None and number in ERROR_MESSAGES:
        return ERROR_MESSAGES[number]
    if fallback:
        return f"WhatsApp returned an error: {fallback}"
    return f"WhatsApp returned an unexpected error (code {code})."


def provider_error(
    code: int | str | None,
    *,
    title: str | None = None,
    details: str | None = None,
    http_status: int | None = None,
) -> ProviderError:
    """A ``ProviderError`` (or ``OutsideWindowError``) for a Graph error code and/or an HTTP
    status, used for synchronous errors and for value-level webhook errors alike."""
    number = _code_int(code)
    if number is None and http_status == 401:
        number = TOKEN_INVALID
    text_code = str(number) if number is not None else str(code or http_status or "unknown")
    transient = number in TRANSIENT_CODES or (
        http_status is not None and (http_status >= 500 or http_status == 429)
    )
    if number is None and http_status is not None:
        message = f"The WhatsApp Cloud API answered HTTP {http_status}" + (
            "; it will be retried." if transient else "."
        )
    else:
        message = error_message(number if number is not None else code, title)
    cls = OutsideWindowError if number == OUTSIDE_WINDOW else ProviderError
    return cls(
        text_code,
        message,
        transient=transient,
        http_status=http_status,
        details=details or title,
    )


def graph_error(http_status: int, body: bytes) -> ProviderError:
    """Map a non-2xx Graph answer ``{"error": {"message","type","code","error_data"}}``."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    err = as_dict(as_dict(data).get("error"))
    if not err:
        text = body[:300].decode("utf-8", "replace").strip() or None
        return provider_error(None, http_status=http_status, details=text)
    details = as_str(as_dict(err.get("error_data")).get("details"))
    return provider_error(
        err.get("code"),
        title=as_str(err.get("message")),
        details=details or as_str(err.get("message")),
        http_status=http_status,
    )


class CloudApiProvider:
    kind: ProviderKind = "business_api"

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        phone_number_id: str,
        access_token: str,
        app_secret: str | None,
        base_url: str = "https://graph.facebook.com",
        api_version: str = "v21.0",
    ) -> None:
        self.client = client
        self.phone_number_id = phone_number_id
        self.access_token = access_token
        self.app_secret = app_secret
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version

    # --- HTTP ----------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{self.api_version}/{path}"

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {header_value(self.access_token, 'access token')}"}

    async def _request(
        self,
        method: str,
        url: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        try:
            response = await self.client.request(
                method, url, json=json_body, params=params, headers=self._auth
            )
        except httpx.HTTPError as exc:
            raise network_error(exc, SERVICE) from exc
        if response.status_code >= 400:
            raise graph_error(response.status_code, response.content)
        try:
            return as_dict(response.json())
        except ValueError as exc:
            raise ProviderError(
                "bad_response",
                "The WhatsApp Cloud API sent an answer that is not JSON.",
                http_status=response.status_code,
            ) from exc

    async def _send(self, to: str, message: dict[str, Any]) -> SendResult:
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": e164(to),
            **message,
        }
        data = await self._request(
            "POST", self._url(f"{self.phone_number_id}/messages"), json_body=payload
        )
        messages = as_list(data.get("messages"))
        wamid = as_str(as_dict(messages[0]).get("id")) if messages else None
        if not wamid:
            # Not transient: the message may have gone out, a retry could send it twice.
            raise ProviderError(
                "bad_response", "The WhatsApp Cloud API accepted the call but returned no id."
            )
        return SendResult(provider_message_id=wamid, raw=data)

    # --- sending -------------------------------------------------------------------------

    async def send_text(self, to: str, body: str, *, reply_to: str | None = None) -> SendResult:
        message: dict[str, Any] = {"type": "text", "text": {"preview_url": False, "body": body}}
        if reply_to:
            message["context"] = {"message_id": reply_to}
        return await self._send(to, message)

    async def send_template(
        self, to: str, *, name: str, language: str, parameters: list[str], body: str
    ) -> SendResult:
        template: dict[str, Any] = {"name": name, "language": {"code": language}}
        if parameters:
            template["components"] = [
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": value} for value in parameters],
                }
            ]
        return await self._send(to, {"type": "template", "template": template})

    async def send_media(
        self,
        to: str,
        *,
        media_type: str,
        link: str,
        caption: str | None = None,
        filename: str | None = None,
    ) -> SendResult:
        if media_type not in MEDIA_TYPES:
            raise ProviderError(
                "unsupported_media_type",
                f"WhatsApp cannot send media of type {media_type!r}.",
            )
        media: dict[str, Any] = {"link": link}
        # Meta rejects a caption on audio, and a filename on anything but documents.
        if caption and media_type in _CAPTIONED:
            media["caption"] = caption
        if filename and media_type == "document":
            media["filename"] = filename
        return await self._send(to, {"type": media_type, media_type: media})

    # --- media ---------------------------------------------------------------------------

    async def download_media(self, media: MediaRef, *, max_bytes: int) -> DownloadedMedia:
        if not media.media_id:
            raise ProviderError("no_media_id", "This attachment has no WhatsApp media id.")
        info = await self._request("GET", self._url(media.media_id))
        url = as_str(info.get("url"))
        if not url:
            raise ProviderError(
                "bad_response", "The WhatsApp Cloud API returned no download URL for the media."
            )
        size = as_str(info.get("file_size"))
        if size and size.isdigit() and int(size) > max_bytes:
            raise MediaTooLarge(max_bytes, int(size))
        content, content_type = await fetch_limited(
            self.client,
            url,
            headers=self._auth,
            max_bytes=max_bytes,
            service=SERVICE,
            on_error=lambda response, body: graph_error(response.status_code, body),
        )
        mime = (
            as_str(info.get("mime_type"))
            or media.mime_type
            or (content_type or "application/octet-stream").split(";")[0].strip()
        )
        return DownloadedMedia(content=content, mime_type=mime, filename=media.filename)

    # --- connection ----------------------------------------------------------------------

    async def check_connection(self) -> ConnectionCheck:
        try:
            data = await self._request(
                "GET",
                self._url(self.phone_number_id),
                params={"fields": "display_phone_number,verified_name,quality_rating"},
            )
        except ProviderError as exc:
            return ConnectionCheck(
                ok=False,
                status="disconnected" if exc.transient else "failed",
                detail=exc.message,
            )
        number = as_str(data.get("display_phone_number")) or "?"
        name = as_str(data.get("verified_name"))
        detail = f"{number} ({name})" if name else number
        quality = as_str(data.get("quality_rating"))
        if quality:
            detail += f", quality {quality}"
        return ConnectionCheck(ok=True, status="connected", detail=detail)

    # --- webhooks ------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        if not self.app_secret:
            return False
        header = headers.get("x-hub-signature-256", "")
        if not header.startswith("sha256="):
            return False
        expected = hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode(), header[7:].strip().lower().encode())

    def parse_webhook(self, payload: dict[str, Any]) -> ParsedWebhook:
        parsed = ParsedWebhook()
        for entry in as_list(payload.get("entry")):
            for change in as_list(as_dict(entry).get("changes")):
                change = as_dict(change)
                if change.get("field") != "messages":
                    continue
                self._parse_value(as_dict(change.get("value")), parsed)
        return parsed

    def _parse_value(self, value: dict[str, Any], parsed: ParsedWebhook) -> None:
        display = as_str(as_dict(value.get("metadata")).get("display_phone_number"))
        to_number = sender_number(display)
        names: dict[str, str] = {}
        for contact in as_list(value.get("contacts")):
            contact = as_dict(contact)
            wa_id = as_str(contact.get("wa_id"))
            name = as_str(as_dict(contact.get("profile")).get("name"))
            if wa_id and name:
                names[digits(wa_id)] = name
        for raw in as_list(value.get("messages")):
            message = _parse_message(as_dict(raw), to_number, names)
            if message is not None:
                parsed.messages.append(message)
        for raw in as_list(value.get("statuses")):
            status = _parse_status(as_dict(raw))
            if status is not None:
                parsed.statuses.append(status)
        for raw in as_list(value.get("errors")):
            parsed.errors.append(_webhook_error(as_dict(raw)))


def _webhook_error(err: dict[str, Any]) -> ProviderError:
    return provider_error(
        err.get("code"),
        title=as_str(err.get("title")) or as_str(err.get("message")),
        details=as_str(as_dict(err.get("error_data")).get("details")),
    )


def _parse_message(
    msg: dict[str, Any], to_number: str | None, names: dict[str, str]
) -> InboundMessage | None:
    wamid = as_str(msg.get("id"))
    sender = as_str(msg.get("from"))
    if not wamid or not sender:
        return None
    raw_type = as_str(msg.get("type")) or "unknown"
    kind = raw_type if raw_type in _KNOWN_TYPES else "unknown"
    body = as_dict(msg.get(raw_type))
    metadata: dict[str, Any] = {}
    content: str | None = None
    media: MediaRef | None = None
    reply_to = as_str(as_dict(msg.get("context")).get("id"))

    if kind == "text":
        content = as_str(body.get("body"))
    elif kind in _INBOUND_MEDIA:
        content = as_str(body.get("caption"))
        media = MediaRef(
            media_id=as_str(body.get("id")),
            mime_type=as_str(body.get("mime_type")),
            sha256=as_str(body.get("sha256")),
            filename=as_str(body.get("filename")) if kind == "document" else None,
        )
        if body.get("voice") is True:
            metadata["voice"] = True
        if body.get("animated") is True:
            metadata["animated"] = True
    elif kind == "location":
        content = _describe_location(body)
        metadata["location"] = body
    elif kind == "reaction":
        emoji = as_str(body.get("emoji"))
        content = emoji or None
        target = as_str(body.get("message_id"))
        metadata["reaction_to"] = target
        if not emoji:
            # An empty emoji means the customer removed their reaction.
            metadata["reaction_removed"] = True
        reply_to = reply_to or target
    elif kind == "button":
        content = as_str(body.get("text"))
        metadata["button_payload"] = as_str(body.get("payload"))
    elif kind == "interactive":
        reply_kind = as_str(body.get("type")) or ""
        reply = as_dict(body.get(reply_kind))
        content = as_str(reply.get("title"))
        metadata["interactive"] = {
            "type": reply_kind,
            "id": as_str(reply.get("id")),
            "description": as_str(reply.get("description")),
        }
    elif kind == "contacts":
        shared = as_list(msg.get("contacts"))
        content = ", ".join(_describe_contact(as_dict(c)) for c in shared) or None
        metadata["contacts"] = shared
    else:
        metadata["raw_type"] = raw_type
        errors = [as_dict(e) for e in as_list(msg.get("errors"))]
        if errors:
            metadata["errors"] = [
                {"code": as_str(e.get("code")), "title": as_str(e.get("title"))} for e in errors
            ]

    context = as_dict(msg.get("context"))
    if context.get("forwarded") or context.get("frequently_forwarded"):
        metadata["forwarded"] = True
    referral = msg.get("referral")
    if isinstance(referral, dict):
        metadata["referral"] = referral

    return InboundMessage(
        provider_message_id=wamid,
        from_number=sender_number(sender),
        to_number=to_number,
        contact_name=names.get(digits(sender)),
        message_type=kind,
        content=content,
        timestamp=epoch_to_datetime(msg.get("timestamp")),
        media=media,
        reply_to=reply_to,
        metadata=metadata,
        sender=sender,
    )


def _describe_location(location: dict[str, Any]) -> str:
    lat = as_str(location.get("latitude")) or "?"
    lon = as_str(location.get("longitude")) or "?"
    label = as_str(location.get("name")) or as_str(location.get("address")) or ""
    return f"📍 {lat},{lon} {label}".rstrip()


def _describe_contact(contact: dict[str, Any]) -> str:
    name = as_str(as_dict(contact.get("name")).get("formatted_name")) or "?"
    phones = [as_str(as_dict(p).get("phone")) for p in as_list(contact.get("phones"))]
    first = next((p for p in phones if p), None)
    return f"👤 {name} ({first})" if first else f"👤 {name}"


def _parse_status(raw: dict[str, Any]) -> StatusUpdate | None:
    wamid = as_str(raw.get("id"))
    delivery = _STATUSES.get(as_str(raw.get("status")) or "")
    if not wamid or delivery is None:
        return None
    recipient = as_str(raw.get("recipient_id"))
    error_code: str | None = None
    error_text: str | None = None
    errors = as_list(raw.get("errors"))
    if errors:
        first = as_dict(errors[0])
        error_code = as_str(first.get("code"))
        title = as_str(first.get("title")) or as_str(first.get("message"))
        details = as_str(as_dict(first.get("error_data")).get("details"))
        error_text = ": ".join(part for part in (title, details) if part) or None
    return StatusUpdate(
        provider_message_id=wamid,
        status=delivery,
        timestamp=epoch_to_datetime(raw.get("timestamp")),
        recipient=sender_number(recipient),
        error_code=error_code,
        error_message=error_text,
    )


if TYPE_CHECKING:
    # Static proof that the adapter satisfies the interface.
    def _conforms(provider: CloudApiProvider) -> WhatsAppProvider:
        return provider
