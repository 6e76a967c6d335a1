"""A fake Meta Graph API (WhatsApp Cloud API) and builders of signed Cloud API webhooks, in
the shapes of shared/reference/providers.md §1."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from tests.fakes import FakeServer, RecordedRequest, Reply

PHONE_NUMBER_ID = "106540352242922"
DISPLAY_PHONE_NUMBER = "15550001234"
WABA_ID = "102290129340398"
ACCESS_TOKEN = "EAAG-test-token"


@dataclass
class QueuedFailure:
    code: int
    http_status: int
    message: str
    details: str | None


def graph_error_body(
    code: int, message: str, *, details: str | None = None, type_: str = "OAuthException"
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": message,
        "type": type_,
        "code": code,
        "fbtrace_id": "A" + secrets.token_hex(8),
    }
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return {"error": error}


class FakeGraphApi(FakeServer):
    """Knobs: ``media`` {media_id: (bytes, mime)} (or ``add_media``), ``declared_sizes``
    {media_id: size to announce as file_size}, ``omit_content_length`` (serve media bytes
    without Content-Length), ``fail_next(...)``, ``down``, ``delay``. ``sent`` holds the JSON
    bodies posted to /messages."""

    def __init__(
        self,
        *,
        access_token: str = ACCESS_TOKEN,
        phone_number_id: str = PHONE_NUMBER_ID,
        api_version: str = "v21.0",
        display_phone_number: str = "+1 555-000-1234",
        verified_name: str = "Loved CRM",
    ) -> None:
        self.access_token = access_token
        self.phone_number_id = phone_number_id
        self.api_version = api_version
        self.display_phone_number = display_phone_number
        self.verified_name = verified_name
        self.media: dict[str, tuple[bytes, str]] = {}
        self.declared_sizes: dict[str, int] = {}
        self.omit_content_length = False
        self.failures: deque[QueuedFailure] = deque()
        self.sent: list[dict[str, Any]] = []
        super().__init__()

    # --- knobs ---------------------------------------------------------------------------

    def add_media(
        self, media_id: str, data: bytes, mime: str, *, declared_size: int | None = None
    ) -> None:
        self.media[media_id] = (data, mime)
        if declared_size is not None:
            self.declared_sizes[media_id] = declared_size

    def fail_next(
        self,
        code: int = 130429,
        http_status: int = 400,
        *,
        message: str | None = None,
        details: str | None = None,
    ) -> None:
        """The next API call (any endpoint) answers with this Graph error."""
        self.failures.append(
            QueuedFailure(code, http_status, message or f"(#{code}) Error {code}", details)
        )

    def media_url(self, media_id: str) -> str:
        return f"{self.url}/whatsapp_business/attachments/?mid={media_id}"

    # --- server --------------------------------------------------------------------------

    def _authorized(self, request: RecordedRequest) -> bool:
        expected = f"Bearer {self.access_token}"
        return hmac.compare_digest(request.headers.get("authorization", ""), expected)

    def handle(self, request: RecordedRequest) -> Reply:
        if not self._authorized(request):
            return Reply.json(
                graph_error_body(190, "Invalid OAuth access token - Cannot parse access token"),
                401,
            )
        if self.failures:
            f = self.failures.popleft()
            return Reply.json(graph_error_body(f.code, f.message, details=f.details), f.http_status)
        if request.path == "/whatsapp_business/attachments/":
            return self._download(request)
        prefix = f"/{self.api_version}/"
        if not request.path.startswith(prefix):
            return self._unknown(request)
        rest = request.path[len(prefix) :]
        if request.method == "POST" and rest == f"{self.phone_number_id}/messages":
            return self._send(request)
        if request.method == "GET" and rest == self.phone_number_id:
            return Reply.json(
                {
                    "verified_name": self.verified_name,
                    "display_phone_number": self.display_phone_number,
                    "quality_rating": "GREEN",
                    "id": self.phone_number_id,
                }
            )
        if request.method == "GET" and rest in self.media:
            data, mime = self.media[rest]
            return Reply.json(
                {
                    "messaging_product": "whatsapp",
                    "url": self.media_url(rest),
                    "mime_type": mime,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "file_size": str(self.declared_sizes.get(rest, len(data))),
                    "id": rest,
                }
            )
        return self._unknown(request)

    def _unknown(self, request: RecordedRequest) -> Reply:
        return Reply.json(
            graph_error_body(
                100,
                f"Unsupported {request.method.lower()} request. Object with ID "
                f"'{request.path.rsplit('/', 1)[-1]}' does not exist",
                type_="GraphMethodException",
            ),
            400,
        )

    def _send(self, request: RecordedRequest) -> Reply:
        body = request.json if isinstance(request.json, dict) else {}
        kind = body.get("type")
        if body.get("messaging_product") != "whatsapp" or not body.get("to") or not kind:
            return Reply.json(
                graph_error_body(
                    100, "(#100) Invalid parameter", details="messaging_product, to and type"
                ),
                400,
            )
        if not isinstance(body.get(kind), dict):
            return Reply.json(
                graph_error_body(
                    131008, "(#131008) Required parameter is missing", details=f"{kind} missing"
                ),
                400,
            )
        self.sent.append(body)
        to = str(body["to"])
        return Reply.json(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                "messages": [{"id": "wamid." + secrets.token_urlsafe(24)}],
            }
        )

    def _download(self, request: RecordedRequest) -> Reply:
        media_id = (request.query.get("mid") or [""])[0]
        if media_id not in self.media:
            return Reply(404, b"Not Found", "text/plain")
        data, mime = self.media[media_id]
        return Reply(200, data, mime, omit_length=self.omit_content_length)


# --- webhook builders ---------------------------------------------------------------------


def meta_signature(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def new_wamid() -> str:
    return "wamid.HBgM" + secrets.token_hex(16).upper()


def meta_webhook(value: dict[str, Any]) -> dict[str, Any]:
    """Wrap one ``value`` in the envelope Meta posts."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": value}]}],
    }


def _value(
    *, phone_number_id: str = PHONE_NUMBER_ID, display_phone_number: str = DISPLAY_PHONE_NUMBER
) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_phone_number,
            "phone_number_id": phone_number_id,
        },
    }


def meta_message(
    type_: str,
    content: dict[str, Any] | None = None,
    *,
    from_number: str = "16505551234",
    name: str | None = "Jane",
    wamid: str | None = None,
    timestamp: int | None = None,
    context_id: str | None = None,
    referral: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
) -> dict[str, Any]:
    """A webhook with one inbound message of ``type_`` whose object is ``content``
    (``{"type": "location", "location": {...}}``); ``extra`` adds top-level message fields
    such as ``errors`` (for ``unknown``) or ``contacts`` (for a shared contact card)."""
    message: dict[str, Any] = {
        "from": from_number,
        "id": wamid or new_wamid(),
        "timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "type": type_,
    }
    if content is not None:
        message[type_] = content
    if context_id:
        message["context"] = {"from": DISPLAY_PHONE_NUMBER, "id": context_id}
    if referral:
        message["referral"] = referral
    message.update(extra or {})
    value = _value(phone_number_id=phone_number_id)
    if name is not None:
        value["contacts"] = [{"profile": {"name": name}, "wa_id": from_number}]
    value["messages"] = [message]
    return meta_webhook(value)


def meta_text_message(body: str = "Hi", **kwargs: Any) -> dict[str, Any]:
    return meta_message("text", {"body": body}, **kwargs)


def meta_image_message(
    media_id: str = "1479537139650973",
    *,
    mime_type: str = "image/jpeg",
    sha256: str = "Bi6B+IkpJkhiAN9qXZB1vJ53ZTpO4gUSTvDpwr+tB60=",
    caption: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    image: dict[str, Any] = {"mime_type": mime_type, "sha256": sha256, "id": media_id}
    if caption is not None:
        image["caption"] = caption
    return meta_message("image", image, **kwargs)


def meta_document_message(
    media_id: str = "1283755645875839",
    *,
    filename: str = "proposta.pdf",
    mime_type: str = "application/pdf",
    sha256: str = "kP3+6H7sW1Q0bT0b5vX5JpJQ1gYpM2m0a9y3mP1cQ2s=",
    caption: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "filename": filename,
        "mime_type": mime_type,
        "sha256": sha256,
        "id": media_id,
    }
    if caption is not None:
        document["caption"] = caption
    return meta_message("document", document, **kwargs)


def meta_status(
    wamid: str,
    status: str = "delivered",
    *,
    recipient: str = "16505551234",
    timestamp: int | None = None,
    error_code: int | None = None,
    error_title: str | None = None,
    error_details: str | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "recipient_id": recipient,
    }
    if status in ("sent", "delivered"):
        entry["conversation"] = {
            "id": secrets.token_hex(16),
            "origin": {"type": "service"},
        }
        entry["pricing"] = {
            "billable": True,
            "category": "service",
            "pricing_model": "PMP",
            "type": "regular",
        }
    if error_code is not None:
        title = error_title or f"Error {error_code}"
        entry["errors"] = [
            {
                "code": error_code,
                "title": title,
                "message": title,
                "error_data": {"details": error_details or title},
            }
        ]
    value = _value()
    value["statuses"] = [entry]
    return meta_webhook(value)


def meta_value_error(
    code: int = 130429, title: str = "Rate limit hit", details: str | None = None
) -> dict[str, Any]:
    value = _value()
    value["errors"] = [
        {
            "code": code,
            "title": title,
            "message": title,
            "error_data": {"details": details or title},
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
        }
    ]
    return meta_webhook(value)
