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


async def _next(sub: Subscription, seconds: float = 5.0) -> dict[str, Any]:
    return await asyncio.wait_for(sub.queue.get(), seconds)


async def _next_of(sub: Subscription, kind: str, seconds: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        note = await _next(sub, max(0.01, deadline - time.monotonic()))
        if note["type"] == kind:
            return note


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
        note = await _next_of(sub, "lead.created")
        assert note["lead_id"] == lead_id and note["id"].startswith("evt_")
        assert "org" not in note
    with pytest.raises(TimeoutError):
        await _next(b1, 0.5)
    hub.unsubscribe(a1)
    assert a1 not in hub.subscribers[a["organization_id"]]


async def test_a_rolled_back_change_sends_nothing(client: httpx.AsyncClient, hub: LiveHub) -> None:
    a = await signup(client, full_name="Org A")
    sub = hub.subscribe(a["organization_id"])
    r = await client.post(
        "/api/v1/leads", headers=a["headers"], json={"full_name": "X", "phone": "not a phone"}
    )
    assert r.status_code == 422
    with pytest.raises(TimeoutError):
        await _next(sub, 0.5)


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
            for _ in range(120):
                assert proc.poll() is None, "server exited"
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
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

    return await asyncio.wait_for(find(), 10)


@pytest.mark.slow
async def test_sse_across_two_server_processes(servers: list[str]) -> None:
    one, two = servers
    async with httpx.AsyncClient(base_url=one, timeout=10) as c1:
        a = await signup(c1, full_name="Live A")
        b = await signup(c1, full_name="Live B")
        async with (
            httpx.AsyncClient(base_url=two, timeout=10) as c2,
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
                    assert "connected" in (await asyncio.wait_for(q.get(), 10))["comment"]
                started = time.monotonic()
                r = await c1.post(
                    "/api/v1/leads", headers=a["headers"], json={"full_name": "Ao vivo"}
                )
                assert r.status_code == 201, r.text
                event = await _wait(qa, "lead.created")  # server 2 saw server 1's commit
                assert time.monotonic() - started < 1.5
                data = json.loads(event["data"])
                assert data["lead_id"] == r.json()["id"] and event["id"] == data["id"]
                assert (await _wait(qa1, "lead.created"))["id"] == event["id"]
                await asyncio.sleep(0.3)
                assert all(i.get("event") != "lead.created" for i in _drain(qb))
            finally:
                for t in tasks:
                    t.cancel()
        r = await c1.get("/api/v1/events/stream")
        assert r.status_code == 401


def _drain(q: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    items = []
    while not q.empty():
        items.append(q.get_nowait())
    return items
