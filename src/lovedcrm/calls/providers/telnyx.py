"""Telnyx Call Control v2: ``POST /v2/calls`` (Bearer) with our call id in ``client_state``,
a transfer to the lead once the agent's leg is answered, webhooks signed with Ed25519 over
``"{telnyx-timestamp}|{raw body}"`` (tolerance 300 s)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from lovedcrm.calls.providers.base import (
    CallUpdate,
    ConnectionCheck,
    ProviderCall,
    ProviderError,
    ProviderKind,
)
from lovedcrm.calls.providers.http import fetch_limited, network_error
from lovedcrm.core import clock

DEFAULT_BASE_URL = "https://api.telnyx.com"
SERVICE = "Telnyx"
TOLERANCE_SECONDS = 300

# hangup_cause -> the product's final state (normal_clearing after an answer: completed).
HANGUP = {
    "normal_clearing": "completed",
    "user_busy": "busy",
    "call_rejected": "busy",
    "no_answer": "no_answer",
    "timeout": "no_answer",
    "originator_cancel": "canceled",
    "time_limit": "completed",
    "not_found": "failed",
    "unspecified": "failed",
}


def encode_state(data: dict[str, str]) -> str:
    return base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def decode_state(value: Any) -> dict[str, str]:
    if not isinstance(value, str) or not value:
        return {}
    try:
        data = json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return {}
    return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class TelnyxProvider:
    kind: ProviderKind = "telnyx"

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        api_key: str,
        connection_id: str | None,
        public_key: str | None,
        base_url: str = DEFAULT_BASE_URL,
    ) -> None:
        self.client = client
        self.api_key = api_key
        self.connection_id = connection_id
        self.public_key = public_key
        self.base_url = base_url.rstrip("/")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            response = await self.client.request(
                method, f"{self.base_url}{path}", json=body, headers=self._headers()
            )
        except httpx.HTTPError as exc:
            raise network_error(exc, SERVICE) from exc
        if response.status_code >= 400:
            raise self._error(response)
        try:
            data = response.json()
        except ValueError:
            return {}
        inner = data.get("data") if isinstance(data, dict) else None
        return inner if isinstance(inner, dict) else {}

    def _error(self, response: httpx.Response) -> ProviderError:
        message = f"Telnyx refused the request (HTTP {response.status_code})."
        code = str(response.status_code)
        try:
            errors = response.json().get("errors") or []
            if errors and isinstance(errors[0], dict):
                first = errors[0]
                message = f"Telnyx: {first.get('detail') or first.get('title') or message}"
                code = str(first.get("code") or code)
        except (ValueError, AttributeError):
            pass
        return ProviderError(
            code,
            message,
            transient=response.status_code >= 500 or response.status_code == 429,
            http_status=response.status_code,
            details=response.text[:500],
        )

    async def dial(
        self,
        *,
        from_business: str,
        agent_phone: str,
        lead_phone: str,
        callback_url: str,
        call_ref: str,
        record: bool = True,
    ) -> ProviderCall:
        body: dict[str, Any] = {
            "to": agent_phone,
            "from": from_business,
            "connection_id": self.connection_id,
            "webhook_url": callback_url,
            "webhook_url_method": "POST",
            "client_state": encode_state({"call": call_ref, "leg": "agent", "to": lead_phone}),
            "timeout_secs": 30,
        }
        if record:
            body["record"] = "record-from-answer"
        data = await self._send("POST", "/v2/calls", body)
        call_id = data.get("call_control_id")
        if not isinstance(call_id, str) or not call_id:
            raise ProviderError("bad_response", "Telnyx did not give the call's id.")
        return ProviderCall(id=call_id, status="queued")

    async def transfer(
        self, provider_call_id: str, *, to: str, from_number: str, call_ref: str
    ) -> None:
        """Send the answered leg on to ``to`` (the lead, or a member for an inbound call)."""
        await self._send(
            "POST",
            f"/v2/calls/{provider_call_id}/actions/transfer",
            {
                "to": to,
                "from": from_number,
                "client_state": encode_state({"call": call_ref, "leg": "other"}),
                "timeout_secs": 25,
            },
        )

    async def answer(self, provider_call_id: str, *, call_ref: str) -> None:
        await self._send(
            "POST",
            f"/v2/calls/{provider_call_id}/actions/answer",
            {"client_state": encode_state({"call": call_ref, "leg": "inbound"})},
        )

    async def hangup(self, provider_call_id: str) -> None:
        await self._send("POST", f"/v2/calls/{provider_call_id}/actions/hangup", {})

    async def check_connection(self) -> ConnectionCheck:
        try:
            await self._send("GET", "/v2/balance")
        except ProviderError as exc:
            return ConnectionCheck(False, exc.message)
        return ConnectionCheck(True, "Telnyx accepted the API key.")

    def verify_callback(self, url: str, headers: Mapping[str, str], body: bytes) -> bool:
        given = headers.get("telnyx-signature-ed25519", "")
        stamp = headers.get("telnyx-timestamp", "")
        if not given or not stamp or not self.public_key:
            return False
        try:
            sent_at = int(stamp)
            signature = base64.b64decode(given, validate=True)
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public_key))
        except (ValueError, binascii.Error):
            return False
        if abs(clock.now().timestamp() - sent_at) > TOLERANCE_SECONDS:
            return False
        try:
            key.verify(signature, stamp.encode() + b"|" + body)
        except InvalidSignature:
            return False
        return True

    def parse_callback(self, url: str, body: bytes) -> list[CallUpdate]:
        try:
            envelope = json.loads(body)
        except ValueError:
            return []
        data = envelope.get("data") if isinstance(envelope, dict) else None
        if not isinstance(data, dict):
            return []
        event = str(data.get("event_type") or "")
        event_id = str(data.get("id") or "")
        payload = data.get("payload") if isinstance(data.get("payload"), dict) else {}
        assert isinstance(payload, dict)
        state = decode_state(payload.get("client_state"))
        ccid = payload.get("call_control_id")
        ccid = ccid if isinstance(ccid, str) and ccid else None
        when = _when(data.get("occurred_at"))
        common: dict[str, Any] = {
            "event_key": event_id or f"{ccid}:{event}",
            "provider_call_id": ccid,
            "call_ref": state.get("call"),
            "occurred_at": when,
            "leg": state.get("leg"),
        }
        if event == "call.initiated":
            if payload.get("direction") == "incoming":
                return [
                    CallUpdate(
                        **common,
                        status="ringing",
                        direction="inbound",
                        action="incoming",
                        from_number=payload.get("from"),
                        to_number=payload.get("to"),
                    )
                ]
            return [CallUpdate(**common, status="ringing")]
        if event == "call.answered":
            action = "bridge" if state.get("leg") == "agent" else None
            target = state.get("to") if action else None
            return [CallUpdate(**common, status="in_progress", action=action, to_number=target)]
        if event == "call.bridged":
            return [CallUpdate(**common, status="in_progress")]
        if event == "call.hangup":
            cause = str(payload.get("hangup_cause") or "unspecified")
            start, end = _when(payload.get("start_time")), _when(payload.get("end_time"))
            duration = int((end - start).total_seconds()) if start and end else None
            status = HANGUP.get(cause, "failed")
            return [
                CallUpdate(
                    **common,
                    status=status,
                    duration_seconds=duration,
                    reason=None if status != "failed" else cause,
                )
            ]
        if event == "call.recording.saved":
            urls = payload.get("public_recording_urls") or payload.get("recording_urls") or {}
            url_found = None
            if isinstance(urls, dict):
                url_found = urls.get("wav") or urls.get("mp3")
            start = _when(payload.get("recording_started_at"))
            end = _when(payload.get("recording_ended_at"))
            return [
                CallUpdate(
                    **common,
                    recording_url=url_found if isinstance(url_found, str) else None,
                    recording_id=str(payload.get("recording_id") or event_id),
                    recording_duration_seconds=(
                        int((end - start).total_seconds()) if start and end else None
                    ),
                )
            ]
        return []

    async def fetch_recording(self, url: str, *, max_bytes: int) -> bytes:
        # Pre-signed (about ten minutes): no credentials go with it.
        return await fetch_limited(self.client, url, service=SERVICE, max_bytes=max_bytes)
