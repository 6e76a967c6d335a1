"""The job engine: transactional enqueue, exactly-once effects, retries, leases after a
SIGKILL, SIGTERM release, periodic jobs, fairness between organizations."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

import tests.jobs.handlers  # registers the test job types
from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.jobs.engine import Worker, run_until_idle
from lovedcrm.jobs.periodic import Periodic, enqueue_due, period_start
from lovedcrm.jobs.queue import BULK_PRIORITY, enqueue
from tests.factories import owner_sql, signup

ROOT = Path(__file__).resolve().parents[2]


async def new_org(client: httpx.AsyncClient) -> uuid.UUID:
    return uuid.UUID((await signup(client))["organization_id"])


async def enqueue_many(
    database: Database, org: uuid.UUID | None, n: int, tag: str, **payload: Any
) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    async with tenant_transaction(database.sessionmaker, org) as session:
        for _ in range(n):
            job_id = await enqueue(
                session, "test.record", {"tag": tag, **payload}, organization_id=org
            )
            assert job_id is not None
            ids.append(job_id)
    return ids


def runs_of(engine: sa.Engine, tag: str) -> list[str]:
    rows = owner_sql(
        engine,
        "SELECT event_data->>'job_id' FROM analytics_events"
        " WHERE event_type = 'test_job' AND event_data->>'tag' = :t",
        t=tag,
    )
    return [r[0] for r in rows]


async def test_job_runs_once_after_commit(
    client: httpx.AsyncClient, database: Database, settings: Settings, owner: sa.Engine
) -> None:
    org = await new_org(client)
    tag = uuid.uuid4().hex
    [job_id] = await enqueue_many(database, org, 1, tag)
    assert await run_until_idle(database, settings, types=["test.record"]) >= 1
    assert runs_of(owner, tag) == [str(job_id)]
    [(status, attempts, completed_at)] = owner_sql(
        owner, "SELECT status, attempts, completed_at FROM background_jobs WHERE id = :i", i=job_id
    )
    assert status == "completed" and attempts == 1 and completed_at is not None
    # Running again finds nothing: the effects happened once.
    await run_until_idle(database, settings, types=["test.record"])
    assert runs_of(owner, tag) == [str(job_id)]


async def test_job_enqueued_in_rolled_back_transaction_never_runs(
    client: httpx.AsyncClient, database: Database, settings: Settings, owner: sa.Engine
) -> None:
    org = await new_org(client)
    tag = uuid.uuid4().hex

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with tenant_transaction(database.sessionmaker, org) as session:
            job_id = await enqueue(session, "test.record", {"tag": tag}, organization_id=org)
            raise Boom
    await run_until_idle(database, settings, types=["test.record"])
    assert runs_of(owner, tag) == []
    assert (
        owner_sql(owner, "SELECT count(*) FROM background_jobs WHERE id = :i", i=job_id)[0][0] == 0
    )


async def test_retries_then_succeeds_and_failure_is_recorded(
    client: httpx.AsyncClient, database: Database, settings: Settings, owner: sa.Engine
) -> None:
    org = await new_org(client)
    tag = uuid.uuid4().hex
    [flaky] = await enqueue_many(database, org, 1, tag, fail_until_attempt=2)
    for _ in range(3):
        await run_until_idle(database, settings, types=["test.record"])
    [(status, attempts)] = owner_sql(
        owner, "SELECT status, attempts FROM background_jobs WHERE id = :i", i=flaky
    )
    assert (status, attempts) == ("completed", 3)
    assert runs_of(owner, tag) == [str(flaky)]

    async with tenant_transaction(database.sessionmaker, org) as session:
        boom = await enqueue(
            session, "test.boom", {"message": "the provider said no"}, organization_id=org
        )
    await run_until_idle(database, settings, types=["test.boom"])
    [(status, attempts, scheduled_for, failed_at)] = owner_sql(
        owner,
        "SELECT status, attempts, scheduled_for, updated_at FROM background_jobs WHERE id = :i",
        i=boom,
    )
    assert status == "retrying" and attempts == 1
    # Backoff: the retry is due 2 s × U(0.5, 1.5) after the failure was recorded.
    assert timedelta(seconds=1) <= scheduled_for - failed_at <= timedelta(seconds=3)
    owner_sql(
        owner, "UPDATE background_jobs SET scheduled_for = now() WHERE id = :i RETURNING id", i=boom
    )
    await run_until_idle(database, settings, types=["test.boom"])
    [(status, attempts, error)] = owner_sql(
        owner, "SELECT status, attempts, error_message FROM background_jobs WHERE id = :i", i=boom
    )
    assert status == "failed" and attempts == 2 and "the provider said no" in error


async def test_permanent_failure_and_bad_payload_fail_at_once(
    client: httpx.AsyncClient, database: Database, settings: Settings, owner: sa.Engine
) -> None:
    org = await new_org(client)
    [job] = await enqueue_many(database, org, 1, uuid.uuid4().hex, permanent=True)
    await run_until_idle(database, settings, types=["test.record"])
    assert owner_sql(owner, "SELECT status, attempts FROM background_jobs WHERE id = :i", i=job)[
        0
    ] == (
        "failed",
        1,
    )
    bad = uuid.uuid4()
    owner_sql(
        owner,
        "INSERT INTO background_jobs (id, organization_id, job_type, job_data) "
        "VALUES (:i, :o, 'test.record', '{\"nope\": 1}') RETURNING id",
        i=bad,
        o=org,
    )
    await run_until_idle(database, settings, types=["test.record"])
    [(status, error)] = owner_sql(
        owner, "SELECT status, error_message FROM background_jobs WHERE id = :i", i=bad
    )
    assert status == "failed" and "invalid payload" in error


def start_worker(owner_url: str, **env: str) -> subprocess.Popen[str]:
    """A worker in its own process; its log goes to var/test-worker-<pid>.log for post-mortems."""
    (ROOT / "var").mkdir(exist_ok=True)
    log = open(ROOT / "var" / f"test-worker-{uuid.uuid4().hex[:8]}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.jobs.worker_proc"],
        cwd=ROOT,
        env={**os.environ, "LOVEDCRM_DATABASE_URL": owner_url, **env},
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


async def test_worker_killed_mid_job_leaves_it_to_another_which_completes_it_once(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    owner: sa.Engine,
    owner_url: str,
) -> None:
    org = await new_org(client)
    tag = uuid.uuid4().hex
    proc = start_worker(owner_url, WORKER_LEASE="600")
    try:
        [job] = await enqueue_many(database, org, 1, tag, sleep_first_attempt=60)
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=30)
        assert line.strip() == f"started {job}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (
        owner_sql(owner, "SELECT status FROM background_jobs WHERE id = :i", i=job)[0][0]
        == "running"
    )
    assert runs_of(owner, tag) == []
    # Until the lease expires nobody else may take it.
    assert await run_until_idle(database, settings, types=["test.record"]) == 0
    # The lease runs out (its end moved to the past rather than waited for).
    owner_sql(
        owner,
        "UPDATE background_jobs SET locked_until = now() - interval '1 second'"
        " WHERE id = :i RETURNING id",
        i=job,
    )
    assert await run_until_idle(database, settings, types=["test.record"]) == 1
    [(status, attempts)] = owner_sql(
        owner, "SELECT status, attempts FROM background_jobs WHERE id = :i", i=job
    )
    assert (status, attempts) == ("completed", 2)
    assert runs_of(owner, tag) == [str(job)]


async def test_two_workers_run_ten_thousand_jobs_each_exactly_once(
    client: httpx.AsyncClient, database: Database, owner: sa.Engine, owner_url: str
) -> None:
    org = await new_org(client)
    tag = uuid.uuid4().hex
    workers = [start_worker(owner_url, WORKER_CONCURRENCY="8") for _ in range(2)]
    try:
        ids: list[uuid.UUID] = []
        for _ in range(10):  # enqueued while the workers run, in ten transactions
            ids += await enqueue_many(database, org, 1000, tag)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            left = owner_sql(
                owner,
                "SELECT count(*) FROM background_jobs"
                " WHERE id = ANY(:ids) AND status <> 'completed'",
                ids=ids,
            )[0][0]
            if left == 0:
                break
            await asyncio.sleep(0.5)
        assert left == 0, f"{left} jobs left; worker logs in var/test-worker-*.log"
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(timeout=60)
    runs = runs_of(owner, tag)
    assert len(runs) == 10_000
    assert set(runs) == {str(i) for i in ids}
    lockers = owner_sql(
        owner,
        "SELECT count(DISTINCT locked_by) FROM background_jobs WHERE id = ANY(:ids)",
        ids=ids,
    )[0][0]
    assert lockers == 0  # every lease released on completion


async def test_sigterm_releases_jobs_it_cannot_finish(
    client: httpx.AsyncClient, database: Database, owner: sa.Engine, owner_url: str
) -> None:
    org = await new_org(client)
    tag = uuid.uuid4().hex
    proc = start_worker(owner_url, WORKER_GRACE="1")
    try:
        [job] = await enqueue_many(database, org, 1, tag, sleep_first_attempt=60)
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=30)
        assert line.strip() == f"started {job}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    [(status, attempts, locked_by)] = owner_sql(
        owner, "SELECT status, attempts, locked_by FROM background_jobs WHERE id = :i", i=job
    )
    assert (status, attempts, locked_by) == ("pending", 0, None)
    assert runs_of(owner, tag) == []
    owner_sql(owner, "DELETE FROM background_jobs WHERE id = :i RETURNING id", i=job)


async def test_periodic_job_is_enqueued_once_per_period(
    database: Database, settings: Settings, owner: sa.Engine
) -> None:
    item = Periodic(f"t-{uuid.uuid4().hex[:8]}", "noop", timedelta(hours=1))
    # Five minutes into the current period, so "a minute later" is always the same period.
    now = period_start(datetime.now(UTC), item.every) + timedelta(minutes=5)
    created = await asyncio.gather(*(enqueue_due(database, now, (item,)) for _ in range(5)))
    assert sum(created) == 1
    assert await enqueue_due(database, now + timedelta(minutes=1), (item,)) == 0
    assert await enqueue_due(database, now + timedelta(hours=1), (item,)) == 1
    key = f"periodic:{item.name}:{period_start(now, item.every).isoformat()}"
    assert (
        owner_sql(owner, "SELECT count(*) FROM background_jobs WHERE dedupe_key = :k", k=key)[0][0]
        == 1
    )


async def test_one_big_organization_does_not_starve_the_others(
    client: httpx.AsyncClient, database: Database, settings: Settings, owner: sa.Engine
) -> None:
    big, small = await new_org(client), await new_org(client)
    for org, n in ((big, 3000), (small, 5)):
        async with tenant_transaction(database.sessionmaker, org) as session:
            for i in range(n):
                await enqueue(session, "test.fair", {"n": i}, organization_id=org)
    worker = Worker(database, settings, run_periodic=False, types=["test.fair"])
    first = await worker.claim(10)
    by_org: dict[uuid.UUID | None, int] = {}
    for job in first:
        by_org[job.organization_id] = by_org.get(job.organization_id, 0) + 1
    # The small organization's jobs, enqueued after 3,000 others, get half of the first claim.
    assert by_org == {big: 5, small: 5}
    await asyncio.gather(*(worker.execute(j) for j in first))
    owner_sql(owner, "DELETE FROM background_jobs WHERE job_type = 'test.fair' RETURNING id")


async def test_interactive_jobs_are_claimed_before_every_organizations_bulk_backlog(
    client: httpx.AsyncClient, database: Database, settings: Settings, owner: sa.Engine
) -> None:
    """A nightly fan-out queues bulk work for every organization a moment before someone's
    webhook delivery: the delivery is claimed first, not after the others' backlog."""
    busy = [await new_org(client) for _ in range(3)]
    for org in busy:
        async with tenant_transaction(database.sessionmaker, org) as session:
            for i in range(3):
                await enqueue(
                    session, "test.fair", {"n": i}, organization_id=org, priority=BULK_PRIORITY
                )
    late = await new_org(client)
    async with tenant_transaction(database.sessionmaker, late) as session:
        await enqueue(session, "test.fair", {"n": 0}, organization_id=late)
    worker = Worker(database, settings, run_periodic=False, types=["test.fair"])
    try:
        first = await worker.claim(1)
        assert [job.organization_id for job in first] == [late]
        # With the interactive work claimed, the bulk work is shared out as before.
        rest = await worker.claim(3)
        assert sorted(str(job.organization_id) for job in rest) == sorted(map(str, busy))
        await asyncio.gather(*(worker.execute(j) for j in [*first, *rest]))
    finally:
        owner_sql(owner, "DELETE FROM background_jobs WHERE job_type = 'test.fair' RETURNING id")


async def test_system_jobs_run_one_at_a_time_per_worker(
    client: httpx.AsyncClient, database: Database, settings: Settings, owner: sa.Engine
) -> None:
    """Several periodic schedulers due at once (a worker starting) take one slot, not all:
    an organization's job queued after them is claimed beside the first."""
    async with tenant_transaction(database.sessionmaker, None) as session:
        for i in range(3):
            await enqueue(session, "test.fair", {"n": i}, organization_id=None)
    org = await new_org(client)
    async with tenant_transaction(database.sessionmaker, org) as session:
        await enqueue(session, "test.fair", {"n": 9}, organization_id=org)
    worker = Worker(database, settings, run_periodic=False, types=["test.fair"])
    try:
        first = await worker.claim(8)
        assert sorted(str(j.organization_id) for j in first) == sorted([str(org), "None"])
        assert await worker.claim(8) == []  # the running system job holds the system share
        await asyncio.gather(*(worker.execute(j) for j in first))
        second = await worker.claim(8)
        assert [j.organization_id for j in second] == [None]
        await asyncio.gather(*(worker.execute(j) for j in second))
    finally:
        owner_sql(owner, "DELETE FROM background_jobs WHERE job_type = 'test.fair' RETURNING id")


async def test_jobs_api_counts_failures_and_retries(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    admin = await signup(client)
    org = uuid.UUID(admin["organization_id"])
    async with tenant_transaction(database.sessionmaker, org) as session:
        job = await enqueue(
            session, "test.boom", {"message": "nope"}, organization_id=org, max_attempts=1
        )
    await run_until_idle(database, settings, types=["test.boom"])
    r = await client.get("/api/v1/jobs/stats", headers=admin["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["by_type"]["test.boom"]["failed"] == 1
    r = await client.get("/api/v1/jobs?status=failed", headers=admin["headers"])
    [item] = r.json()["items"]
    assert item["id"] == str(job) and "nope" in item["error_message"]
    r = await client.post(f"/api/v1/jobs/{job}/retry", headers=admin["headers"])
    assert r.status_code == 200 and r.json()["status"] == "pending"
    r = await client.post(f"/api/v1/jobs/{job}/retry", headers=admin["headers"])
    assert r.status_code == 409
    other = await signup(client)
    r = await client.post(f"/api/v1/jobs/{job}/retry", headers=other["headers"])
    assert r.status_code == 404


async def test_a_failing_job_in_a_batch_does_not_lose_or_double_the_others(
    client: httpx.AsyncClient, database: Database, settings: Settings, owner: sa.Engine
) -> None:
    org = await new_org(client)
    tag = uuid.uuid4().hex
    async with tenant_transaction(database.sessionmaker, org) as session:
        ids = [
            await enqueue(session, "test.batch", {"tag": tag, "fail": i == 4}, organization_id=org)
            for i in range(10)
        ]
    worker = Worker(database, settings, run_periodic=False, types=["test.batch"])
    claimed = await worker.claim(10)
    chunks = worker._chunks(claimed)
    assert [len(c) for c in chunks] == [10]  # one transaction for the ten
    await worker.execute_chunk(chunks[0])
    runs = runs_of(owner, tag)
    assert sorted(runs) == sorted(str(i) for i in ids if i != ids[4])  # each good job once
    statuses = dict(
        owner_sql(owner, "SELECT id, status FROM background_jobs WHERE id = ANY(:ids)", ids=ids)
    )
    assert statuses.pop(ids[4]) == "failed"
    assert set(statuses.values()) == {"completed"}


async def test_a_job_takes_its_connection_at_its_first_statement(
    client: httpx.AsyncClient, database: Database, settings: Settings, owner: sa.Engine
) -> None:
    """A handler that waits on the network before it reads holds no pooled connection while
    it waits (webhook deliveries to dead hosts must not drain the pool); its first statement
    still runs in the job's tenant."""
    org = await new_org(client)
    async with tenant_transaction(database.sessionmaker, org) as session:
        job_id = await enqueue(session, "test.pool_probe", {"tag": "x"}, organization_id=org)
    await run_until_idle(database, settings, types=["test.pool_probe"], concurrency=1)
    [(status, result)] = owner_sql(
        owner, "SELECT status, result_data FROM background_jobs WHERE id = :i", i=job_id
    )
    assert status == "completed", result
    assert result["org"] == str(org)
    assert result["after"] == result["before"] + 1


async def test_bulk_jobs_leave_a_slot_for_interactive_work(
    client: httpx.AsyncClient, database: Database, settings: Settings, owner: sa.Engine
) -> None:
    """Long bulk jobs (a marketing send, a nightly fan-out) hold at most all slots but one:
    an interactive job queued while they run is claimed into the slot kept for it."""
    gates = tests.jobs.handlers
    gates.GATE.clear()
    gates.GATE_ENTERED.clear()
    org = await new_org(client)
    async with tenant_transaction(database.sessionmaker, org) as session:
        for i in range(6):
            await enqueue(
                session, "test.gate", {"n": i}, organization_id=org, priority=BULK_PRIORITY
            )
    worker = Worker(
        database, settings, run_periodic=False, types=["test.gate"], concurrency=3, poll_seconds=0.2
    )
    running = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(60):  # the bulk jobs take the slots they may take
            await gates.gate_entered(lambda started: len(started) >= 2)
        async with tenant_transaction(database.sessionmaker, org) as session:
            await enqueue(session, "test.gate", {"n": 100}, organization_id=org)
        async with asyncio.timeout(60):  # the interactive job starts beside them
            await gates.gate_entered(lambda started: 100 in started)
        assert len([n for n in gates.GATE_ENTERED if n < 100]) == 2  # never the third slot
        gates.GATE.set()
        async with asyncio.timeout(60):  # the rest of the bulk work runs in turn
            await gates.gate_entered(lambda started: len(started) == 7)
    finally:
        gates.GATE.set()
        worker.stop()
        await running
        owner_sql(owner, "DELETE FROM background_jobs WHERE job_type = 'test.gate' RETURNING id")


async def test_a_claim_takes_no_more_bulk_jobs_than_its_cap(
    client: httpx.AsyncClient, database: Database, settings: Settings, owner: sa.Engine
) -> None:
    org = await new_org(client)
    async with tenant_transaction(database.sessionmaker, org) as session:
        for i in range(4):
            await enqueue(
                session, "test.fair", {"n": i}, organization_id=org, priority=BULK_PRIORITY
            )
        await enqueue(session, "test.fair", {"n": 9}, organization_id=org)
    worker = Worker(database, settings, run_periodic=False, types=["test.fair"])
    try:
        first = await worker.claim(8, bulk_limit=1)
        assert sorted(job.bulk for job in first) == [False, True]
        assert await worker.claim(8, bulk_limit=0) == []
        rest = await worker.claim(8)  # no cap
        assert len(rest) == 3 and all(job.bulk for job in rest)
        await asyncio.gather(*(worker.execute(j) for j in [*first, *rest]))
    finally:
        owner_sql(owner, "DELETE FROM background_jobs WHERE job_type = 'test.fair' RETURNING id")
