"""/metrics: Prometheus text (parsed with prometheus-client's own parser) that moves when
requests and jobs run, labelled by route template; a bearer token (401 without it) or a
private address; OpenTelemetry spans sent over OTLP/HTTP to a loopback receiver when
configured; the admins' Sistema page."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from lovedcrm.app import create_app
from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle
from lovedcrm.jobs.queue import enqueue
from tests.factories import create_lead, join, owner_sql, signup, web_login

TOKEN = "metrics-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def metrics_app(settings: Settings, database: Database) -> Any:
    return create_app(
        settings.model_copy(update={"metrics_token": SecretStr(TOKEN)}), database=database
    )


async def _scrape(app: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4444))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        r = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return sum(
        v
        for (n, ls), v in samples.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    )


async def test_metrics_needs_the_token(
    metrics_app: Any, app: Any, client: httpx.AsyncClient
) -> None:
    transport = httpx.ASGITransport(app=metrics_app, client=("203.0.113.9", 4444))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        assert (await c.get("/metrics")).status_code == 401
        r = await c.get("/metrics", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
    # No token set: a public address is refused too; a private one is answered.
    for address, status in (("8.8.4.4", 401), ("10.1.2.3", 200)):
        transport = httpx.ASGITransport(app=app, client=(address, 4444))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            assert (await c.get("/metrics")).status_code == status
    assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


async def test_requests_move_by_route_template(metrics_app: Any) -> None:
    transport = httpx.ASGITransport(app=metrics_app, client=("203.0.113.9", 4444))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        admin = await signup(c)
        lead = await create_lead(c, admin["headers"])
        before = await _scrape(metrics_app)
        for _ in range(3):
            r = await c.get(f"/api/v1/leads/{lead['id']}", headers=admin["headers"])
            assert r.status_code == 200
        await c.get(f"/no/such/path/{uuid.uuid4()}")
        after = await _scrape(metrics_app)
    route = "/api/v1/leads/{lead_id}"
    key = {"method": "GET", "route": route, "status": "200"}
    assert _value(after, "lovedcrm_http_requests_total", **key) - _value(
        before, "lovedcrm_http_requests_total", **key
    ) == pytest.approx(3)
    hist = {"method": "GET", "route": route}
    assert _value(after, "lovedcrm_http_request_duration_seconds_count", **hist) >= 3
    labels = {dict(ls).get("route") for (n, ls) in after if n == "lovedcrm_http_requests_total"}
    assert "<unmatched>" in labels
    assert not any(lead["id"] in (r or "") for r in labels)  # never a raw path
    assert ("lovedcrm_sse_connections", ()) in after
    assert _value(after, "lovedcrm_db_pool_size") >= 1


async def test_queue_figures_move_when_jobs_run(
    metrics_app: Any, database: Database, settings: Settings
) -> None:
    before = await _scrape(metrics_app)
    async with database.sessionmaker() as s, s.begin():
        for _ in range(2):
            await enqueue(s, "notifications.tasks", {}, organization_id=None)
    queued = await _scrape(metrics_app)
    depth = "lovedcrm_job_queue_depth"
    assert _value(queued, depth, type="notifications.tasks") >= 2
    assert _value(queued, "lovedcrm_job_queue_oldest_seconds", type="notifications.tasks") >= 0
    await run_until_idle(database, settings, types=["notifications.tasks"], timeout=30)
    done = await _scrape(metrics_app)
    assert _value(done, depth, type="notifications.tasks") == 0
    jobs = "lovedcrm_jobs"
    assert _value(done, jobs, type="notifications.tasks", status="completed") - _value(
        before, jobs, type="notifications.tasks", status="completed"
    ) == pytest.approx(2)
    assert ("lovedcrm_webhook_delivery_failures", ()) in done


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]] = []  # noqa: RUF012 - one receiver per test

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        type(self).bodies.append((self.path, self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    _Receiver.bodies = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/traces", _Receiver.bodies
    server.shutdown()


async def test_traces_go_over_otlp_when_configured(
    settings: Settings, database: Database, otlp_receiver: tuple[str, list[Any]]
) -> None:
    off = create_app(settings, database=database)
    assert off.state.tracer_provider is None  # nothing when not configured
    endpoint, bodies = otlp_receiver
    app = create_app(settings.model_copy(update={"otlp_endpoint": endpoint}), database=database)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        assert (await c.get("/healthz")).status_code == 200
    assert app.state.tracer_provider.force_flush(10_000)
    app.state.tracer_provider.shutdown()
    names = []
    for path, body in bodies:
        assert path == "/v1/traces"
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                names += [span.name for span in ss.spans]
    assert "GET /healthz" in names


async def test_system_page_for_admins(client: httpx.AsyncClient, owner: sa.Engine) -> None:
    admin = await signup(client)
    member_email = await join(client, admin["headers"], "sales")
    owner_sql(
        owner,
        "INSERT INTO background_jobs (organization_id, job_type, job_data, status)"
        " VALUES (:org, 'notifications.digest', '{}', 'pending')",
        org=admin["organization_id"],
    )
    # A lead-ads integration whose sync failed, and a Stripe subscription past due.
    owner_sql(
        owner,
        "INSERT INTO marketing_integrations (organization_id, provider, account_name,"
        " sync_status, sync_error) VALUES (:org, 'facebook', 'Página Loja', 'error',"
        " 'Graph API: token expired')",
        org=admin["organization_id"],
    )
    owner_sql(
        owner,
        "UPDATE subscriptions SET stripe_customer_id = 'cus_1', status = 'past_due'"
        " WHERE organization_id = :org",
        org=admin["organization_id"],
    )
    await web_login(client, admin["email"])
    r = await client.get("/settings/system")
    assert r.status_code == 200, r.text
    assert "Sistema" in r.text and "notifications.digest" in r.text
    assert "data-error-rate" in r.text
    assert "Página Loja" in r.text and "Graph API: token expired" in r.text
    assert "Stripe" in r.text and "Anúncios" in r.text
    client.cookies.clear()
    await web_login(client, member_email)
    assert (await client.get("/settings/system")).status_code == 403
