"""A fake Telnyx Call Control v2 API on loopback: ``POST /v2/calls`` (Bearer) answering the
``call_control_id``, ``POST /v2/calls/{id}/actions/{action}`` (answer, transfer, hangup),
``GET /v2/balance`` and a pre-signed recording download (``GET /recordings/{id}.wav``). Plus
webhook events as Telnyx sends them, signed with a real Ed25519 key over
``"{timestamp}|{body}"``.

Knobs: ``next_id`` (the next call's id), ``fail`` (status and errors body for dials)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lovedcrm.calls.providers.sandbox import tone_wav
from tests.fakes import FakeServer, RecordedRequest, Reply

API_KEY = "KEY0123456789ABCDEF_telnyx"
CONNECTION_ID = "1684641123236054244"


class Signer:
    """A real Ed25519 key pair: Telnyx's side of the webhook signatures."""

    def __init__(self) -> None:
        self.private = Ed25519PrivateKey.generate()
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_b64 = base64.b64encode(raw).decode()

    def headers(self, body: bytes, timestamp: int) -> dict[str, str]:
        signature = self.private.sign(str(timestamp).encode() + b"|" + body)
        return {
            "Content-Type": "application/json",
            "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
            "telnyx-timestamp": str(timestamp),
        }


def state(data: dict[str, str]) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


def event(
    event_type: str, call_control_id: str, *, event_id: str | None = None, **payload: Any
) -> bytes:
    body = {
        "data": {
            "record_type": "event",
            "event_type": event_type,
            "id": event_id or str(uuid.uuid4()),
            "occurred_at": "2026-12-07T10:00:00.000000Z",
            "payload": {
                "call_control_id": call_control_id,
                "connection_id": CONNECTION_ID,
                "call_leg_id": str(uuid.uuid4()),
                "call_session_id": str(uuid.uuid4()),
                **payload,
            },
        },
        "meta": {"attempt": 1, "delivered_to": "https://example.test"},
    }
    return json.dumps(body).encode()


class FakeTelnyx(FakeServer):
    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.next_id: str | None = None
        self.fail: tuple[int, dict[str, Any]] | None = None
        self.recording = tone_wav(1.0)
        super().__init__()

    def recording_url(self, name: str = "rec1") -> str:
        return f"{self.url}/recordings/{name}.wav?X-Amz-Signature=abc"

    def handle(self, request: RecordedRequest) -> Reply:
        if request.path.startswith("/recordings/"):
            return Reply(body=self.recording, content_type="audio/wav")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return Reply.json(
                {"errors": [{"code": "10009", "title": "Authentication failed"}]}, 401
            )
        if request.method == "GET" and request.path == "/v2/balance":
            return Reply.json({"data": {"balance": "10.00", "currency": "USD"}})
        if request.method == "POST" and request.path == "/v2/calls":
            if self.fail is not None:
                status, body = self.fail
                return Reply(status=status, body=json.dumps(body).encode())
            call_id = self.next_id or f"v3:{uuid.uuid4().hex}"
            self.next_id = None
            return Reply.json(
                {
                    "data": {
                        "call_control_id": call_id,
                        "call_leg_id": str(uuid.uuid4()),
                        "call_session_id": str(uuid.uuid4()),
                        "is_alive": False,
                        "record_type": "call",
                    }
                }
            )
        if request.method == "POST" and "/actions/" in request.path:
            return Reply.json({"data": {"result": "ok"}})
        return Reply.json({"errors": [{"code": "404", "title": "Not found"}]}, 404)
