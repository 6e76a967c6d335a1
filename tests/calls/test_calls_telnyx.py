"""Calls through Telnyx Call Control against a loopback fake: the agent's leg answered is
transferred to the lead, webhooks signed with a real Ed25519 key (replayed, stale, forged),
the hang-up's duration and the expiring recording downloaded at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.calls.conftest import AGENT_PHONE, LEAD_PHONE
from tests.fakes.telnyx import API_KEY, CONNECTION_ID, FakeTelnyx, Signer, event, state

from lovedcrm.core import clock

pytestmark = pytest.mark.usefixtures("manual_clock")


@pytest.fixture
def telnyx() -> Iterator[FakeTelnyx]:
    with FakeTelnyx() as fake:
        yield fake


@pytest.fixture
def signer() -> Signer:
    return Signer()


async def _config(
    client: httpx.AsyncClient, org: dict[str, Any], telnyx: FakeTelnyx, signer: Signer
) -> dict[str, Any]:
    r = await client.post(
        "/api/v1/calls/configs",
        headers=org["headers"],
        json={
            "provider_type": "telnyx",
            "api_key": API_KEY,
            "connection_id": CONNECTION_ID,
            "public_key": signer.public_b64,
            "api_base_url": telnyx.url,
            "business_numbers": ["+551130001000"],
            "cost_per_minute": "0.0200",
            "currency": "USD",
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _now() -> int:
    return int(clock.now().timestamp())


async def test_dial_transfer_hangup_and_recording(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    lead: dict[str, Any],
    telnyx: FakeTelnyx,
    signer: Signer,
    calls_jobs: Any,
) -> None:
    h = org["headers"]
    cfg = await _config(client, org, telnyx, signer)
    assert cfg["api_key_masked"] and API_KEY not in str(cfg)
    r = await client.post(f"/api/v1/calls/configs/{cfg['id']}/test", headers=h)
    assert r.json()["ok"] is True
    call = (await client.post("/api/v1/calls", headers=h, json={"lead_id": lead["id"]})).json()
    (sent,) = telnyx.requests_to("/v2/calls", "POST")
    assert sent.json["to"] == AGENT_PHONE and sent.json["connection_id"] == CONNECTION_ID
    assert sent.json["webhook_url"] == f"{cfg['webhook_url']}?call={call['id']}"
    ccid = call["provider_call_id"]
    agent = state({"call": call["id"], "leg": "agent", "to": LEAD_PHONE})
    path = f"/webhooks/calls/{cfg['id']}"

    async def post(body: bytes) -> None:
        resp = await client.post(path, content=body, headers=signer.headers(body, _now()))
        assert resp.status_code == 200, resp.text
        await calls_jobs()

    await post(event("call.initiated", ccid, client_state=agent, direction="outgoing"))
    answered = event("call.answered", ccid, client_state=agent)
    await post(answered)
    await post(answered)  # delivered twice: one transfer only
    assert (await client.get(f"/api/v1/calls/{call['id']}", headers=h)).json()[
        "status"
    ] == "in_progress"
    await calls_jobs()
    (transfer,) = telnyx.requests_to(f"/v2/calls/{ccid}/actions/transfer", "POST")
    assert transfer.json["to"] == LEAD_PHONE
    await post(
        event(
            "call.hangup",
            ccid,
            client_state=agent,
            hangup_cause="normal_clearing",
            start_time="2026-12-07T10:00:00Z",
            end_time="2026-12-07T10:02:05Z",
        )
    )
    await post(
        event(
            "call.recording.saved",
            ccid,
            client_state=agent,
            recording_started_at="2026-12-07T10:00:10Z",
            recording_ended_at="2026-12-07T10:02:05Z",
            public_recording_urls={"wav": telnyx.recording_url()},
        )
    )
    got = (await client.get(f"/api/v1/calls/{call['id']}", headers=h)).json()
    assert got["status"] == "completed" and got["duration_seconds"] == 125
    assert got["cost_amount"] == "0.06000" and got["cost_currency"] == "USD"  # 3 minutes
    await calls_jobs()
    assert telnyx.requests_to("/recordings/rec1.wav", "GET")
    r = await client.get(f"/api/v1/calls/{call['id']}/recording", headers=h)
    assert r.status_code == 200 and r.content == telnyx.recording


async def test_forged_stale_or_unsigned_webhooks_are_refused(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    lead: dict[str, Any],
    telnyx: FakeTelnyx,
    signer: Signer,
    owner_query: Any,
) -> None:
    cfg = await _config(client, org, telnyx, signer)
    path = f"/webhooks/calls/{cfg['id']}"
    body = event("call.initiated", "v3:forged", event_id="evt-forged", direction="incoming")
    assert (await client.post(path, content=body)).status_code == 401
    other = Signer()
    assert (
        await client.post(path, content=body, headers=other.headers(body, _now()))
    ).status_code == 403
    stale = signer.headers(body, _now() - 301)
    assert (await client.post(path, content=body, headers=stale)).status_code == 403
    tampered = signer.headers(body, _now())
    assert (
        await client.post(path, content=body.replace(b"incoming", b"outgoing"), headers=tampered)
    ).status_code == 403
    assert owner_query("SELECT count(*) FROM call_events WHERE event_key = 'evt-forged'")[0][0] == 0
    assert (
        owner_query("SELECT count(*) FROM call_logs WHERE provider_call_id = 'v3:forged'")[0][0]
        == 0
    )


async def test_incoming_call_is_answered_and_transferred_to_the_owner(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    lead: dict[str, Any],
    telnyx: FakeTelnyx,
    signer: Signer,
    calls_jobs: Any,
) -> None:
    h = org["headers"]
    cfg = await _config(client, org, telnyx, signer)
    r = await client.patch(
        f"/api/v1/leads/{lead['id']}", headers=h, json={"assigned_to": org["user_id"]}
    )
    assert r.status_code == 200, r.text
    body = event(
        "call.initiated",
        "v3:incoming1",
        direction="incoming",
        **{"from": LEAD_PHONE, "to": "+551130001000"},
    )
    path = f"/webhooks/calls/{cfg['id']}"
    r = await client.post(path, content=body, headers=signer.headers(body, _now()))
    assert r.status_code == 200, r.text
    await calls_jobs()
    calls = (await client.get(f"/api/v1/calls?lead_id={lead['id']}", headers=h)).json()["items"]
    assert len(calls) == 1 and calls[0]["direction"] == "inbound"
    await calls_jobs()
    assert telnyx.requests_to("/v2/calls/v3:incoming1/actions/answer", "POST")
    (transfer,) = telnyx.requests_to("/v2/calls/v3:incoming1/actions/transfer", "POST")
    assert transfer.json["to"] == AGENT_PHONE  # the lead's owner
