"""Call transcription through the organization's AI provider: a stored recording is sent to
an OpenAI-compatible ``/audio/transcriptions`` (the loopback fake checks the multipart form)
or answered by the sandbox's labelled demo text, and the text shows on the call (API) and
under the recording on the lead's timeline. Turned off (the default) → no job; a 429 is
retried later; a recording over 25 MB is refused with its reason on the call."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.calls.conftest import AGENT_PHONE, CALL_JOBS, LEAD_PHONE
from tests.factories import (
    catch_up_with_database,
    create_lead,
    csrf_token,
    session_headers,
    web_signup,
)
from tests.fakes.openai_server import API_KEY, FakeOpenAI, error, multipart

from lovedcrm.assistant.llm.sandbox import SANDBOX_TRANSCRIPTION_EN, SANDBOX_TRANSCRIPTION_PT
from lovedcrm.config import Settings
from lovedcrm.core.clock import ManualClock
from lovedcrm.core.storage import get_storage
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle

pytestmark = pytest.mark.usefixtures("manual_clock")

JOBS = [*CALL_JOBS, "calls.transcribe"]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


async def _run(database: Database, settings: Settings, types: list[str] = JOBS) -> int:
    catch_up_with_database(database)
    return await run_until_idle(database, settings, types=types, timeout=30)


async def _setup(client: httpx.AsyncClient, lang: str = "pt-BR") -> dict[str, str]:
    """A signed-in admin (cookie session) with a phone, the sandbox telephony recording
    calls, and the organization in ``lang``; the API headers."""
    client.headers["Accept-Language"] = lang
    await web_signup(client)
    h = await session_headers(client)
    r = await client.patch("/api/v1/auth/me/profile", headers=h, json={"phone": AGENT_PHONE})
    assert r.status_code == 200, r.text
    r = await client.post(
        "/api/v1/calls/configs", headers=h, json={"provider_type": "sandbox", "record": True}
    )
    assert r.status_code == 201, r.text
    if lang != "pt-BR":
        r = await client.patch(
            "/api/v1/organizations/current", headers=h, json={"settings": {"locale": lang}}
        )
        assert r.status_code == 200, r.text
    return h


async def _ai(client: httpx.AsyncClient, h: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await client.patch("/api/v1/ai/settings", headers=h, json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _openai(client: httpx.AsyncClient, h: dict[str, str], fake: FakeOpenAI) -> dict[str, Any]:
    return await _ai(
        client,
        h,
        provider="openai_compatible",
        base_url=fake.base_url,
        model="gpt-test",
        api_key=API_KEY,
        max_retries=0,
        transcription_enabled=True,
    )


async def _recorded_call(
    client: httpx.AsyncClient,
    h: dict[str, str],
    clock: ManualClock,
    database: Database,
    settings: Settings,
    types: list[str] = JOBS,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A sandbox call played out to the end, its recording stored: (lead, call)."""
    lead = await create_lead(client, full_name="João Cliente", phone=LEAD_PHONE)
    r = await client.post("/api/v1/calls", headers=h, json={"lead_id": lead["id"]})
    assert r.status_code in (200, 201), r.text
    call = r.json()
    for _ in range(4):
        clock.advance(seconds=3)
        await _run(database, settings, types)
    got = (await client.get(f"/api/v1/calls/{call['id']}", headers=h)).json()
    assert got["status"] == "completed" and got["recording_url"], got
    return lead, got


def _jobs(owner_query: Any, call: dict[str, Any]) -> list[Any]:
    return list(
        owner_query(
            "SELECT status, attempts, max_attempts, priority FROM background_jobs "
            "WHERE job_type = 'calls.transcribe' AND job_data->>'call_id' = :call_id",
            call_id=call["id"],
        )
    )


async def test_the_ai_settings_carry_transcription_off_by_default(
    client: httpx.AsyncClient, fake: FakeOpenAI
) -> None:
    h = await _setup(client)
    got = (await client.get("/api/v1/ai/settings", headers=h)).json()
    assert got["transcription_enabled"] is False and got["transcription_model"] == "whisper-1"
    changed = await _ai(client, h, transcription_enabled=True, transcription_model="whisper-2")
    assert changed["transcription_enabled"] is True
    assert changed["transcription_model"] == "whisper-2"
    r = await client.patch(
        "/api/v1/ai/settings", headers=h, json={"transcription_model": "no spaces allowed"}
    )
    assert r.status_code == 422 and "transcription_model" in r.text
    page = await client.get("/settings/ai")
    assert "Transcrever as gravações das ligações" in page.text
    assert 'name="transcription_enabled" value="1" checked' in page.text
    csrf = await csrf_token(client, "/settings/ai")
    r = await client.post(
        "/settings/ai",
        data={"csrf_token": csrf, "provider": "sandbox", "transcription_model": "whisper-1"},
    )
    assert r.status_code == 303, r.text
    got = (await client.get("/api/v1/ai/settings", headers=h)).json()
    assert got["transcription_enabled"] is False  # the unticked box turns it off


async def test_openai_compatible_transcription_reaches_the_call_and_the_timeline(
    client: httpx.AsyncClient,
    fake: FakeOpenAI,
    manual_clock: ManualClock,
    database: Database,
    settings: Settings,
    owner_query: Any,
) -> None:
    h = await _setup(client)
    await _openai(client, h, fake)
    lead, call = await _recorded_call(client, h, manual_clock, database, settings)

    assert call["transcription"] == fake.transcript
    (sent,) = fake.transcriptions()
    assert sent.path == "/v1/audio/transcriptions"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    form = multipart(sent)
    assert form is not None
    assert form["model"].text == "whisper-1"
    assert form["language"].text == "pt"  # a pt-BR organization
    assert form["response_format"].text == "json"
    assert form["file"].filename == "call-recording.wav"
    assert form["file"].data[:4] == b"RIFF"
    assert [tuple(j) for j in _jobs(owner_query, call)] == [("completed", 1, 3, 0)]

    timeline = await client.get(f"/leads/{lead['id']}/timeline")
    assert "data-call-transcription" in timeline.text
    assert "<summary>Transcrição</summary>" in timeline.text
    assert fake.transcript in timeline.text


async def test_a_429_is_retried_later(
    client: httpx.AsyncClient,
    fake: FakeOpenAI,
    manual_clock: ManualClock,
    database: Database,
    settings: Settings,
    owner_query: Any,
) -> None:
    h = await _setup(client)
    await _openai(client, h, fake)
    fake.transcription_queue.append(error(429, "Rate limit reached", **{"Retry-After": "20"}))
    _, call = await _recorded_call(client, h, manual_clock, database, settings)
    assert call["transcription"] is None
    assert [tuple(j)[:2] for j in _jobs(owner_query, call)] == [("retrying", 1)]

    manual_clock.advance(seconds=25)
    await _run(database, settings)
    got = (await client.get(f"/api/v1/calls/{call['id']}", headers=h)).json()
    assert got["transcription"] == fake.transcript
    assert len(fake.transcriptions()) == 2
    assert [tuple(j)[:2] for j in _jobs(owner_query, call)] == [("completed", 2)]


async def test_turned_off_no_job_and_no_request(
    client: httpx.AsyncClient,
    fake: FakeOpenAI,
    manual_clock: ManualClock,
    database: Database,
    settings: Settings,
    owner_query: Any,
) -> None:
    h = await _setup(client)
    configured = await _openai(client, h, fake)
    assert configured["transcription_enabled"] is True
    await _ai(client, h, transcription_enabled=False)
    _, call = await _recorded_call(client, h, manual_clock, database, settings)
    assert call["transcription"] is None
    assert _jobs(owner_query, call) == []
    assert fake.transcriptions() == []


@pytest.mark.parametrize("lang", ["pt-BR", "en"])
async def test_the_sandbox_writes_a_labelled_demo_text(
    client: httpx.AsyncClient,
    manual_clock: ManualClock,
    database: Database,
    settings: Settings,
    lang: str,
) -> None:
    h = await _setup(client, lang)
    view = await _ai(client, h, transcription_enabled=True)
    assert view["provider"] == "sandbox"
    lead, call = await _recorded_call(client, h, manual_clock, database, settings)
    expected = SANDBOX_TRANSCRIPTION_PT if lang == "pt-BR" else SANDBOX_TRANSCRIPTION_EN
    assert call["transcription"] == expected
    assert expected.startswith(
        "[Transcrição de demonstração]" if lang == "pt-BR" else "[Demo transcription]"
    )
    timeline = await client.get(f"/leads/{lead['id']}/timeline")
    summary = "Transcrição" if lang == "pt-BR" else "Transcription"
    assert f"<summary>{summary}</summary>" in timeline.text


async def test_a_recording_over_25_mb_is_refused_with_a_reason(
    client: httpx.AsyncClient,
    fake: FakeOpenAI,
    manual_clock: ManualClock,
    database: Database,
    settings: Settings,
    owner_query: Any,
) -> None:
    h = await _setup(client)
    await _openai(client, h, fake)
    _, call = await _recorded_call(client, h, manual_clock, database, settings, CALL_JOBS)
    ((org_id, meta),) = owner_query(
        "SELECT organization_id, metadata FROM call_logs WHERE id = :id",
        id=uuid.UUID(call["id"]),
    )
    key = meta["recording_key"]
    assert key == f"calls/{org_id}/{call['id']}.wav"
    big = b"RIFF" + bytes(25 * 1024 * 1024)
    get_storage(settings).save(key, big, "audio/wav")

    await _run(database, settings)
    assert fake.transcriptions() == []
    assert [tuple(j)[:2] for j in _jobs(owner_query, call)] == [("failed", 1)]
    ((meta,),) = owner_query(
        "SELECT metadata FROM call_logs WHERE id = :id", id=uuid.UUID(call["id"])
    )
    assert "25 MB" in meta["transcription_error"]
    got = (await client.get(f"/api/v1/calls/{call['id']}", headers=h)).json()
    assert got["transcription"] is None
