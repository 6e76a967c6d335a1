"""The WhatsApp provider interface: what every adapter (Cloud API, WhatsApp Web bridge,
sandbox) offers, and the provider-neutral shapes its webhooks are parsed into.

Adapters are plain objects built from one decrypted configuration and an ``httpx.AsyncClient``;
they know the wire format and nothing about the database. The messaging services store what
``parse_webhook`` returns and call ``send_*`` from jobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

ProviderKind = Literal["business_api", "web_unofficial", "sandbox"]
DeliveryStatus = Literal["sent", "delivered", "read", "failed"]

# The value written to messages.provider_type for each configuration kind.
MESSAGE_PROVIDER_TYPE: dict[str, str] = {
    "business_api": "whatsapp_business",
    "web_unofficial": "whatsapp_web",
    "sandbox": "whatsapp_sandbox",
}


class ProviderError(Exception):
    """A provider refused or failed a call.

    ``code`` is the provider's own code as text (Meta's ``131047``, an HTTP status for a
    bridge, ``network`` for a connection failure); ``message`` is a sentence a user can act
    on; ``transient`` says whether retrying later may succeed (rate limits, 5xx, timeouts).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        transient: bool = False,
        http_status: int | None = None,
        details: str | None = None,
    ) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.transient = transient
        self.http_status = http_status
        self.details = details


class OutsideWindowError(ProviderError):
    """Meta's 131047: a free-form message more than 24 hours after the customer's last one."""


class MediaTooLarge(ProviderError):
    def __init__(self, limit_bytes: int, size: int | None = None) -> None:
        super().__init__(
            "media_too_large",
            f"The file is larger than the limit of {limit_bytes // 1_048_576} MB"
            + (f" ({size} bytes)" if size else ""),
        )
        self.limit_bytes = limit_bytes
        self.size = size


@dataclass(frozen=True)
class MediaRef:
    """Where an inbound attachment can be fetched: Meta gives an id, bridges a URL."""

    media_id: str | None = None
    url: str | None = None
    mime_type: str | None = None
    filename: str | None = None
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class InboundMessage:
    provider_message_id: str
    # E.164 with the leading "+", e.g. "+5511987654321"; None when the provider's sender is
    # not a phone number (the message is then kept unlinked, for review).
    from_number: str | None
    to_number: str | None
    contact_name: str | None
    # text, image, document, audio, video, sticker, location, reaction, button, interactive,
    # contacts, unknown
    message_type: str
    # The text, the caption of a media message, or a short description (location, reaction).
    content: str | None
    timestamp: datetime
    media: MediaRef | None = None
    reply_to: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # The sender as the provider gave it (kept for review when it is not a number).
    sender: str | None = None


@dataclass(frozen=True)
class StatusUpdate:
    provider_message_id: str
    status: DeliveryStatus
    timestamp: datetime
    recipient: str | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class SessionUpdate:
    """A WhatsApp Web bridge's session changed: ``status`` is one of ``connected``,
    ``disconnected``, ``qr`` (waiting for a scan), ``starting``, ``failed``."""

    status: str
    raw_status: str


@dataclass
class ParsedWebhook:
    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    sessions: list[SessionUpdate] = field(default_factory=list)
    # Value-level errors Meta reports outside any message (e.g. 130429 rate limit).
    errors: list[ProviderError] = field(default_factory=list)


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DownloadedMedia:
    content: bytes
    mime_type: str
    filename: str | None = None


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    # connected, disconnected, qr, starting, failed
    status: str
    detail: str


@dataclass(frozen=True)
class QrCode:
    mimetype: str
    data_base64: str


@runtime_checkable
class WhatsAppProvider(Protocol):
    kind: ProviderKind

    async def send_text(self, to: str, body: str, *, reply_to: str | None = None) -> SendResult:
        """``to`` is E.164 with "+"."""
        ...

    async def send_template(
        self, to: str, *, name: str, language: str, parameters: list[str], body: str
    ) -> SendResult:
        """An approved template (Cloud API) by name and language with its body parameters in
        order; bridges without templates send the already rendered ``body`` as text."""
        ...

    async def send_media(
        self,
        to: str,
        *,
        media_type: str,
        link: str,
        caption: str | None = None,
        filename: str | None = None,
    ) -> SendResult: ...

    async def download_media(self, media: MediaRef, *, max_bytes: int) -> DownloadedMedia:
        """Raises ``MediaTooLarge`` as soon as the size is known to exceed ``max_bytes``."""
        ...

    async def check_connection(self) -> ConnectionCheck: ...

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Constant-time check of the provider's signature over the raw body.
        ``headers`` keys are lower-case."""
        ...

    def parse_webhook(self, payload: dict[str, Any]) -> ParsedWebhook: ...


@runtime_checkable
class SessionProvider(Protocol):
    """Extra calls of a WhatsApp Web bridge: its session is paired by scanning a QR code."""

    async def start_session(self, webhook_url: str) -> ConnectionCheck: ...

    async def qr_code(self) -> QrCode | None: ...

    async def logout(self) -> None: ...
