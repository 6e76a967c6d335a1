"""Issue 10, item 12: requests hung for 30 s while webhook deliveries to an unreachable host
timed out, in a server running its embedded worker.

The cause: the deliveries' DNS look-ups ran in asyncio's default thread pool (a handful of
threads: cpu count + 4). A resolver that hangs holds each thread for as long as it hangs —
giving up on the look-up (the delivery's timeout) does not free the thread — and a few
deliveries fill the pool. Everything else that needs that pool then waits: opening a database
connection to a host given by name (psycopg resolves it there), ``asyncio.to_thread`` (files,
mail). Requests waited for a connection, and so did the deliveries' own failure logging,
until their job's 30 s limit.

Now outbound look-ups run in the outbound guard's own threads (``core.outbound``), so a hung
resolver delays only outbound calls. The test holds more look-ups in the resolver than the
default pool has threads and shows, by order of events and not by time, that a request and
the default pool's work complete while every held look-up is still inside the resolver."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from lovedcrm.config import Settings
from lovedcrm.webhooks import jobs as webhook_jobs
from tests.factories import owner_sql, signup
from tests.fakes.dns import FakeDns

SLOW_HOST = "hooks.slow.example"


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDns]:
    fake = FakeDns(monkeypatch)
    yield fake
    fake.release_all()


def default_pool_size() -> int:
    """The default executor's threads (ThreadPoolExecutor's default on Python 3.11)."""
    return min(32, (os.cpu_count() or 1) + 4)


async def test_a_hung_resolver_never_delays_requests(
    client: httpx.AsyncClient, settings: Settings, dns: FakeDns, owner: sa.Engine
) -> None:
    data = await signup(client)
    h = data["headers"]
    r = await client.post(
        "/api/v1/api-keys", headers=h, json={"name": "hooks", "scopes": ["webhooks:manage"]}
    )
    assert r.status_code == 201, r.text
    url = f"https://{SLOW_HOST}/hook"
    r = await client.post(
        "/api/v1/webhooks",
        headers=h,
        json={"url": url, "events": ["lead.created"], "api_key_id": r.json()["id"]},
    )
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]

    held = dns.hold(SLOW_HOST)
    deliveries = [
        asyncio.create_task(webhook_jobs.send(settings, url, secret, f"evt_{i}", "{}"))
        for i in range(default_pool_size() + 2)
    ]
    # Every delivery has started its look-up once one of them is inside the resolver.
    for _ in range(3000):  # a guard against a hang, not a measure of speed
        if dns.entered:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("no delivery reached the resolver")

    loop = asyncio.get_running_loop()
    # What the database driver does to open a connection to a host given by name.
    resolved = await loop.getaddrinfo("localhost", 5432)
    returned_after_lookup = dns.returned
    # What asyncio.to_thread (file storage, mail) runs on.
    done = await loop.run_in_executor(None, lambda: "done")
    returned_after_thread = dns.returned
    # A request that queues deliveries to the slow host itself.
    r = await client.post("/api/v1/leads", headers=h, json={"full_name": "Rui Lento"})
    returned_after_request = dns.returned

    assert resolved and done == "done" and r.status_code == 201, r.text
    # All of it happened while the deliveries' look-ups were still held in the resolver:
    # none had returned, and nothing had let them go.
    assert (returned_after_lookup, returned_after_thread, returned_after_request) == (0, 0, 0)
    assert not held.is_set() and dns.entered >= 1

    held.set()
    attempts = await asyncio.gather(*deliveries)
    for attempt in attempts:
        assert not attempt.succeeded and not attempt.permanent
        assert attempt.error and f"DNS resolution of {SLOW_HOST}" in attempt.error
    # The delivery the request queued is this test's business only: no other test's worker
    # should run it.
    queued = owner_sql(
        owner,
        "DELETE FROM background_jobs WHERE organization_id = :o AND job_type = 'webhook.deliver'"
        " RETURNING id",
        o=data["organization_id"],
    )
    assert len(queued) == 1
