"""Outgoing webhooks against a real HTTP receiver on loopback that verifies every delivery
with the Standard Webhooks reference library: signing, retries, the delivery log,
automatic disabling, redelivery, SSRF refusals (literal, DNS, at delivery time), timeouts,
and the API's permissions and validation."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from lovedcrm.app import create_app
from lovedcrm.auth.authentication import principal_for_member
from lovedcrm.auth.models import ApiKey
from lovedcrm.config import Settings
from lovedcrm.core.events import DomainEvent, emit
from lovedcrm.core.security import SecretBox, new_token, token_hash
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.jobs.engine import run_until_idle
from lovedcrm.organizations.models import Organization
from lovedcrm.webhooks import jobs as webhook_jobs
from lovedcrm.webhooks import service as webhook_service
from tests.factories import PASSWORD, owner_sql, signup, unique_email

DISABLE_AFTER = 4

# --- a real receiver ----------------------------------------------------------------------


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: Any


@dataclass
class Route:
    secret: str = ""
    status: int = 200
    # Given: each request waits for the event before it is answered (a receiver that hangs).
    hold: threading.Event | None = None
    # Set once a request has been answered (or found the sender gone).
    answered: threading.Event = field(default_factory=threading.Event)
    reply: bytes = b"ok"
    hits: list[Hit] = field(default_factory=list)


class Receiver:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                route = routes.get(self.path)
                if route is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = Webhook(route.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    payload, verified = None, False
                route.hits.append(Hit(headers, body, verified, payload))
                if route.hold is not None:
                    route.hold.wait(timeout=120)  # a safety net: the test releases it
                try:
                    self.send_response(route.status)
                    self.send_header("content-length", str(len(route.reply)))
                    self.end_headers()
                    self.wfile.write(route.reply)
                except OSError:
                    pass  # the sender gave up (timeout test)
                finally:
                    route.answered.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def route(self, **kwargs: Any) -> tuple[str, Route]:
        path = f"/hook/{uuid.uuid4().hex}"
        self.routes[path] = Route(**kwargs)
        return path, self.routes[path]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


# --- an app that may deliver to loopback --------------------------------------------------


@pytest.fixture(scope="module")
def wh_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "webhooks_allow_private_targets": True,
            "webhook_timeout_seconds": 1.0,
            "webhook_disable_after_failures": DISABLE_AFTER,
        }
    )


@pytest.fixture(scope="module")
def strict_settings(wh_settings: Settings) -> Settings:
    """Loopback allowed neither for webhooks nor for outbound calls at all."""
    return wh_settings.model_copy(
        update={"webhooks_allow_private_targets": False, "outbound_allow": ()}
    )


@pytest.fixture(scope="module")
def wh_app(wh_settings: Settings, database: Database) -> Any:
    return create_app(wh_settings, database=database)


@pytest.fixture
async def wc(wh_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=wh_app, client=("203.0.113.21", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@dataclass
class Org:
    id: uuid.UUID
    user_id: uuid.UUID
    email: str
    headers: dict[str, str]
    api_key_id: uuid.UUID


async def api_key(database: Database, org: uuid.UUID, user: uuid.UUID, **fields: Any) -> uuid.UUID:
    key_id = uuid.uuid4()
    async with tenant_transaction(database.sessionmaker, org, user) as s:
        s.add(
            ApiKey(
                id=key_id,
                organization_id=org,
                created_by=user,
                key_name="integration",
                api_key_hash=token_hash(new_token()),
                api_key_prefix="lcrm_test",
                **fields,
            )
        )
    return key_id


async def new_org(c: httpx.AsyncClient, database: Database) -> Org:
    data = await signup(c)
    org, user = uuid.UUID(data["organization_id"]), uuid.UUID(data["user"]["id"])
    return Org(org, user, data["email"], data["headers"], await api_key(database, org, user))


@pytest.fixture
async def org(wc: httpx.AsyncClient, database: Database) -> Org:
    return await new_org(wc, database)


async def subscribe(
    c: httpx.AsyncClient, org: Org, url: str, route: Route | None = None, **fields: Any
) -> dict[str, Any]:
    body = {
        "url": url,
        "events": ["lead.created"],
        "api_key_id": str(org.api_key_id),
        "retry_backoff_seconds": 0,
        **fields,
    }
    r = await c.post("/api/v1/webhooks", headers=org.headers, json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    if route is not None:
        route.secret = data["secret"]
    return data


async def fire(database: Database, org: Org, type_: str = "lead.created") -> DomainEvent:
    event = DomainEvent(
        type=type_, organization_id=org.id, data={"lead_id": str(uuid.uuid4()), "n": 1}
    )
    async with tenant_transaction(database.sessionmaker, org.id) as s:
        await emit(s, event)
    return event


async def run(database: Database, settings: Settings) -> int:
    return await run_until_idle(database, settings, types=["webhook.deliver"], timeout=30)


async def deliveries(c: httpx.AsyncClient, org: Org, sub_id: str) -> list[dict[str, Any]]:
    r = await c.get(f"/api/v1/webhooks/{sub_id}/deliveries", headers=org.headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def subscription(c: httpx.AsyncClient, org: Org, sub_id: str) -> dict[str, Any]:
    r = await c.get(f"/api/v1/webhooks/{sub_id}", headers=org.headers)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def jobs_of(owner: sa.Engine, event_id: str) -> list[Any]:
    return owner_sql(
        owner,
        "SELECT status, attempts, max_attempts, error_message FROM background_jobs "
        "WHERE job_type = 'webhook.deliver' AND job_data->>'event_id' = :e",
        e=event_id,
    )


# --- subscriptions and secrets ------------------------------------------------------------


async def test_secret_shown_once_and_stored_encrypted(
    wc: httpx.AsyncClient, org: Org, receiver: Receiver, wh_settings: Settings, owner: sa.Engine
) -> None:
    path, _ = receiver.route()
    created = await subscribe(wc, org, receiver.url(path), events=["*"])
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    assert created["url"] == receiver.url(path) and created["events"] == ["*"]
    assert created["api_key_id"] == str(org.api_key_id)
    assert created["is_active"] is True and created["failure_count"] == 0

    assert "secret" not in await subscription(wc, org, created["id"])
    r = await wc.get("/api/v1/webhooks", headers=org.headers)
    assert [s["id"] for s in r.json()] == [created["id"]]
    assert "secret" not in r.text and secret not in r.text

    [(stored,)] = owner_sql(
        owner, "SELECT secret_token FROM webhook_subscriptions WHERE id = :i", i=created["id"]
    )
    assert stored.startswith("v1:") and stored != secret and secret not in stored
    box = SecretBox(wh_settings.encryption_key.get_secret_value())
    assert box.decrypt(stored, context=f"webhook_subscription:{created['id']}") == secret
    # The audit row never carries the secret.
    rows = owner_sql(
        owner,
        "SELECT action, changes::text FROM audit_logs WHERE resource_id = :i",
        i=created["id"],
    )
    assert [a for a, _ in rows] == ["create"]
    assert all(secret not in ch and stored not in ch for _, ch in rows)


async def test_event_is_delivered_signed_and_logged(
    wc: httpx.AsyncClient,
    org: Org,
    receiver: Receiver,
    database: Database,
    wh_settings: Settings,
    owner: sa.Engine,
) -> None:
    path, route = receiver.route(reply=b"x" * 5000)
    sub = await subscribe(wc, org, receiver.url(path), route)
    other_path, other = receiver.route()
    await subscribe(wc, org, receiver.url(other_path), other, events=["lead.deleted"])

    event = await fire(database, org)
    sending = time.time()
    assert await run(database, wh_settings) == 1  # only the matching subscription
    sent = time.time()

    [hit] = route.hits
    assert hit.verified, "the receiver could not verify the Standard Webhooks signature"
    assert hit.payload == json.loads(json.dumps(event.envelope(), default=str))
    assert hit.payload["type"] == "lead.created" and hit.payload["id"] == event.id
    assert hit.headers["webhook-id"] == event.id
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["user-agent"] == "LovedCRM-Webhooks/1"
    # Signed (verified above) and stamped with the time of sending (whole seconds).
    assert sending - 1 <= int(hit.headers["webhook-timestamp"]) <= sent + 1
    assert other.hits == []

    [log] = await deliveries(wc, org, sub["id"])
    assert log["succeeded"] is True and log["response_status"] == 200 and log["attempt"] == 1
    assert log["event_id"] == event.id and log["event_type"] == "lead.created"
    assert log["request_body"].encode() == hit.body
    assert log["response_body"] == "x" * 2048  # the first 2 KB only
    assert log["latency_ms"] is not None and log["latency_ms"] >= 0 and log["error"] is None
    assert [j.status for j in jobs_of(owner, event.id)] == ["completed"]
    after = await subscription(wc, org, sub["id"])
    assert after["last_triggered_at"] is not None and after["failure_count"] == 0


async def test_rolled_back_change_queues_nothing(
    wc: httpx.AsyncClient, org: Org, receiver: Receiver, database: Database, owner: sa.Engine
) -> None:
    path, route = receiver.route()
    await subscribe(wc, org, receiver.url(path), route)
    event = DomainEvent(type="lead.created", organization_id=org.id, data={})
    with pytest.raises(RuntimeError):
        async with tenant_transaction(database.sessionmaker, org.id) as s:
            await emit(s, event)
            raise RuntimeError("the change failed")
    assert jobs_of(owner, event.id) == []


async def test_failures_retry_count_and_log_then_redeliver(
    wc: httpx.AsyncClient,
    org: Org,
    receiver: Receiver,
    database: Database,
    wh_settings: Settings,
    owner: sa.Engine,
) -> None:
    path, route = receiver.route(status=500, reply=b"boom")
    sub = await subscribe(wc, org, receiver.url(path), route, max_retries=2)

    event = await fire(database, org)
    assert await run(database, wh_settings) == 3  # 1 try + max_retries

    assert len(route.hits) == 3 and all(h.verified for h in route.hits)
    assert {h.headers["webhook-id"] for h in route.hits} == {event.id}  # stable across retries
    log = await deliveries(wc, org, sub["id"])
    assert [d["attempt"] for d in log] == [3, 2, 1]  # newest first
    assert all(not d["succeeded"] and d["response_status"] == 500 for d in log)
    assert all(d["error"] == "HTTP 500" and d["response_body"] == "boom" for d in log)
    [(status, attempts, max_attempts, error)] = jobs_of(owner, event.id)
    assert (status, attempts, max_attempts) == ("failed", 3, 3)
    assert "HTTP 500" in error and "gave up after 3 attempts" in error
    current = await subscription(wc, org, sub["id"])
    assert current["failure_count"] == 3 and current["is_active"] is True

    # Pagination of the log.
    r = await wc.get(
        f"/api/v1/webhooks/{sub['id']}/deliveries", headers=org.headers, params={"limit": 2}
    )
    page = r.json()
    assert [d["attempt"] for d in page["items"]] == [3, 2] and page["next_cursor"]
    r = await wc.get(
        f"/api/v1/webhooks/{sub['id']}/deliveries",
        headers=org.headers,
        params={"limit": 2, "cursor": page["next_cursor"]},
    )
    assert [d["attempt"] for d in r.json()["items"]] == [1] and r.json()["next_cursor"] is None
    r = await wc.get(
        f"/api/v1/webhooks/{sub['id']}/deliveries",
        headers=org.headers,
        params={"cursor": "garbage"},
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_cursor"

    # The receiver is fixed: redeliver the same message.
    route.status = 200
    r = await wc.post(
        f"/api/v1/webhooks/{sub['id']}/deliveries/{log[0]['id']}/redeliver", headers=org.headers
    )
    assert r.status_code == 202, r.text
    assert r.json()["event_id"] == event.id and r.json()["job_id"]
    assert await run(database, wh_settings) == 1
    last = route.hits[-1]
    assert last.verified and last.headers["webhook-id"] == event.id
    assert last.body == route.hits[0].body
    newest = (await deliveries(wc, org, sub["id"]))[0]
    assert newest["succeeded"] is True and newest["attempt"] == 1
    assert (await subscription(wc, org, sub["id"]))["failure_count"] == 0

    r = await wc.post(
        f"/api/v1/webhooks/{sub['id']}/deliveries/{uuid.uuid4()}/redeliver", headers=org.headers
    )
    assert r.status_code == 404 and r.json()["code"] == "delivery_not_found"


async def test_repeated_failures_disable_and_notify_admins(
    wc: httpx.AsyncClient,
    org: Org,
    receiver: Receiver,
    database: Database,
    wh_settings: Settings,
    owner: sa.Engine,
) -> None:
    path, route = receiver.route(status=503)
    sub = await subscribe(wc, org, receiver.url(path), route, max_retries=10)

    event = await fire(database, org)
    await run(database, wh_settings)

    assert len(route.hits) == DISABLE_AFTER  # no attempt after the subscription is disabled
    current = await subscription(wc, org, sub["id"])
    assert current["is_active"] is False and current["failure_count"] == DISABLE_AFTER
    [(status, _, _, error)] = jobs_of(owner, event.id)
    assert status == "failed" and "disabled after repeated failures" in error
    [(changes,)] = owner_sql(
        owner,
        "SELECT changes FROM audit_logs WHERE action = 'webhook_disabled' AND resource_id = :i",
        i=sub["id"],
    )
    assert changes["failure_count"] == DISABLE_AFTER and changes["reason"] == "HTTP 503"

    mails = [
        p.read_text()
        for p in (Path(wh_settings.data_dir) / "mail").glob("*.eml")
        if sub["id"] in p.read_text()
    ]
    assert len(mails) == 1
    assert f"To: {org.email}" in mails[0] and "Webhook disabled" in mails[0]
    assert "HTTP 503" in mails[0]
    # ... and the admin's notification centre says so.
    assert owner_sql(
        owner,
        "SELECT user_id, link FROM notifications WHERE organization_id = :o"
        " AND notification_type = 'webhook_disabled'",
        o=org.id,
    ) == [(org.user_id, f"/settings/webhooks/{sub['id']}")]

    # A disabled subscription gets no new events, and refuses redelivery and tests.
    await fire(database, org)
    assert await run(database, wh_settings) == 0
    r = await wc.post(f"/api/v1/webhooks/{sub['id']}/test", headers=org.headers)
    assert r.status_code == 409 and r.json()["code"] == "webhook_inactive"

    # Re-enabling resets the count; a test ping then goes through.
    route.status = 204
    r = await wc.patch(
        f"/api/v1/webhooks/{sub['id']}", headers=org.headers, json={"is_active": True}
    )
    assert r.status_code == 200 and r.json()["failure_count"] == 0 and r.json()["is_active"]
    r = await wc.post(f"/api/v1/webhooks/{sub['id']}/test", headers=org.headers)
    assert r.status_code == 202
    assert await run(database, wh_settings) == 1
    assert route.hits[-1].verified and route.hits[-1].payload["type"] == "webhook.test"


async def test_rotated_secret_signs_the_next_delivery(
    wc: httpx.AsyncClient, org: Org, receiver: Receiver, database: Database, wh_settings: Settings
) -> None:
    path, route = receiver.route()
    sub = await subscribe(wc, org, receiver.url(path), route)
    old = route.secret
    r = await wc.post(f"/api/v1/webhooks/{sub['id']}/rotate-secret", headers=org.headers)
    assert r.status_code == 200, r.text
    new = r.json()["secret"]
    assert new.startswith("whsec_") and new != old

    await fire(database, org)
    await run(database, wh_settings)
    assert route.hits[-1].verified is False  # still checking with the old secret
    route.secret = new
    body, headers = route.hits[-1].body, route.hits[-1].headers
    assert Webhook(new).verify(body, headers)["type"] == "lead.created"


# --- refused targets, timeouts ------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_private_target_refused_at_delivery_time(
    host: str,
    wc: httpx.AsyncClient,
    org: Org,
    receiver: Receiver,
    database: Database,
    strict_settings: Settings,
    owner: sa.Engine,
) -> None:
    """Created while private targets were allowed; delivered by a worker that refuses them
    (``localhost`` is caught after DNS resolution)."""
    path, route = receiver.route()
    sub = await subscribe(wc, org, receiver.url(path, host), route, max_retries=3)
    event = await fire(database, org)
    assert await run(database, strict_settings) == 1  # refused: no retry

    assert route.hits == []
    [log] = await deliveries(wc, org, sub["id"])
    assert log["succeeded"] is False and log["response_status"] is None
    assert log["error"].startswith(f"refused: {host} resolves to ")
    assert "is a loopback address" in log["error"]
    [(status, attempts, _, error)] = jobs_of(owner, event.id)
    assert status == "failed" and attempts == 1 and "loopback" in error


async def test_checked_address_is_pinned(
    wc: httpx.AsyncClient,
    org: Org,
    receiver: Receiver,
    database: Database,
    strict_settings: Settings,
) -> None:
    """The request goes to the address that was checked, Host intact: an installation that
    allows the name ``localhost`` (and nothing else private) reaches it by name."""
    infos = socket.getaddrinfo("localhost", receiver.port, type=socket.SOCK_STREAM)
    if infos[0][4][0] != "127.0.0.1":
        pytest.skip("localhost does not resolve to 127.0.0.1 first here")
    path, route = receiver.route()
    await subscribe(wc, org, receiver.url(path, "localhost"), route)
    await fire(database, org)
    await run(database, strict_settings.model_copy(update={"outbound_allow": ("localhost",)}))
    [hit] = route.hits
    assert hit.verified and hit.headers["host"] == f"localhost:{receiver.port}"


def test_address_classification() -> None:
    import ipaddress

    refused = {
        "127.0.0.1": "loopback",
        "10.1.2.3": "private",
        "192.168.0.10": "private",
        "172.16.5.5": "private",
        "169.254.169.254": "link-local",
        "0.0.0.0": "unspecified",  # noqa: S104 - classified, not bound
        "224.0.0.1": "multicast",
        "240.0.0.1": "reserved",
        "::1": "loopback",
        "fe80::1": "link-local",
        "fc00::1": "private",
        "::ffff:127.0.0.1": "loopback",
        "100.64.0.1": "not a public",
    }
    for raw, label in refused.items():
        reason = webhook_service.address_refusal(ipaddress.ip_address(raw))
        assert reason is not None and label in reason, (raw, reason)
    for raw in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"):
        assert webhook_service.address_refusal(ipaddress.ip_address(raw)) is None


async def test_timeout_is_logged(
    wc: httpx.AsyncClient,
    org: Org,
    receiver: Receiver,
    database: Database,
    wh_settings: Settings,
    owner: sa.Engine,
) -> None:
    # The receiver takes the request and does not answer until the test lets it.
    hold = threading.Event()
    path, route = receiver.route(hold=hold)
    sub = await subscribe(wc, org, receiver.url(path), route, max_retries=0)
    event = await fire(database, org)
    try:
        await run(database, wh_settings)
        [log] = await deliveries(wc, org, sub["id"])
        assert log["succeeded"] is False and log["error"] == "timeout: no response within 1s"
        assert log["response_status"] is None and log["latency_ms"] is not None
        [(status, *_)] = jobs_of(owner, event.id)
        assert status == "failed"
        assert len(route.hits) == 1  # it was sent, once: the receiver never answered in time
    finally:
        hold.set()
    # The receiver's thread finishes before the module's receiver shuts down.
    assert await asyncio.to_thread(route.answered.wait, 60)


async def test_deleted_subscription_is_not_sent(
    wc: httpx.AsyncClient,
    org: Org,
    receiver: Receiver,
    database: Database,
    wh_settings: Settings,
    owner: sa.Engine,
) -> None:
    path, route = receiver.route()
    sub = await subscribe(wc, org, receiver.url(path), route)
    event = await fire(database, org)
    r = await wc.delete(f"/api/v1/webhooks/{sub['id']}", headers=org.headers)
    assert r.status_code == 204
    await run(database, wh_settings)
    assert route.hits == []
    [(status, *_)] = jobs_of(owner, event.id)
    assert status == "completed"
    r = await wc.get(f"/api/v1/webhooks/{sub['id']}", headers=org.headers)
    assert r.status_code == 404 and r.json()["code"] == "webhook_not_found"
    actions = owner_sql(
        owner,
        "SELECT action FROM audit_logs WHERE resource_id = :i ORDER BY created_at",
        i=sub["id"],
    )
    assert [a for (a,) in actions] == ["create", "delete"]


# --- API rules ---------------------------------------------------------------------------


async def test_update_validates_and_audits(
    wc: httpx.AsyncClient, org: Org, receiver: Receiver, owner: sa.Engine
) -> None:
    path, _ = receiver.route()
    sub = await subscribe(wc, org, receiver.url(path))
    r = await wc.patch(
        f"/api/v1/webhooks/{sub['id']}",
        headers=org.headers,
        json={"events": ["lead.updated", "lead.lost", "lead.updated"], "max_retries": 5},
    )
    assert r.status_code == 200, r.text
    assert r.json()["events"] == ["lead.updated", "lead.lost"] and r.json()["max_retries"] == 5
    [(changes,)] = owner_sql(
        owner,
        "SELECT changes FROM audit_logs WHERE resource_id = :i AND action = 'update'",
        i=sub["id"],
    )
    assert changes["after"]["max_retries"] == 5 and changes["before"]["max_retries"] == 3
    r = await wc.patch(
        f"/api/v1/webhooks/{sub['id']}", headers=org.headers, json={"events": ["nope"]}
    )
    assert r.status_code == 422 and r.json()["code"] == "webhook_events_invalid"


async def test_validation_errors(
    wc: httpx.AsyncClient, org: Org, database: Database, strict_settings: Settings
) -> None:
    base = {"url": "https://hooks.example.com/x", "events": ["lead.created"]}
    key = str(org.api_key_id)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**base, "api_key_id": key, "colour": "red"}, "validation_error"),
        ({**base, "api_key_id": key, "max_retries": 11}, "validation_error"),
        ({**base, "api_key_id": key, "retry_backoff_seconds": 86401}, "validation_error"),
        ({**base, "api_key_id": key, "events": []}, "validation_error"),
        ({**base, "api_key_id": key, "events": ["lead.exploded"]}, "webhook_events_invalid"),
        ({**base, "api_key_id": key, "events": ["*", "lead.created"]}, "webhook_events_invalid"),
        ({**base, "api_key_id": key, "url": "ftp://example.com/x"}, "webhook_url_invalid"),
        ({**base, "api_key_id": key, "url": "https://u:p@example.com/"}, "webhook_url_invalid"),
        ({**base, "api_key_id": key, "url": "not a url"}, "webhook_url_invalid"),
        (base, "webhook_api_key_required"),
        ({**base, "api_key_id": str(uuid.uuid4())}, "webhook_api_key_invalid"),
    ]
    for body, code in cases:
        r = await wc.post("/api/v1/webhooks", headers=org.headers, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["code"] == code, (body, r.json())

    revoked = await api_key(database, org.id, org.user_id, is_active=False)
    r = await wc.post(
        "/api/v1/webhooks", headers=org.headers, json={**base, "api_key_id": str(revoked)}
    )
    assert r.status_code == 422 and r.json()["code"] == "webhook_api_key_invalid"

    # The default settings: no private targets, https only.
    strict = create_app(
        strict_settings.model_copy(update={"webhooks_allow_http": False}), database=database
    )
    transport = httpx.ASGITransport(app=strict, client=("203.0.113.22", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for url, code in [
            ("http://127.0.0.1:9/x", "webhook_url_private"),
            ("https://localhost/x", "webhook_url_private"),
            ("https://[::1]/x", "webhook_url_private"),
            ("https://127.1/x", "webhook_url_private"),
            ("https://169.254.169.254/latest", "webhook_url_private"),
            ("https://[::ffff:169.254.169.254]/latest", "webhook_url_private"),
            ("http://hooks.example.com/x", "webhook_url_insecure"),
        ]:
            body = {**base, "api_key_id": key, "url": url}
            r = await client.post("/api/v1/webhooks", headers=org.headers, json=body)
            assert r.status_code == 422 and r.json()["code"] == code, (url, r.text)
        body = {**base, "api_key_id": key}
        r = await client.post("/api/v1/webhooks", headers=org.headers, json=body)
        assert r.status_code == 201, r.text


async def test_other_organization_gets_404(
    wc: httpx.AsyncClient, org: Org, receiver: Receiver, database: Database
) -> None:
    path, _ = receiver.route()
    sub = await subscribe(wc, org, receiver.url(path))
    other = await new_org(wc, database)
    base = f"/api/v1/webhooks/{sub['id']}"
    for method, url in [
        ("GET", base),
        ("PATCH", base),
        ("DELETE", base),
        ("POST", f"{base}/rotate-secret"),
        ("GET", f"{base}/deliveries"),
        ("POST", f"{base}/test"),
    ]:
        kwargs: dict[str, Any] = {"json": {"max_retries": 1}} if method == "PATCH" else {}
        r = await wc.request(method, url, headers=other.headers, **kwargs)
        assert r.status_code == 404, (method, url, r.text)
        assert r.json()["code"] == "webhook_not_found"
    r = await wc.get("/api/v1/webhooks", headers=other.headers)
    assert r.json() == []
    # Nor can another organization's API key own a subscription here.
    r = await wc.post(
        "/api/v1/webhooks",
        headers=org.headers,
        json={"url": receiver.url(path), "events": ["*"], "api_key_id": str(other.api_key_id)},
    )
    assert r.status_code == 422 and r.json()["code"] == "webhook_api_key_invalid"


async def test_sales_member_is_forbidden(wc: httpx.AsyncClient, org: Org) -> None:
    email = unique_email("sales")
    r = await wc.post(
        "/api/v1/invitations", headers=org.headers, json={"email": email, "role": "sales"}
    )
    assert r.status_code == 201, r.text
    token = r.json()["accept_url"].split("token=")[1]
    r = await wc.post(
        "/api/v1/invitations/accept",
        json={"token": token, "full_name": "Sales", "password": PASSWORD},
    )
    assert r.status_code == 200, r.text
    r = await wc.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    sales = {"Authorization": f"Bearer {r.json()['access_token']}"}
    for method, url in [("GET", "/api/v1/webhooks"), ("POST", "/api/v1/webhooks")]:
        r = await wc.request(method, url, headers=sales, json={})
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "permission_denied"
        assert r.json()["permission"] == "webhooks:manage"
    r = await wc.get("/api/v1/webhooks")
    assert r.status_code == 401


def test_openapi_documents_the_routes(wh_app: Any) -> None:
    spec = wh_app.openapi()
    paths = spec["paths"]
    assert "/api/v1/webhooks" in paths
    assert "/api/v1/webhooks/{subscription_id}/deliveries/{delivery_id}/redeliver" in paths
    create = paths["/api/v1/webhooks"]["post"]
    assert {"201", "401", "403", "422"} <= set(create["responses"])
    assert "application/problem+json" in create["responses"]["422"]["content"]


def test_jobs_module_registers_the_handler() -> None:
    from lovedcrm.jobs.queue import HANDLERS

    assert HANDLERS["webhook.deliver"].fn is webhook_jobs.deliver


async def test_api_key_owns_the_subscriptions_it_creates(
    wc: httpx.AsyncClient, org: Org, receiver: Receiver
) -> None:
    r = await wc.post(
        "/api/v1/api-keys",
        headers=org.headers,
        json={"name": "hooks", "scopes": ["webhooks:manage"]},
    )
    assert r.status_code == 201, r.text
    key_id, key = r.json()["id"], r.json()["key"]
    as_key = {"Authorization": f"Bearer {key}"}
    path, _ = receiver.route()
    body = {"url": receiver.url(path), "events": ["lead.created"]}
    r = await wc.post("/api/v1/webhooks", headers=as_key, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["api_key_id"] == key_id and r.json()["secret"].startswith("whsec_")
    # A key cannot hand its subscription to another key.
    r = await wc.post(
        "/api/v1/webhooks", headers=as_key, json={**body, "api_key_id": str(org.api_key_id)}
    )
    assert r.status_code == 422 and r.json()["code"] == "webhook_api_key_invalid"
    # A key without the scope is refused.
    r = await wc.post(
        "/api/v1/api-keys", headers=org.headers, json={"name": "ro", "scopes": ["leads:read"]}
    )
    r = await wc.get("/api/v1/webhooks", headers={"Authorization": f"Bearer {r.json()['key']}"})
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"


# --- the organization's count of active subscriptions (migration 0026) --------------------


def active_webhooks(owner: sa.Engine, org: Org) -> int:
    [(n,)] = owner_sql(owner, "SELECT active_webhooks FROM organizations WHERE id = :o", o=org.id)
    return int(n)


async def test_the_count_of_active_subscriptions_follows_every_change(
    wc: httpx.AsyncClient, org: Org, receiver: Receiver, owner: sa.Engine
) -> None:
    path, _ = receiver.route()
    assert active_webhooks(owner, org) == 0
    one = await subscribe(wc, org, receiver.url(path))
    two = await subscribe(wc, org, receiver.url(path))
    assert active_webhooks(owner, org) == 2
    r = await wc.patch(
        f"/api/v1/webhooks/{one['id']}", headers=org.headers, json={"is_active": False}
    )
    assert r.status_code == 200, r.text
    assert active_webhooks(owner, org) == 1
    r = await wc.patch(
        f"/api/v1/webhooks/{one['id']}", headers=org.headers, json={"is_active": True}
    )
    assert active_webhooks(owner, org) == 2
    r = await wc.delete(f"/api/v1/webhooks/{two['id']}", headers=org.headers)
    assert r.status_code == 204, r.text
    assert active_webhooks(owner, org) == 1
    owner_sql(
        owner, "UPDATE webhook_subscriptions SET is_active = false WHERE id = :i", i=one["id"]
    )
    assert active_webhooks(owner, org) == 0


async def test_a_created_lead_is_delivered_and_without_subscriptions_nothing_is_looked_up(
    wc: httpx.AsyncClient,
    org: Org,
    receiver: Receiver,
    database: Database,
    wh_settings: Settings,
) -> None:
    """A lead's create reads the organization's row: with no active subscription the
    subscriber does not look them up; with one, the lead is delivered."""
    seen: list[str] = []

    def spy(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sync_engine = database.app_engine.sync_engine
    sa.event.listen(sync_engine, "before_cursor_execute", spy)
    try:
        r = await wc.post("/api/v1/leads", headers=org.headers, json={"full_name": "Sem Gancho"})
        assert r.status_code == 201, r.text
        assert not [s for s in seen if "FROM webhook_subscriptions" in s]
        path, route = receiver.route()
        await subscribe(wc, org, receiver.url(path), route)
        seen.clear()
        r = await wc.post("/api/v1/leads", headers=org.headers, json={"full_name": "Com Gancho"})
        assert r.status_code == 201, r.text
        assert [s for s in seen if "FROM webhook_subscriptions" in s]
    finally:
        sa.event.remove(sync_engine, "before_cursor_execute", spy)
    assert await run(database, wh_settings) == 1
    [hit] = route.hits
    assert hit.verified and hit.payload["data"]["lead"]["full_name"] == "Com Gancho"


async def test_a_subscription_made_active_in_the_unit_of_work_gets_its_events(
    org: Org, receiver: Receiver, database: Database, wh_settings: Settings
) -> None:
    """The organization's row read before the subscription was made (its count one too
    few) does not make the same unit of work skip the subscription."""
    path, route = receiver.route()
    async with tenant_transaction(database.sessionmaker, org.id, org.user_id) as s:
        row = await s.get(Organization, org.id)  # held: it stays in the identity map
        assert row is not None and row.active_webhooks == 0
        principal = await principal_for_member(s, org.id, org.user_id)
        assert principal is not None
        _, route.secret = await webhook_service.create_subscription(
            s,
            wh_settings,
            principal,
            url=receiver.url(path),
            events=["lead.created"],
            api_key_id=org.api_key_id,
            max_retries=0,
            retry_backoff_seconds=0,
        )
        await emit(s, DomainEvent(type="lead.created", organization_id=org.id, data={"n": 1}))
        assert row.active_webhooks == 0  # the row as read, before the subscription
    assert await run(database, wh_settings) == 1
    assert len(route.hits) == 1
