"""Rate limits (per key and per user, shared by every process) and Idempotency-Key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from lovedcrm.app import create_app
from lovedcrm.config import Settings
from lovedcrm.core import ratelimit
from lovedcrm.core.idempotency import key_hash
from lovedcrm.db.engine import Database
from lovedcrm.db.engine import create_database as create_db_handle
from tests.factories import signup


async def make_key(
    c: httpx.AsyncClient, headers: dict[str, str], scopes: list[str], **body: Any
) -> str:
    r = await c.post(
        "/api/v1/api-keys", headers=headers, json={"name": "k", "scopes": scopes, **body}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- rate limits --------------------------------------------------------------------------


async def test_key_rate_limit(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    key = await make_key(client, admin["headers"], ["leads:read"], rate_limit_per_hour=3)
    for remaining in (2, 1, 0):
        r = await client.get("/api/v1/leads", headers=_bearer(key))
        assert r.status_code == 200, r.text
        assert r.headers["RateLimit-Limit"] == "3"
        assert r.headers["RateLimit-Remaining"] == str(remaining)
        assert 0 < int(r.headers["RateLimit-Reset"]) <= 3600
    r = await client.get("/api/v1/leads", headers=_bearer(key))
    assert r.status_code == 429
    assert r.json()["code"] == "rate_limited"
    assert r.headers["content-type"] == "application/problem+json"
    assert 0 < int(r.headers["Retry-After"]) <= 3600
    assert r.headers["RateLimit-Remaining"] == "0"
    # The key's limit is its own: the admin (a user bucket) is not affected.
    r = await client.get("/api/v1/leads", headers=admin["headers"])
    assert r.status_code == 200


async def test_refused_requests_count_too(client: httpx.AsyncClient) -> None:
    """A request that fails after authentication (403 here) still spends the budget."""
    admin = await signup(client)
    key = await make_key(client, admin["headers"], ["leads:read"], rate_limit_per_hour=2)
    r = await client.post("/api/v1/leads", headers=_bearer(key), json={"full_name": "x"})
    assert r.status_code == 403 and r.headers["RateLimit-Remaining"] == "1"
    r = await client.get("/api/v1/leads", headers=_bearer(key))
    assert r.status_code == 200 and r.headers["RateLimit-Remaining"] == "0"
    r = await client.get("/api/v1/leads", headers=_bearer(key))
    assert r.status_code == 429


async def test_user_requests_carry_rate_limit_headers(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await signup(client)
    r = await client.get("/api/v1/leads", headers=admin["headers"])
    assert r.status_code == 200
    assert r.headers["RateLimit-Limit"] == str(settings.user_rate_limit_per_hour)
    first = int(r.headers["RateLimit-Remaining"])
    r = await client.get("/api/v1/auth/me", headers=admin["headers"])
    assert int(r.headers["RateLimit-Remaining"]) == first - 1
    # Unauthenticated answers have none.
    r = await client.get("/api/v1/leads")
    assert r.status_code == 401 and "RateLimit-Limit" not in r.headers


@pytest.fixture
async def two_apps(
    settings: Settings, owner_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two app instances with their own connection pools: two server processes, as far as
    the database can tell."""
    dbs = [create_db_handle(settings, owner=make_url(owner_url)) for _ in range(2)]
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(settings, database=db)),
            base_url="http://testserver",
        )
        for db in dbs
    ]
    yield clients[0], clients[1]
    for c in clients:
        await c.aclose()
    for db in dbs:
        await db.dispose()


async def test_rate_limit_is_shared_between_processes(
    two_apps: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    one, two = two_apps
    admin = await signup(one)
    key = await make_key(one, admin["headers"], ["leads:read"], rate_limit_per_hour=4)
    statuses = []
    for i in range(6):
        r = await (one if i % 2 == 0 else two).get("/api/v1/leads", headers=_bearer(key))
        statuses.append(r.status_code)
    assert statuses == [200, 200, 200, 200, 429, 429]


# --- idempotency ----------------------------------------------------------------------------


async def _names(c: httpx.AsyncClient, headers: dict[str, str], name: str) -> list[str]:
    r = await c.get("/api/v1/leads", headers=headers, params={"q": name, "limit": 200})
    assert r.status_code == 200, r.text
    return [i["id"] for i in r.json()["items"] if i["full_name"] == name]


async def test_retried_post_returns_the_first_response(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    name = f"Idem {uuid.uuid4().hex[:8]}"
    headers = {**admin["headers"], "Idempotency-Key": "order-42"}
    first = await client.post("/api/v1/leads", headers=headers, json={"full_name": name})
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    second = await client.post("/api/v1/leads", headers=headers, json={"full_name": name})
    assert second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert second.headers["content-type"] == first.headers["content-type"]
    assert await _names(client, admin["headers"], name) == [first.json()["id"]]


async def test_same_key_with_another_body_is_422(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    headers = {**admin["headers"], "Idempotency-Key": "k-1"}
    r = await client.post("/api/v1/leads", headers=headers, json={"full_name": "First"})
    assert r.status_code == 201
    r = await client.post("/api/v1/leads", headers=headers, json={"full_name": "Second"})
    assert r.status_code == 422
    assert r.json()["code"] == "idempotency_key_reused"
    assert await _names(client, admin["headers"], "Second") == []


async def test_in_progress_duplicate_is_409(client: httpx.AsyncClient, database: Database) -> None:
    admin = await signup(client)
    name = f"Busy {uuid.uuid4().hex[:8]}"
    body = f'{{"full_name":"{name}"}}'.encode()
    from lovedcrm.core.idempotency import request_hash

    async with database.app_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO idempotency_keys (key_hash, request_hash, state, expires_at)"
                " VALUES (:k, :r, 'in_progress', now() + interval '5 minutes')"
            ),
            {
                "k": key_hash(admin["headers"]["Authorization"], "busy-1"),
                "r": request_hash("POST", "/api/v1/leads", b"", body),
            },
        )
    r = await client.post(
        "/api/v1/leads",
        headers={
            **admin["headers"],
            "Idempotency-Key": "busy-1",
            "content-type": "application/json",
        },
        content=body,
    )
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "idempotency_in_progress"
    assert await _names(client, admin["headers"], name) == []


async def test_expired_record_is_replaced(client: httpx.AsyncClient, database: Database) -> None:
    admin = await signup(client)
    async with database.app_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO idempotency_keys (key_hash, request_hash, state, response_status,"
                " response_headers, response_body, expires_at)"
                " VALUES (:k, 'old', 'completed', 201, '{}', 'stale', now() - interval '1 hour')"
            ),
            {"k": key_hash(admin["headers"]["Authorization"], "old-key")},
        )
    r = await client.post(
        "/api/v1/leads",
        headers={**admin["headers"], "Idempotency-Key": "old-key"},
        json={"full_name": "Fresh"},
    )
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    assert r.json()["full_name"] == "Fresh"


async def test_key_is_per_credential(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    key = await make_key(client, admin["headers"], ["leads:read", "leads:write"])
    name = f"Twice {uuid.uuid4().hex[:8]}"
    ids = set()
    for headers in (admin["headers"], _bearer(key)):
        r = await client.post(
            "/api/v1/leads",
            headers={**headers, "Idempotency-Key": "shared"},
            json={"full_name": name},
        )
        assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
        ids.add(r.json()["id"])
    # A retry by the key replays the key's own response.
    r = await client.post(
        "/api/v1/leads",
        headers={**_bearer(key), "Idempotency-Key": "shared"},
        json={"full_name": name},
    )
    assert r.headers["Idempotent-Replayed"] == "true" and r.json()["id"] in ids
    assert len(ids) == 2
    assert sorted(await _names(client, admin["headers"], name)) == sorted(ids)


async def test_invalid_idempotency_key_is_400(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    for bad in ("x" * 256, ""):
        r = await client.post(
            "/api/v1/leads",
            headers={**admin["headers"], "Idempotency-Key": bad},
            json={"full_name": "x"},
        )
        assert r.status_code == 400, bad
        assert r.json()["code"] == "invalid_idempotency_key"


async def test_failed_request_is_not_a_replay_of_nothing(client: httpx.AsyncClient) -> None:
    """A 4xx answer is stored like any other: the retry gets the same answer."""
    admin = await signup(client)
    headers = {**admin["headers"], "Idempotency-Key": "bad-body"}
    first = await client.post("/api/v1/leads", headers=headers, json={"nope": 1})
    assert first.status_code == 422
    second = await client.post("/api/v1/leads", headers=headers, json={"nope": 1})
    assert second.status_code == 422
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["code"] == first.json()["code"]


async def test_server_error_releases_the_key(settings: Settings, database: Database) -> None:
    """A 5xx (or an exception) is not stored: the retry runs for real."""
    app = create_app(settings, database=database)
    calls: list[int] = []

    @app.post("/api/v1/test-flaky", status_code=201)
    async def flaky() -> dict[str, int]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return {"calls": len(calls)}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        headers = {"Authorization": f"Bearer any-{uuid.uuid4().hex}", "Idempotency-Key": "f-1"}
        r = await c.post("/api/v1/test-flaky", headers=headers, json={})
        assert r.status_code == 500
        r = await c.post("/api/v1/test-flaky", headers=headers, json={})
        assert r.status_code == 201 and r.json() == {"calls": 2}
        r = await c.post("/api/v1/test-flaky", headers=headers, json={})
        assert r.status_code == 201 and r.headers["Idempotent-Replayed"] == "true"
        assert r.json() == {"calls": 2} and len(calls) == 2


async def test_leases_never_admit_more_than_the_limit_across_processes(
    two_apps: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    """Each process takes several requests of the budget at once (a lease) and spends them
    locally: still never more than the limit admitted in all, and only a few refused early."""
    one, two = two_apps
    admin = await signup(one)
    limit = 200
    key = await make_key(one, admin["headers"], ["leads:read"], rate_limit_per_hour=limit)
    admitted = 0
    for i in range(260):
        r = await (one if i % 3 else two).get("/api/v1/leads?limit=1", headers=_bearer(key))
        assert r.status_code in (200, 429), r.text
        admitted += r.status_code == 200
    assert admitted <= limit
    # unspent leases: each process holds at most an eighth of what was left when it leased
    assert admitted >= limit - 2 * (limit // 8)


async def test_one_process_leases_and_its_headers_stay_exact(
    client: httpx.AsyncClient, owner_url: str
) -> None:
    admin = await signup(client)
    key = await make_key(client, admin["headers"], ["leads:read"], rate_limit_per_hour=1000)
    for n in range(1, 41):
        r = await client.get("/api/v1/leads?limit=1", headers=_bearer(key))
        assert r.headers["RateLimit-Remaining"] == str(1000 - n)
    (listed,) = (await client.get("/api/v1/api-keys", headers=admin["headers"])).json()
    engine = create_async_engine(owner_url)
    async with engine.connect() as conn:
        counted = (
            await conn.execute(
                text("SELECT sum(count) FROM rate_limit_counters WHERE bucket = :b"),
                {"b": f"key:{listed['id']}"},
            )
        ).scalar_one()
    await engine.dispose()
    # the shared count runs ahead of the requests by the unspent part of the lease
    assert 40 < counted <= 40 + ratelimit.LEASE_MAX


async def test_a_burst_in_one_process_shares_its_leases(database: Database) -> None:
    """A hundred requests of one credential at once: those arriving while the lease is being
    taken wait for it, so the counter is written a handful of times, not once per request,
    and every request still gets its own place in the count."""
    bucket = f"test-burst:{uuid.uuid4().hex}"
    writes: list[str] = []

    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "rate_limit_counters" in statement and statement.lstrip().startswith("INSERT"):
            writes.append(statement)

    sync_engine = database.side_engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", _count)
    try:
        states = await asyncio.gather(
            *(ratelimit.hit(database.side_engine, bucket, 100_000, lease=True) for _ in range(100))
        )
    finally:
        event.remove(sync_engine, "before_cursor_execute", _count)
    assert sorted(s.count for s in states) == list(range(1, 101))
    # the first request alone (a credential's first lease is one request), then leases of 32
    assert len(writes) <= 1 + -(-99 // ratelimit.LEASE_MAX)
