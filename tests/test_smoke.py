from __future__ import annotations

import httpx

from tests.factories import signup


async def test_healthz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert r.headers["x-request-id"]


async def test_readyz_reports_head(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["migrations"]["current"] == r.json()["migrations"]["head"]


async def test_signup_and_me(client: httpx.AsyncClient) -> None:
    data = await signup(client)
    r = await client.get("/api/v1/auth/me", headers=data["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "admin"
