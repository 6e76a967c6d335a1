"""Twilio Programmable Voice: REST calls (form-encoded, Basic auth), inline TwiML, status and
recording callbacks signed with ``X-Twilio-Signature`` (HMAC-SHA1 over the full URL plus the
POST parameters sorted by name, base64)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

import httpx

from lovedcrm.calls.providers.base import (
    CallUpdate,
    ConnectionCheck,
    ProviderCall,
    ProviderError,
    ProviderKind,
)
from lovedcrm.calls.providers.http import fetch_limited, network_error

DEFAULT_BASE_URL = "https://api.twilio.com"
SERVICE = "Twilio"

# Twilio's CallStatus / DialCallStatus -> the product's.
STATUS = {
    "queued": "queued",
    "initiated": "queued",
    "ringing": "ringing",
    "in-progress": "in_progress",
    "answered": "in_progress",
    "completed": "completed",
    "busy": "busy",
    "no-answer": "no_answer",
    "failed": "failed",
    "canceled": "canceled",
}


def signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """``X-Twilio-Signature`` of a POST to ``url`` with form ``params``."""
    data = url + "".join(k + v for k, v in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def dial_twiml(
    caller_id: str, numbers: list[str], *, action: str | None = None, record: bool = False
) -> str:
    """``<Response><Dial callerId=…><Number>…</Number></Dial></Response>``: several numbers
    ring at once (a ring group); ``action`` receives DialCallStatus when the dial ends."""
    attrs = f' callerId={quoteattr(caller_id)} timeout="25"'
    if action:
        attrs += f' action={quoteattr(action)} method="POST"'
    if record:
        attrs += ' record="record-from-answer"'
    inner = "".join(f"<Number>{xml_escape(n)}</Number>" for n in numbers)
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Dial{attrs}>{inner}</Dial></Response>'


def reject_twiml(message: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f'<Say language="pt-BR">{xml_escape(message)}</Say><Hangup/></Response>'
    )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _price(value: str | None) -> Decimal | None:
    try:
        return Decimal(value) if value not in (None, "") else None
    except InvalidOperation:
        return None


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


class TwilioProvider:
    kind: ProviderKind = "twilio"

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        account_sid: str,
        auth_token: str,
        base_url: str = DEFAULT_BASE_URL,
    ) -> None:
        self.client = client
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.base_url = base_url.rstrip("/")

    def _url(self, tail: str) -> str:
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}{tail}"

    async def _post(self, tail: str, form: list[tuple[str, str]]) -> dict[str, object]:
        try:
            response = await self.client.post(
                self._url(tail),
                content=urlencode(form).encode(),
                auth=(self.account_sid, self.auth_token),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        except httpx.HTTPError as exc:
            raise network_error(exc, SERVICE) from exc
        if response.status_code >= 400:
            raise await self._error(response)
        try:
            data = response.json()
        except ValueError as exc:
            raise ProviderError(
                "bad_response", "Twilio answered something that is not JSON."
            ) from exc
        return data if isinstance(data, dict) else {}

    async def _error(self, response: httpx.Response) -> ProviderError:
        raw = response.content
        message = f"Twilio refused the request (HTTP {response.status_code})."
        code = str(response.status_code)
        try:
            body = json.loads(raw)
            if isinstance(body, dict) and body.get("message"):
                message = f"Twilio: {body['message']}"
                code = str(body.get("code") or code)
        except ValueError:
            pass
        return ProviderError(
            code,
            message,
            transient=response.status_code >= 500 or response.status_code == 429,
            http_status=response.status_code,
            details=raw[:500].decode("utf-8", "replace"),
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
        form = [
            ("To", agent_phone),
            ("From", from_business),
            ("Twiml", dial_twiml(from_business, [lead_phone])),
            ("StatusCallback", callback_url),
            ("StatusCallbackMethod", "POST"),
        ]
        form += [
            ("StatusCallbackEvent", e) for e in ("initiated", "ringing", "answered", "completed")
        ]
        if record:
            form += [("Record", "true"), ("RecordingStatusCallback", callback_url)]
        data = await self._post("/Calls.json", form)
        sid = data.get("sid")
        if not isinstance(sid, str) or not sid:
            raise ProviderError("bad_response", "Twilio did not give the call's id.")
        return ProviderCall(id=sid, status=STATUS.get(str(data.get("status")), "queued"))

    async def hangup(self, provider_call_id: str) -> None:
        await self._post(f"/Calls/{provider_call_id}.json", [("Status", "completed")])

    async def check_connection(self) -> ConnectionCheck:
        try:
            response = await self.client.get(
                self._url(".json"), auth=(self.account_sid, self.auth_token)
            )
        except httpx.HTTPError as exc:
            error = network_error(exc, SERVICE)
            return ConnectionCheck(False, error.message)
        if response.status_code >= 400:
            return ConnectionCheck(False, (await self._error(response)).message)
        return ConnectionCheck(True, "Twilio accepted the credentials.")

    def verify_callback(self, url: str, headers: Mapping[str, str], body: bytes) -> bool:
        given = headers.get("x-twilio-signature", "")
        if not given or not self.auth_token:
            return False
        try:
            params = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return False
        expected = signature(self.auth_token, url, params)
        return hmac.compare_digest(expected.encode(), given.encode())

    def parse_callback(self, url: str, body: bytes) -> list[CallUpdate]:
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        ref = parse_qs(urlsplit(url).query).get("call", [""])[0] or None
        sid = form.get("CallSid") or None
        when = _when(form.get("Timestamp"))
        if form.get("RecordingSid") and not form.get("CallStatus"):
            done = form.get("RecordingStatus", "completed") == "completed"
            return [
                CallUpdate(
                    event_key=f"rec:{form['RecordingSid']}:{form.get('RecordingStatus', '')}",
                    provider_call_id=sid,
                    call_ref=ref,
                    occurred_at=when,
                    recording_url=form.get("RecordingUrl") if done else None,
                    recording_id=form["RecordingSid"],
                    recording_duration_seconds=_int(form.get("RecordingDuration")),
                )
            ]
        if form.get("DialCallStatus"):
            raw = form["DialCallStatus"]
            return [
                CallUpdate(
                    event_key=f"{sid}:dial:{raw}",
                    provider_call_id=sid,
                    call_ref=ref,
                    status=STATUS.get(raw, "failed"),
                    occurred_at=when,
                    duration_seconds=_int(form.get("DialCallDuration")),
                    recording_url=form.get("RecordingUrl") or None,
                    recording_id=form.get("RecordingSid") or None,
                    reason=None if raw in STATUS else raw,
                )
            ]
        raw = form.get("CallStatus", "")
        seq = _int(form.get("SequenceNumber"))
        key = f"{sid}:{seq}" if seq is not None else f"{sid}:{raw}"
        return [
            CallUpdate(
                event_key=key,
                provider_call_id=sid,
                call_ref=ref,
                status=STATUS.get(raw),
                sequence=seq,
                occurred_at=when,
                duration_seconds=_int(form.get("CallDuration")),
                price=_price(form.get("CallPrice") or form.get("Price")),
                price_unit=form.get("PriceUnit") or None,
                recording_url=form.get("RecordingUrl") or None,
                recording_id=form.get("RecordingSid") or None,
                recording_duration_seconds=_int(form.get("RecordingDuration")),
                reason=form.get("ErrorMessage") or None,
                from_number=form.get("From") or None,
                to_number=form.get("To") or None,
            )
        ]

    async def fetch_recording(self, url: str, *, max_bytes: int) -> bytes:
        if not url.rsplit("/", 1)[-1].count("."):
            url += ".wav"
        return await fetch_limited(
            self.client,
            url,
            service=SERVICE,
            max_bytes=max_bytes,
            auth=(self.account_sid, self.auth_token),
        )
