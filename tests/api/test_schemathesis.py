"""Schemathesis, every check, over every operation of the API, against the app served over
real HTTP (``live_api``).

The command line (``schemathesis run``) runs all its phases -- the schema's examples,
coverage (boundary values, missing and malformed parameters and bodies, wrong methods),
fuzzing and stateful sequences following the schema's links -- with every check: no 5xx,
status codes, content types, headers and bodies as documented, valid data accepted, invalid
data refused, missing credentials refused, unsupported methods answered 405 with ``Allow``,
deleted resources gone. It must report nothing.

Real resources are made first (a lead, a note, a stage, a template, an API key, WhatsApp
providers pointed at loopback fakes, a message, an import, a webhook to a loopback receiver…)
and offered to the generator as values of the path parameters, so operations on ``/{id}``
get past the 404 too. Runs: every operation but DELETE and the session-ending ones with one
signed-in admin; then DELETE; then the calls that end or replace the session (log out,
refresh, change password, switch organization), each with a throwaway session of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from lovedcrm.config import Settings
from tests.factories import PASSWORD, unique_email
from tests.fakes import FakeServer, RecordedRequest, Reply
from tests.fakes.graph_api import ACCESS_TOKEN, PHONE_NUMBER_ID, FakeGraphApi
from tests.fakes.waha import API_KEY, FakeWaha

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
SESSION_ENDERS = ("logout", "refresh", "password", "switch-organization")
SESSION_ENDING = rf"^/api/v1/auth/({'|'.join(SESSION_ENDERS)})$"
# A Server-Sent Events stream answers forever by design; it is read by
# tests/core/test_live.py. Schemathesis reads at most this many of its events.
MAX_STREAM_EVENTS = 1


# Requests the schema cannot tell from good ones -- a rule about other data, the time, the
# content of a file, or one field given another -- are refused although schema-valid. For
# these operations (and only them) schemathesis' "valid data is accepted" check also allows
# the status named, as its documentation advises (`st explain ST202`).
CURSOR = "a cursor the server did not issue (cursors are opaque)"
EMAIL = "an address email-validator refuses, such as one at a special-use domain (.test)"
REFUSED_BY_RULE: dict[str, tuple[str, str]] = {
    "GET /api/v1/leads": ("400", CURSOR),
    "GET /api/v1/leads/{lead_id}/activities": ("400", CURSOR),
    "GET /api/v1/board/stages/{stage_id}/cards": ("400", CURSOR),
    "GET /api/v1/jobs": ("400", CURSOR),
    "GET /api/v1/webhooks/{subscription_id}/deliveries": ("400", CURSOR),
    "POST /api/v1/auth/login": ("422", EMAIL),
    "POST /api/v1/auth/password-reset/request": ("422", EMAIL),
    "POST /api/v1/invitations": ("422", EMAIL),
    "POST /api/v1/auth/signup": ("422", "password: a letter, a digit or symbol, not the e-mail"),
    "POST /api/v1/invitations/accept": ("422", "without a session, a name and password"),
    "PATCH /api/v1/auth/me/profile": ("422", "a real phone number"),
    "POST /api/v1/api-keys": ("422", "expires_at must be in the future"),
    "PATCH /api/v1/organizations/current": ("422", "settings: the known keys, each its rule"),
    "POST /api/v1/leads": ("422", "a stage, owner, custom fields of the organization; a phone"),
    "PATCH /api/v1/leads/{lead_id}": ("422", "as POST /api/v1/leads; a lost lead needs a reason"),
    "POST /api/v1/leads/{lead_id}/move": ("422", "an active stage of the organization"),
    "POST /api/v1/leads/{lead_id}/activities": (
        "422",
        "the metadata a type needs (a task: due_at)",
    ),
    "PATCH /api/v1/activities/{activity_id}": ("422", "only a task can be marked done"),
    "POST /api/v1/leads/{lead_id}/messages": ("422", "a text or a template, not both"),
    "POST /api/v1/pipeline/stages/reorder": ("422", "every stage of the organization, once"),
    "DELETE /api/v1/pipeline/stages/{stage_id}": ("422", "move_to: another stage of the org"),
    "POST /api/v1/templates": ("422", "a Meta template name goes with its language code"),
    "PATCH /api/v1/templates/{template_id}": ("422", "a Meta template name and its language"),
    "POST /api/v1/webhooks": ("422", "a public http(s) URL (SSRF guard), an active API key"),
    "PATCH /api/v1/webhooks/{subscription_id}": ("422", "a public http(s) URL (SSRF guard)"),
    "POST /api/v1/whatsapp/configs": ("422", "what each provider type needs; allowed hosts"),
    "PATCH /api/v1/whatsapp/configs/{config_id}": ("422", "what the provider type needs"),
    "POST /api/v1/whatsapp/configs/{config_id}/session": ("422", "only WhatsApp Web has one"),
    "POST /api/v1/whatsapp/sandbox/inbound": ("422", "from_number: a real phone number"),
    "POST /api/v1/imports": ("422", "the file: a CSV or XLSX spreadsheet"),
    "PUT /api/v1/organizations/current/logo": ("422", "the file: a PNG, JPEG or WebP image"),
    "PATCH /api/v1/ai/settings": ("422", "a public http(s) base URL (SSRF guard), a model"),
    "PATCH /api/v1/ai/agent/settings": ("422", "a known time zone, the organization's numbers"),
    "POST /api/v1/leads/{lead_id}/suggested-replies/feedback": (
        "422",
        "an AI draft's feedback carries its text",
    ),
    **{
        f"GET /api/v1/reports/{name}": ("422", "the end on or after the start, within 3 years")
        for name in (
            "overview",
            "funnel",
            "stages",
            "owners",
            "sources",
            "templates",
            "whatsapp",
            "activity",
            "optimization",
        )
    },
    "POST /api/v1/calendar/events": (
        "422",
        "end after start, a known time zone, a lead here; a WhatsApp reminder: an approved "
        "template of the organization and a lead",
    ),
    "PUT /api/v1/calendar/google/calendar": ("422", "one of the member's writable calendars"),
    "GET /api/v1/calendar/events": ("422", "to after from"),
    "PATCH /api/v1/calendar/events/{event_id}": ("422", "end after start, known time zone"),
    "GET /api/v1/calls": ("400", CURSOR),
    "POST /api/v1/calls": ("422", "the lead's phone (or to_number): a real phone number"),
    "POST /api/v1/calls/configs": ("422", "what each provider needs; real business numbers"),
    "PATCH /api/v1/calls/configs/{config_id}": ("422", "what the provider needs; real numbers"),
    "PUT /api/v1/costs/whatsapp-rates": ("422", "a price given as text must be a decimal number"),
    "GET /api/v1/audit": ("400", CURSOR),
    "GET /api/v1/notifications": ("400", CURSOR),
    "POST /api/v1/marketing/integrations": (
        "422",
        "what each provider needs; a public Graph URL (SSRF guard); a template of the org",
    ),
    "PATCH /api/v1/marketing/integrations/{integration_id}": (
        "422",
        "a public Graph URL (SSRF guard); a template of the organization",
    ),
    "PUT /api/v1/marketing/integrations/{integration_id}/forms/{form_id}/mapping": (
        "422",
        "a lead field, custom:<key>, consent or ignore",
    ),
    "POST /api/v1/marketing/integrations/{integration_id}/backfill": ("422", "Facebook only"),
    "POST /api/v1/marketing/integrations/{integration_id}/spend-sync": (
        "422",
        "a Facebook integration with an ad account",
    ),
    "POST /api/v1/marketing/spend": ("422", "a CSV with date, campaign_id and amount"),
    "POST /api/v1/marketing/campaigns/{campaign_id}/test": ("422", EMAIL),
}
POSITIVE_DEFAULT = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]


class Receiver(FakeServer):
    """Where the webhook subscription points: answers 200 to anything."""

    def handle(self, request: RecordedRequest) -> Reply:
        return Reply.json({"ok": True})


@pytest.fixture(scope="module")
def live_settings(settings: Settings) -> Settings:
    """Long-lived tokens, no hourly budget (a run sends thousands of requests), outbound
    calls allowed to the loopback fakes and bounded in time."""
    return settings.model_copy(
        update={
            "access_token_minutes": 240,
            "user_rate_limit_per_hour": 0,
            "webhooks_allow_private_targets": True,
            "webhooks_allow_http": True,
            "outbound_allow": ("127.0.0.1",),
            "whatsapp_http_timeout_seconds": 5.0,
        }
    )


@pytest.fixture(scope="module", autouse=True)
def leave_no_jobs_waiting(owner_url: str) -> Iterator[None]:
    """The fuzzer's webhook subscriptions queue a delivery for everything it changes, and its
    imports, sends and rescores queue jobs: they are the run's own (its organizations are
    the ones made while it ran; it renames them) and go with it, so that no later test's
    worker finds hundreds of them waiting."""
    engine = sa.create_engine(owner_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        known = {r[0] for r in conn.execute(sa.text("SELECT id FROM organizations"))}
    yield
    try:
        with engine.begin() as conn:
            made = [
                r[0]
                for r in conn.execute(sa.text("SELECT id FROM organizations"))
                if r[0] not in known
            ]
            conn.execute(
                sa.text(
                    "DELETE FROM background_jobs"
                    " WHERE status IN ('pending', 'running', 'retrying')"
                    " AND organization_id = ANY(:made)"
                ),
                {"made": made},
            )
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Any]]:
    graph, waha, receiver = FakeGraphApi(), FakeWaha(), Receiver()
    waha.add_session("default", "WORKING")
    yield {"graph": graph, "waha": waha, "receiver": receiver}
    for fake in (graph, waha, receiver):
        fake.server.shutdown()


def _signup(c: httpx.Client) -> dict[str, str]:
    r = c.post(
        "/api/v1/auth/signup",
        json={
            "email": unique_email("fuzz"),
            "password": PASSWORD,
            "full_name": "Fuzz Admin",
            "organization_name": f"Fuzz {uuid.uuid4().hex[:6]}",
        },
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['tokens']['access_token']}"}


def _made(r: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert r.status_code in (statuses or (201,)), r.text
    data: dict[str, Any] = r.json()
    return data


@pytest.fixture(scope="module")
def known_ids(live_api: str, fakes: dict[str, Any]) -> dict[str, Any]:
    """One admin's bearer header and real resources of every kind, by path parameter name."""
    with httpx.Client(base_url=live_api, timeout=30) as c:
        h = _signup(c)
        c.headers.update(h)
        lead = _made(
            c.post("/api/v1/leads", json={"full_name": "Fuzz Lead", "phone": "+5511987650001"})
        )
        other = _made(c.post("/api/v1/leads", json={"full_name": "Fuzz Other"}))
        note = _made(c.post(f"/api/v1/leads/{lead['id']}/notes", json={"description": "fuzz"}))
        stage = _made(c.post("/api/v1/pipeline/stages", json={"name": "Fuzz"}))
        template = _made(
            c.post(
                "/api/v1/templates",
                json={"name": "Fuzz", "category": "fuzz", "content": "Oi {{lead_name}}"},
            )
        )
        key = _made(c.post("/api/v1/api-keys", json={"name": "Fuzz", "scopes": ["leads:read"]}))
        sandbox = _made(c.post("/api/v1/whatsapp/configs", json={"provider_type": "sandbox"}))
        activated = _made(c.post(f"/api/v1/whatsapp/configs/{sandbox['id']}/activate"), 200)
        cloud = _made(
            c.post(
                "/api/v1/whatsapp/configs",
                json={
                    "provider_type": "business_api",
                    "business_phone_id": PHONE_NUMBER_ID,
                    "access_token": ACCESS_TOKEN,
                    "app_secret": "fuzz-app-secret",
                    "graph_base_url": fakes["graph"].url,
                },
            )
        )
        waha = _made(
            c.post(
                "/api/v1/whatsapp/configs",
                json={
                    "provider_type": "web_unofficial",
                    "session_id": "default",
                    "bridge_url": fakes["waha"].url,
                    "bridge_api_key": API_KEY,
                },
            )
        )
        message = _made(
            c.post(f"/api/v1/leads/{lead['id']}/messages", json={"content": "Olá"}), 202
        )
        hook = _made(
            c.post(
                "/api/v1/webhooks",
                json={
                    "url": f"{fakes['receiver'].url}/hook",
                    "events": ["*"],
                    "api_key_id": key["id"],
                },
            )
        )
        _made(c.post(f"/api/v1/webhooks/{hook['id']}/test"), 202)
        deliveries = _made(c.get(f"/api/v1/webhooks/{hook['id']}/deliveries"), 200)
        invitation = _made(
            c.post("/api/v1/invitations", json={"email": unique_email("inv"), "role": "sales"})
        )
        members = c.get("/api/v1/members").json()
        upload = _made(
            c.post(
                "/api/v1/imports",
                files={"file": ("leads.csv", b"Nome,Telefone\nAna,+5511987650002\n", "text/csv")},
            )
        )
        started = _made(
            c.post(
                "/api/v1/imports/start",
                json={"upload_id": upload["upload_id"], "mapping": upload["suggested_mapping"]},
            ),
            202,
        )
        jobs = c.get("/api/v1/jobs").json()
    return {
        "headers": h,
        "lead_id": [lead["id"], other["id"]],
        "keep_id": [lead["id"]],
        "activity_id": [note["id"]],
        "stage_id": [stage["id"], lead["stage_id"]],
        "template_id": [template["id"]],
        "key_id": [key["id"]],
        "config_id": [sandbox["id"], cloud["id"], waha["id"]],
        "migration_id": [activated["id"]],
        "message_id": [message["id"]],
        "subscription_id": [hook["id"]],
        "delivery_id": [d["id"] for d in _items(deliveries)],
        "invitation_id": [invitation["id"]],
        "member_id": [m["id"] for m in _items(members)],
        "import_id": [started["id"]],
        "job_id": [j["id"] for j in _items(jobs)][:5],
    }


def _items(data: Any) -> list[dict[str, Any]]:
    return list(data["items"] if isinstance(data, dict) else data)


def _config(known: dict[str, Any]) -> str:
    lines = [
        f"max-stream-events = {MAX_STREAM_EVENTS}",
        "request-timeout = 30",
        "continue-on-failure = true",
        "seed = 20251206",
        "",
        "[generation]",
        "max-examples = 8",
        "",
    ]
    params = []
    for name, values in known.items():
        if name == "headers" or not values:
            continue
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
        params.append(f'"path.{name}" = {{ dictionary = "{name}", probability = 0.75 }}')
    lines += ["[parameters]", *params, ""]
    for operation, (status, _reason) in REFUSED_BY_RULE.items():
        statuses = json.dumps([*POSITIVE_DEFAULT, status])
        lines += [
            "[[operations]]",
            f'include-name = "{operation}"',
            f"checks.positive_data_acceptance.expected-statuses = {statuses}",
            "",
        ]
    return "\n".join(lines)


def _schemathesis(
    live_api: str, tmp_path: Path, config: str, headers: dict[str, str], *filters: str
) -> subprocess.CompletedProcess[str]:
    config_file = tmp_path / "schemathesis.toml"
    config_file.write_text(config)
    args = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config_file),
        "run",
        f"{live_api}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--workers",
        "1",
        "--no-color",
        "--generation-database=none",
        *[f"--header={k}: {v}" for k, v in headers.items()],
        *filters,
    ]
    env = {**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"}
    return subprocess.run(
        args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=3600, check=False
    )


def _report(run: subprocess.CompletedProcess[str], tmp_path: Path, name: str) -> str | None:
    """None when schemathesis reported nothing; else where its report is, and its end."""
    output = tmp_path / f"schemathesis-{name}.txt"
    output.write_text(run.stdout + run.stderr)
    if run.returncode == 0:
        return None
    return f"== {name} (all of it in {output}):\n{run.stdout[-12000:]}{run.stderr[-3000:]}"


@pytest.mark.slow
def test_schemathesis_reports_nothing(
    live_api: str, known_ids: dict[str, Any], tmp_path: Path
) -> None:
    if not SCHEMATHESIS.exists():
        pytest.fail(f"{SCHEMATHESIS} is missing: schemathesis is a pinned dev dependency")
    config = _config(known_ids)
    headers = known_ids["headers"]
    runs = {
        "main": _schemathesis(
            live_api,
            tmp_path,
            config,
            headers,
            "--exclude-method=DELETE",
            f"--exclude-path-regex={SESSION_ENDING}",
        ),
        "delete": _schemathesis(live_api, tmp_path, config, headers, "--include-method=DELETE"),
    }
    for name in SESSION_ENDERS:  # each with a session of its own, which it may end
        with httpx.Client(base_url=live_api) as c:
            throwaway = _signup(c)
        path = f"--include-path=/api/v1/auth/{name}"
        runs[name] = _schemathesis(live_api, tmp_path, config, throwaway, path)
    reports = [r for name, run in runs.items() if (r := _report(run, tmp_path, name))]
    assert not reports, "schemathesis reported:\n" + "\n\n".join(reports)
