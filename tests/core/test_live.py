"""Live updates: NOTIFY after commit -> the process's listener -> the organization's streams.

The SSE endpoint is read from real uvicorn servers (``lovedcrm serve`` subprocesses):
httpx's ASGITransport buffers a response until it ends, which a stream never does."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lovedcrm.core.live import LiveHub, Subscription, conninfo
from lovedcrm.db.engine import Database
from tests.factories import signup

LOVEDCRM = Path(sys.executable).parent / "lovedcrm"


# A safety net for notes that must arrive: generous, so only a lost note times out.
ARRIVAL_TIMEOUT = 30.0


async def _until(sub: Subscription, kind: str, lead_id: str) -> list[dict[str, Any]]:
    """The notes ``sub`` receives up to and including the ``kind`` note of ``lead_id``.

    Proves that something did NOT arrive by order rather than by waiting: the process's one
    LISTEN connection gets the notes in commit order and hands them to the queues in that
    order, so a note of an earlier commit would come before this one."""

    async def collect() -> list[dict[str, Any]]:
        notes = []
        while True:
            note = await sub.queue.get()
            notes.append(note)
            if note["type"] == kind and note.get("lead_id") == lead_id:
                return notes

    return await asyncio.wait_for(collect(), ARRIVAL_TIMEOUT)


@pytest.fixture
async def hub(database: Database) -> AsyncIterator[LiveHub]:
    live = LiveHub(conninfo(database.app_url))
    live.start()
    assert await live.wait_ready()
    yield live
    await live.stop()


async def test_events_reach_only_their_organization(
    client: httpx.AsyncClient, hub: LiveHub
) -> None:
    a = await signup(client, full_name="Org A")
    b = await signup(client, full_name="Org B")
    a1, a2 = hub.subscribe(a["organization_id"]), hub.subscribe(a["organization_id"])
    b1 = hub.subscribe(b["organization_id"])
    r = await client.post("/api/v1/leads", headers=a["headers"], json={"full_name": "Live"})
    assert r.status_code == 201
    lead_id = r.json()["id"]
    for sub in (a1, a2):
        note = (await _until(sub, "lead.created", lead_id))[-1]
        assert note["id"].startswith("evt_")
        assert "org" not in note
    # B's own later change reaches B, and A's, committed first, did not arrive before it.
    r = await client.post("/api/v1/leads", headers=b["headers"], json={"full_name": "Live B"})
    assert r.status_code == 201
    notes = await _until(b1, "lead.created", r.json()["id"])
    assert all(n.get("lead_id") != lead_id for n in notes), notes
    hub.unsubscribe(a1)
    assert a1 not in hub.subscribers[a["organization_id"]]


async def test_a_rolled_back_change_sends_nothing(client: httpx.AsyncClient, hub: LiveHub) -> None:
    a = await signup(client, full_name="Org A")
    sub = hub.subscribe(a["organization_id"])
    r = await client.post(
        "/api/v1/leads", headers=a["headers"], json={"full_name": "X", "phone": "not a phone"}
    )
    assert r.status_code == 422
    # The next change that commits is the first thing the stream hears of.
    r = await client.post("/api/v1/leads", headers=a["headers"], json={"full_name": "Y"})
    assert r.status_code == 201
    notes = await _until(sub, "lead.created", r.json()["id"])
    assert {n.get("lead_id") for n in notes} == {r.json()["id"]}, notes


def test_a_slow_subscriber_loses_the_oldest_and_gets_a_resync() -> None:
    async def run() -> None:
        sub = Subscription("org", size=3)
        for i in range(5):
            sub.offer({"type": "lead.updated", "id": str(i)})
        got = [sub.queue.get_nowait() for _ in range(3)]
        assert sub.dropped == 2
        assert got[-1] == {"type": "resync"}

    asyncio.run(run())


# --- over HTTP, against real servers ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(owner_url: str, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        "LOVEDCRM_DATABASE_URL": owner_url,
        "LOVEDCRM_DATA_DIR": str(data_dir),
        "LOVEDCRM_LOG_LEVEL": "WARNING",
        "LOVEDCRM_MAIL_BACKEND": "file",
        "LOVEDCRM_SECRET_KEY": "test-secret-key-0123456789abcdefghijklmnopqrstuv",
    }
    proc = subprocess.Popen(
        [str(LOVEDCRM), "serve", "--no-migrate", "--no-worker", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def servers(owner_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    procs = [_serve(owner_url, tmp_path_factory.mktemp("live")) for _ in range(2)]
    try:
        for proc, base in procs:
            deadline = time.monotonic() + 120  # a safety net: starting takes seconds
            while True:
                assert proc.poll() is None, "server exited"
                try:
                    if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"the server at {base} did not start"
                time.sleep(0.25)
        yield [base for _, base in procs]
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _events(response: httpx.Response, out: asyncio.Queue[dict[str, Any]]) -> None:
    event: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            out.put_nowait({"comment": line})
        elif not line:
            if event:
                out.put_nowait(event)
            event = {}
        else:
            key, _, value = line.partition(":")
            event[key] = value.strip()


async def _wait(out: asyncio.Queue[dict[str, Any]], event: str) -> dict[str, Any]:
    async def find() -> dict[str, Any]:
        while True:
            item = await out.get()
            if item.get("event") == event:
                return item

    return await asyncio.wait_for(find(), ARRIVAL_TIMEOUT)


async def _events_until(
    out: asyncio.Queue[dict[str, Any]], event: str, lead_id: str
) -> list[dict[str, Any]]:
    """The stream's items up to and including the ``event`` of ``lead_id`` (see _until)."""

    async def collect() -> list[dict[str, Any]]:
        items = []
        while True:
            item = await out.get()
            items.append(item)
            if item.get("event") == event and json.loads(item["data"])["lead_id"] == lead_id:
                return items

    return await asyncio.wait_for(collect(), ARRIVAL_TIMEOUT)


@pytest.mark.slow
async def test_sse_across_two_server_processes(servers: list[str]) -> None:
    one, two = servers
    async with httpx.AsyncClient(base_url=one, timeout=ARRIVAL_TIMEOUT) as c1:
        a = await signup(c1, full_name="Live A")
        b = await signup(c1, full_name="Live B")
        async with (
            httpx.AsyncClient(base_url=two, timeout=ARRIVAL_TIMEOUT) as c2,
            c2.stream("GET", "/api/v1/events/stream", headers=a["headers"]) as stream_a,
            c2.stream("GET", "/api/v1/events/stream", headers=b["headers"]) as stream_b,
            c1.stream("GET", "/api/v1/events/stream", headers=a["headers"]) as stream_a1,
        ):
            for s in (stream_a, stream_b, stream_a1):
                assert s.status_code == 200
                assert s.headers["content-type"].startswith("text/event-stream")
            qa: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            qb: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            qa1: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            tasks = [
                asyncio.create_task(_events(stream_a, qa)),
                asyncio.create_task(_events(stream_b, qb)),
                asyncio.create_task(_events(stream_a1, qa1)),
            ]
            try:
                for q in (qa, qb, qa1):  # subscribed: the first comment arrived
                    item = await asyncio.wait_for(q.get(), ARRIVAL_TIMEOUT)
                    assert "connected" in item["comment"]
                r = await c1.post(
                    "/api/v1/leads", headers=a["headers"], json={"full_name": "Ao vivo"}
                )
                assert r.status_code == 201, r.text
                event = await _wait(qa, "lead.created")  # server 2 saw server 1's commit
                data = json.loads(event["data"])
                assert data["lead_id"] == r.json()["id"] and event["id"] == data["id"]
                assert (await _wait(qa1, "lead.created"))["id"] == event["id"]
                # B's stream gets B's later lead, and A's (committed first) not before it.
                rb = await c1.post(
                    "/api/v1/leads", headers=b["headers"], json={"full_name": "Ao vivo B"}
                )
                assert rb.status_code == 201, rb.text
                items = await _events_until(qb, "lead.created", rb.json()["id"])
                assert all(event["id"] != i.get("id") for i in items), items
                assert all(data["lead_id"] not in i.get("data", "") for i in items), items
            finally:
                for t in tasks:
                    t.cancel()
        r = await c1.get("/api/v1/events/stream")
        assert r.status_code == 401
