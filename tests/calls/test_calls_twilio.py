"""Calls through Twilio against a loopback fake: click-to-call, signed status callbacks
(late, twice, out of order, before their call), a recording, the cost fallback, inbound
calls and a missed one, and the bad input the issue names."""

from __future__ import annotations

import email
import email.message
import email.policy
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from tests.calls.conftest import AGENT_PHONE, LEAD_PHONE
from tests.factories import create_lead, join_and_login
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, signed, status_form

from lovedcrm.calls.providers.twilio import TwilioProvider, signature
from lovedcrm.config import Settings
from lovedcrm.core.clock import ManualClock
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle

pytestmark = pytest.mark.usefixtures("manual_clock")


def test_signature_matches_twilios_reference_vector() -> None:
    params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", "reference vector"
    provider = TwilioProvider(client=httpx.AsyncClient(), account_sid="AC1", auth_token="12345")
    body = "&".join(f"{k}={v}".replace("+", "%2B") for k, v in params).encode()
    good = {"x-twilio-signature": "0/KCTR6DLpKmkAf8muzZqo1nDgQ="}
    assert provider.verify_callback(url, good, body)
    assert not provider.verify_callback(url + "&x=1", good, body)
    assert not provider.verify_callback(url, {"x-twilio-signature": "AAAA"}, body)


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


async def _config(
    client: httpx.AsyncClient, org: dict[str, Any], twilio: FakeTwilio, **extra: Any
) -> dict[str, Any]:
    body = {
        "provider_type": "twilio",
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "api_base_url": twilio.url,
        "business_numbers": ["(11) 3000-1000"],
        "cost_per_minute": "0.0500",
        "currency": "brl",
        **extra,
    }
    r = await client.post("/api/v1/calls/configs", headers=org["headers"], json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_config_secrets_are_write_only_and_masked(
    client: httpx.AsyncClient, org: dict[str, Any], twilio: FakeTwilio
) -> None:
    cfg = await _config(client, org, twilio)
    assert cfg["is_active"] and cfg["business_numbers"] == ["+551130001000"]
    assert cfg["currency"] == "BRL" and cfg["auth_token_masked"].endswith("6789")
    assert AUTH_TOKEN not in str(cfg)
    assert cfg["webhook_url"].endswith(f"/webhooks/calls/{cfg['id']}")
    listed = (await client.get("/api/v1/calls/configs", headers=org["headers"])).json()
    assert AUTH_TOKEN not in str(listed)
    r = await client.post(f"/api/v1/calls/configs/{cfg['id']}/test", headers=org["headers"])
    assert r.json() == {"ok": True, "detail": "Twilio accepted the credentials."}
    # Bad input: 422 naming the field.
    r = await client.post(
        "/api/v1/calls/configs",
        headers=org["headers"],
        json={"provider_type": "twilio", "account_sid": ACCOUNT_SID, "business_numbers": ["abc"]},
    )
    assert r.status_code == 422, r.text
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"auth_token", "business_numbers.0"} <= fields


async def test_click_to_call_follows_callbacks_to_the_end(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    lead: dict[str, Any],
    twilio: FakeTwilio,
    calls_jobs: Any,
    owner_query: Any,
    settings: Settings,
) -> None:
    h = org["headers"]
    cfg = await _config(client, org, twilio)
    r = await client.post("/api/v1/calls", headers=h, json={"lead_id": lead["id"]})
    assert r.status_code == 201, r.text
    call = r.json()
    assert call["status"] == "queued" and call["direction"] == "outbound"
    assert call["to_number"] == LEAD_PHONE and call["from_number"] == "+551130001000"

    # Twilio rang the agent's phone first, with TwiML bridging to the lead.
    (sent,) = twilio.requests_to(twilio.calls_path, "POST")
    form = parse_qs(sent.body.decode())
    assert form["To"] == [AGENT_PHONE] and form["From"] == ["+551130001000"]
    assert f"<Number>{LEAD_PHONE}</Number>" in form["Twiml"][0]
    assert form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    callback = form["StatusCallback"][0]
    assert callback == f"{cfg['webhook_url']}?call={call['id']}"
    path = urlsplit(callback).path + "?" + urlsplit(callback).query
    sid = call["provider_call_id"]

    async def post(form: list[tuple[str, str]]) -> httpx.Response:
        resp = await client.post(path, **signed(callback, form))
        assert resp.status_code == 200, resp.text
        await calls_jobs()  # the stored callbacks are applied by a job
        return resp

    await post(status_form(sid, "ringing", 1))
    assert (await client.get(f"/api/v1/calls/{call['id']}", headers=h)).json()[
        "status"
    ] == "ringing"
    await post(status_form(sid, "in-progress", 2))
    recording_url = twilio.recording_url("RE123")
    done = status_form(
        sid,
        "completed",
        3,
        CallDuration="61",
        RecordingUrl=recording_url,
        RecordingSid="RE123",
        RecordingDuration="58",
    )
    await post(done)
    # Late and out of order: "initiated" (sequence 0) and "ringing" again after the end.
    await post(status_form(sid, "initiated", 0))
    await post(status_form(sid, "ringing", 1))
    # The same callback twice.
    await post(done)

    got = (await client.get(f"/api/v1/calls/{call['id']}", headers=h)).json()
    assert got["status"] == "completed" and got["duration_seconds"] == 61
    # No price reported: 0.05/min x 2 started minutes.
    assert got["cost_amount"] == "0.10000" and got["cost_currency"] == "BRL"
    assert got["cost_cents"] == 10
    events = owner_query("SELECT count(*) FROM call_events WHERE provider_call_id = :sid", sid=sid)[
        0
    ][0]
    assert events == 4  # sequences 1, 2, 3 and 0: the replays of 1 and 3 were not stored again
    # The recording is downloaded from Twilio (with its credentials) and served here.
    await calls_jobs()  # the activity and the recording, off the callbacks' path
    activities = (await client.get(f"/api/v1/leads/{lead['id']}/activities", headers=h)).json()
    calls = [a for a in activities["items"] if a["type"] == "call"]
    assert len(calls) == 1
    meta = calls[0]["metadata"]
    assert meta["status"] == "completed" and meta["cost_amount"] == "0.10000"
    assert meta["duration_seconds"] == 61

    assert twilio.requests_to(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE123.wav", "GET")
    r = await client.get(f"/api/v1/calls/{call['id']}/recording", headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert r.content == twilio.recording
    got = (await client.get(f"/api/v1/calls/{call['id']}", headers=h)).json()
    assert got["recording_url"] == f"/api/v1/calls/{call['id']}/recording"

    # A sales member who cannot see the lead cannot hear it either.
    sales = await join_and_login(client, h, "sales")
    assert (
        await client.get(f"/api/v1/calls/{call['id']}/recording", headers=sales)
    ).status_code == 404
    assert (await client.get(f"/api/v1/calls/{call['id']}", headers=sales)).status_code == 404

    # Notes and outcome afterwards.
    r = await client.patch(
        f"/api/v1/calls/{call['id']}",
        headers=h,
        json={"notes": "Pediu proposta", "outcome": "interested"},
    )
    assert r.status_code == 200 and r.json()["outcome"] == "interested"
    r = await client.patch(f"/api/v1/calls/{call['id']}", headers=h, json={"outcome": "maybe"})
    assert r.status_code == 422
    listed = (
        await client.get(f"/api/v1/calls?lead_id={lead['id']}&status=completed", headers=h)
    ).json()
    assert [c["id"] for c in listed["items"]] == [call["id"]]


async def test_unsigned_or_wrongly_signed_callbacks_store_nothing(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    twilio: FakeTwilio,
    owner_query: Any,
) -> None:
    cfg = await _config(client, org, twilio)
    path = f"/webhooks/calls/{cfg['id']}"
    form = status_form("CAunsigned", "ringing", 0)
    args = signed(cfg["webhook_url"], form)
    del args["headers"]["X-Twilio-Signature"]
    assert (await client.post(path, **args)).status_code == 401
    args = signed(cfg["webhook_url"], form, token="not-the-token")
    assert (await client.post(path, **args)).status_code == 403
    # Signed for another URL (the Host header is not what is checked).
    args = signed("http://evil.example/webhooks/calls/x", form)
    assert (await client.post(path, **args)).status_code == 403
    assert (
        owner_query("SELECT count(*) FROM call_events WHERE provider_call_id = 'CAunsigned'")[0][0]
        == 0
    )


async def test_callback_before_its_call_is_kept_then_applied(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    lead: dict[str, Any],
    twilio: FakeTwilio,
    calls_jobs: Any,
    manual_clock: ManualClock,
) -> None:
    h = org["headers"]
    cfg = await _config(client, org, twilio)
    twilio.next_sid = "CAearly0000000000000000000000001"
    # Twilio's "ringing" overtakes the dial's own commit (no call id on it).
    r = await client.post(
        f"/webhooks/calls/{cfg['id']}",
        **signed(cfg["webhook_url"], status_form(twilio.next_sid, "ringing", 1)),
    )
    assert r.status_code == 200
    call = (await client.post("/api/v1/calls", headers=h, json={"lead_id": lead["id"]})).json()
    assert call["status"] == "queued"
    manual_clock.advance(seconds=5)
    await calls_jobs()
    got = (await client.get(f"/api/v1/calls/{call['id']}", headers=h)).json()
    assert got["status"] == "ringing"


async def test_bad_input_is_refused_before_dialling(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    lead: dict[str, Any],
    twilio: FakeTwilio,
    owner_query: Any,
) -> None:
    h = org["headers"]
    r = await client.post("/api/v1/calls", headers=h, json={"lead_id": lead["id"]})
    assert r.status_code == 409 and r.json()["code"] == "telephony_not_configured"
    await _config(client, org, twilio)
    r = await client.post(
        "/api/v1/calls", headers=h, json={"lead_id": lead["id"], "to_number": "12ab"}
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_phone"
    no_phone = await create_lead(client, h, full_name="Sem Telefone")
    r = await client.post("/api/v1/calls", headers=h, json={"lead_id": no_phone["id"]})
    assert r.status_code == 422 and r.json()["code"] == "invalid_phone"
    r = await client.post("/api/v1/calls", headers=h, json={"lead_id": str(org["user_id"])})
    assert r.status_code == 404
    assert not twilio.requests_to(twilio.calls_path, "POST")
    rows = owner_query("SELECT count(*) FROM call_logs WHERE user_id = :uid", uid=org["user_id"])
    assert rows[0][0] == 0


async def test_provider_outage_fails_the_call_visibly(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    lead: dict[str, Any],
    twilio: FakeTwilio,
) -> None:
    h = org["headers"]
    await _config(client, org, twilio)
    twilio.fail = (500, {"code": 20500, "message": "Internal Server Error"})
    r = await client.post("/api/v1/calls", headers=h, json={"lead_id": lead["id"]})
    assert r.status_code == 201, r.text
    call = r.json()
    assert call["status"] == "failed" and call["reason"] == "Twilio: Internal Server Error"
    assert call["provider_call_id"] is None
    twilio.fail = None
    twilio.down = True  # refuses everything (503)
    call = (await client.post("/api/v1/calls", headers=h, json={"lead_id": lead["id"]})).json()
    assert call["status"] == "failed" and "503" in call["reason"]
    activities = (await client.get(f"/api/v1/leads/{lead['id']}/activities", headers=h)).json()
    failed = [a for a in activities["items"] if a["type"] == "call"]
    assert len(failed) == 2 and all(a["metadata"]["status"] == "failed" for a in failed)


async def test_inbound_call_rings_the_ring_group_and_a_missed_one_makes_a_task(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    twilio: FakeTwilio,
    settings: Settings,
    database: Database,
    calls_jobs: Any,
) -> None:
    h = org["headers"]
    cfg = await _config(client, org, twilio, ring_group=[org["user_id"]])
    voice, lead_id, call = await _missed_inbound_call(
        client, h, cfg, "CAinbound000000000000000000000001", "+5521966665555"
    )
    assert voice.headers["content-type"].startswith("text/xml")
    assert f"<Number>{AGENT_PHONE}</Number>" in voice.text and "action=" in voice.text
    # The unknown caller is now a lead (source "phone"), and its call was ringing.
    lead = (await client.get(f"/api/v1/leads/{lead_id}", headers=h)).json()
    assert lead["source"] == "phone"
    assert call["direction"] == "inbound" and call["status"] == "ringing"
    await calls_jobs()
    got = (await client.get(f"/api/v1/calls/{call['id']}", headers=h)).json()
    assert got["status"] == "no_answer"
    assert got["cost_amount"] == "0.00000"  # only completed calls are charged
    await calls_jobs()
    activities = (await client.get(f"/api/v1/leads/{lead_id}/activities", headers=h)).json()[
        "items"
    ]
    kinds = sorted(a["type"] for a in activities)
    assert "task" in kinds and "call" in kinds
    task = next(a for a in activities if a["type"] == "task")
    assert task["metadata"]["done"] is False and task["metadata"]["due_at"]
    # The owner is told by e-mail (the missed call's default channel), once…
    prefs = (await client.get("/api/v1/notifications/preferences", headers=h)).json()
    assert prefs["preferences"]["missed_call"] == "email"
    await run_until_idle(database, settings, types=["notifications.email"], timeout=30)
    assert len(_lead_mails(settings, org["email"], lead_id)) == 1
    # …and in the notification centre, pointing at the lead.
    notes = (await client.get("/api/v1/notifications", headers=h)).json()["items"]
    missed = [n for n in notes if n["notification_type"] == "missed_call"]
    assert len(missed) == 1 and missed[0]["lead_id"] == lead_id, notes


async def _missed_inbound_call(
    client: httpx.AsyncClient, h: dict[str, str], cfg: dict[str, Any], sid: str, caller: str
) -> tuple[httpx.Response, str, dict[str, Any]]:
    """An inbound call from ``caller`` that rings and is not answered (Twilio's voice webhook,
    then its <Dial> action with ``no-answer``): the voice answer, the caller's lead id and
    the call as listed while it rang."""
    form = [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", sid),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", caller),
        ("To", "+551130001000"),
    ]
    voice = await client.post(
        f"/webhooks/calls/{cfg['id']}/voice", **signed(cfg["voice_url"], form)
    )
    assert voice.status_code == 200, voice.text
    found = (await client.get(f"/api/v1/leads?q={caller[3:]}", headers=h)).json()["items"]
    assert len(found) == 1, found
    lead_id = found[0]["id"]
    calls = (await client.get(f"/api/v1/calls?lead_id={lead_id}", headers=h)).json()["items"]
    assert len(calls) == 1, calls
    action = f"{cfg['webhook_url']}?call={calls[0]['id']}"
    result = [*form, ("DialCallStatus", "no-answer"), ("DialCallDuration", "0")]
    r = await client.post(
        f"/webhooks/calls/{cfg['id']}?call={calls[0]['id']}", **signed(action, result)
    )
    assert r.status_code == 200, r.text
    return voice, lead_id, calls[0]


def _lead_mails(settings: Settings, to: str, lead_id: str) -> list[str]:
    """The bodies of the e-mails to ``to`` that link to the lead."""
    found = []
    for path in (settings.data_dir / "mail").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = message.get_body()
        text = body.get_content() if isinstance(body, email.message.EmailMessage) else ""
        if to in str(message["To"]) and f"/leads/{lead_id}" in text:
            found.append(text)
    return found


async def test_a_missed_call_is_not_mailed_to_a_member_who_chose_the_app_only(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    twilio: FakeTwilio,
    settings: Settings,
    database: Database,
    calls_jobs: Any,
) -> None:
    h = org["headers"]
    r = await client.put(
        "/api/v1/notifications/preferences",
        headers=h,
        json={"preferences": {"missed_call": "in_app"}},
    )
    assert r.status_code == 200, r.text
    cfg = await _config(client, org, twilio, ring_group=[org["user_id"]])
    _, lead_id, _ = await _missed_inbound_call(client, h, cfg, "CA" + "9" * 32, "+5521966664444")
    await calls_jobs()
    await calls_jobs()
    await run_until_idle(database, settings, types=["notifications.email"], timeout=30)
    notes = (await client.get("/api/v1/notifications", headers=h)).json()["items"]
    assert [n["lead_id"] for n in notes if n["notification_type"] == "missed_call"] == [lead_id]
    assert _lead_mails(settings, org["email"], lead_id) == []
