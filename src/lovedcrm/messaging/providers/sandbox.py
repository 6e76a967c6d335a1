"""The offline WhatsApp provider the demo uses.

Sends are appended to a local outbox file (``data_dir/sandbox/whatsapp-outbox.jsonl``) and
answered with a ``sandbox.<uuid>`` id; the messaging service then schedules ``delivered`` and
``read`` receipts through the same webhook processing as the real providers. Inbound messages
are typed in from the inbox or ``lovedcrm whatsapp inject`` and written in this provider's own
small webhook format::

    {"messages": [{"id", "from", "name", "text", "timestamp"}],
     "statuses": [{"id", "status", "timestamp", "error"}]}
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from lovedcrm.core import clock
from lovedcrm.messaging.providers.base import (
    ConnectionCheck,
    DeliveryStatus,
    DownloadedMedia,
    InboundMessage,
    MediaRef,
    ParsedWebhook,
    ProviderError,
    ProviderKind,
    SendResult,
    StatusUpdate,
)

_STATUSES = ("sent", "delivered", "read", "failed")


def _when(value: Any) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return clock.now()


class SandboxProvider:
    kind: ProviderKind = "sandbox"

    def __init__(self, *, outbox: Path) -> None:
        self.outbox = outbox

    def _write(self, to: str, record: dict[str, Any]) -> SendResult:
        message_id = f"sandbox.{uuid.uuid4().hex}"
        self.outbox.parent.mkdir(parents=True, exist_ok=True)
        line = {"id": message_id, "to": to, "at": clock.now().isoformat(), **record}
        with self.outbox.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        return SendResult(provider_message_id=message_id, raw=line)

    async def send_text(self, to: str, body: str, *, reply_to: str | None = None) -> SendResult:
        return self._write(to, {"type": "text", "text": body, "reply_to": reply_to})

    async def send_template(
        self, to: str, *, name: str, language: str, parameters: list[str], body: str
    ) -> SendResult:
        return self._write(
            to, {"type": "template", "template": name, "language": language, "text": body}
        )

    async def send_media(
        self,
        to: str,
        *,
        media_type: str,
        link: str,
        caption: str | None = None,
        filename: str | None = None,
    ) -> SendResult:
        return self._write(to, {"type": media_type, "link": link, "caption": caption})

    async def download_media(self, media: MediaRef, *, max_bytes: int) -> DownloadedMedia:
        raise ProviderError("unsupported", "The sandbox provider has no media to download.")

    async def check_connection(self) -> ConnectionCheck:
        return ConnectionCheck(ok=True, status="connected", detail="Sandbox: messages stay local.")

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        # The sandbox receives nothing over HTTP: its events are written by the app itself.
        return False

    def parse_webhook(self, payload: dict[str, Any]) -> ParsedWebhook:
        parsed = ParsedWebhook()
        for m in payload.get("messages") or []:
            parsed.messages.append(
                InboundMessage(
                    provider_message_id=str(m["id"]),
                    from_number=str(m["from"]),
                    to_number=None,
                    contact_name=m.get("name"),
                    message_type="text",
                    content=str(m.get("text") or ""),
                    timestamp=_when(m.get("timestamp")),
                )
            )
        for s in payload.get("statuses") or []:
            if s.get("status") not in _STATUSES:
                continue
            error = s.get("error")
            parsed.statuses.append(
                StatusUpdate(
                    provider_message_id=str(s["id"]),
                    status=cast(DeliveryStatus, s["status"]),
                    timestamp=_when(s.get("timestamp")),
                    error_code="sandbox" if error else None,
                    error_message=error,
                )
            )
        return parsed
