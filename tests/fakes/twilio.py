"""A fake Twilio REST API on loopback: ``POST /2010-04-01/Accounts/{sid}/Calls.json``
(form-encoded, Basic auth; 201 with the call's ``sid``), ``POST .../Calls/{sid}.json``
(hang up), ``GET /2010-04-01/Accounts/{sid}.json`` (the account: the connection check) and
recordings (``GET .../Recordings/{sid}.wav``, Basic auth). Plus the status callbacks Twilio
would post, signed as Twilio signs them.

Knobs: ``next_sid`` (the sid the next call gets), ``fail`` (a status and Twilio error body
for every call request), plus the shared ``down``/``hold``/``delay``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode

from lovedcrm.calls.providers.sandbox import tone_wav
from tests.fakes import FakeServer, RecordedRequest, Reply

ACCOUNT_SID = "AC" + "0" * 30 + "42"
AUTH_TOKEN = "twilio-auth-token-0123456789"


def sign(token: str, url: str, params: list[tuple[str, str]]) -> str:
    """``X-Twilio-Signature``: HMAC-SHA1 over the URL then each parameter name+value sorted
    by name, base64 (written from Twilio's documentation, apart from the product's code)."""
    payload = url + "".join(f"{k}{v}" for k, v in sorted(params))
    mac = hmac.new(token.encode(), payload.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def status_form(
    call_sid: str, status: str, sequence: int | None = None, **extra: str
) -> list[tuple[str, str]]:
    form = [
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call_sid),
        ("CallStatus", status),
        ("CallbackSource", "call-progress-events"),
        ("Direction", "outbound-api"),
        ("From", "+551130001000"),
        ("To", "+5511988887777"),
        ("Timestamp", "Mon, 07 Dec 2026 10:00:00 +0000"),
    ]
    if sequence is not None:
        form.append(("SequenceNumber", str(sequence)))
    form += list(extra.items())
    return form


def signed(url: str, form: list[tuple[str, str]], token: str = AUTH_TOKEN) -> dict[str, Any]:
    """``client.post`` arguments for a callback Twilio posts to ``url``."""
    return {
        "content": urlencode(form).encode(),
        "headers": {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sign(token, url, form),
        },
    }


class FakeTwilio(FakeServer):
    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.next_sid: str | None = None
        self.fail: tuple[int, dict[str, Any]] | None = None
        self.recording = tone_wav(1.0)
        super().__init__()

    @property
    def calls_path(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Calls.json"

    def recording_url(self, recording_sid: str) -> str:
        return f"{self.url}/2010-04-01/Accounts/{self.account_sid}/Recordings/{recording_sid}"

    def _authorized(self, request: RecordedRequest) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    def form(self, request: RecordedRequest) -> list[tuple[str, str]]:
        return parse_qsl(request.body.decode(), keep_blank_values=True)

    def handle(self, request: RecordedRequest) -> Reply:
        if not self._authorized(request):
            return Reply.json({"code": 20003, "message": "Authenticate", "status": 401}, status=401)
        prefix = f"/2010-04-01/Accounts/{self.account_sid}"
        if request.method == "GET" and request.path == prefix + ".json":
            return Reply.json({"sid": self.account_sid, "status": "active"})
        if request.method == "POST" and request.path == self.calls_path:
            if self.fail is not None:
                status, body = self.fail
                return Reply(status=status, body=json.dumps(body).encode())
            sid = self.next_sid or f"CA{uuid.uuid4().hex}"
            self.next_sid = None
            return Reply.json(
                {
                    "sid": sid,
                    "status": "queued",
                    "direction": "outbound-api",
                    "duration": None,
                    "price": None,
                    "price_unit": "USD",
                },
                status=201,
            )
        if request.method == "POST" and request.path.startswith(prefix + "/Calls/"):
            return Reply.json({"status": "completed"})
        if request.method == "GET" and request.path.startswith(prefix + "/Recordings/"):
            return Reply(body=self.recording, content_type="audio/x-wav")
        return Reply.json({"code": 20404, "message": "Not found"}, status=404)
