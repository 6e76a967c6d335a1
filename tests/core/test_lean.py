"""Lean handlers (core.lean): a hot route answers its common requests itself and leaves
everything else to FastAPI, so the answers are the same either way.

The leads list is the route that has one: for each request below, its answer with the lean
handler is compared with FastAPI's own (the lean handler made to decline), status, headers
that matter and body."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Query, Request, Response

from lovedcrm.core.lean import LeanRoute, lean, single_values
from lovedcrm.leads import api as leads_api
from tests.factories import create_lead, signup


async def test_a_lean_handler_answers_or_hands_over() -> None:
    router = APIRouter(route_class=LeanRoute)
    seen: list[str] = []

    async def quick(request: Request) -> Response | None:
        given = single_values(request, frozenset({"n"}))
        if given is None or given.get("n") != "1":
            return None
        seen.append("lean")
        return Response("lean")

    @router.get("/thing")
    @lean(quick)
    async def thing(n: int = Query(0, ge=0, le=5)) -> dict[str, int]:
        seen.append("full")
        return {"n": n}

    app = FastAPI()
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/thing?n=1")).text == "lean"
        assert (await client.get("/thing?n=2")).json() == {"n": 2}
        # Repeated or empty: FastAPI's rules, whatever they are.
        assert (await client.get("/thing?n=1&n=1")).json() == {"n": 1}
        assert (await client.get("/thing?n=")).status_code in (200, 422)
        assert (await client.get("/thing?n=9")).status_code == 422
    assert seen[:3] == ["lean", "full", "full"]
    # The documented parameters are the endpoint's, lean handler or not.
    params = app.openapi()["paths"]["/thing"]["get"]["parameters"]
    assert [p["name"] for p in params] == ["n"]


QUERIES = [
    "",
    "limit=2",
    "limit=200",
    "limit=201",
    "limit=0",
    "limit=007",
    "limit=+5",
    "limit= 5",
    "limit=abc",
    "limit=3&limit=4",
    "limit=",
    "fields=id,full_name",
    "fields=id,full_name,id",
    "fields=id,nope",
    "fields=id%0A",
    "fields=",
    "sort=full_name",
    "sort=-lead_score&limit=3",
    "sort=stage",
    "sort=bogus",
    "status=active",
    "status=ACTIVE",
    "q=ana",
    "q=ana&sort=relevance",
    "q=" + "x" * 201,
    "source=whatsapp",
    "source=" + "s" * 101,
    "stage_id=not-a-uuid",
    "stage_id=00000000-0000-0000-0000-000000000000",
    "assigned_to=00000000000000000000000000000000",
    "score_min=10",
    "created_after=2020-01-01T00:00:00Z",
    "cursor=garbage",
    "limit=2&unknown=1",
]


@pytest.fixture
async def leads_of(client: httpx.AsyncClient) -> dict[str, Any]:
    admin = await signup(client, full_name="Ana Lean")
    for name, source in [
        ("Ana Paula", "whatsapp"),
        ("Bruno Ana", "site"),
        ("Carla", "whatsapp"),
        ("Diego", None),
    ]:
        lead = await create_lead(client, admin["headers"], full_name=name, source=source)
    r = await client.patch(
        f"/api/v1/leads/{lead['id']}", headers=admin["headers"], json={"status": "inactive"}
    )
    assert r.status_code == 200, r.text
    return admin


async def _answer(client: httpx.AsyncClient, query: str, headers: dict[str, str]) -> Any:
    r = await client.get(f"/api/v1/leads?{query}", headers=headers)
    body: Any = r.json()
    if isinstance(body, dict):
        body.pop("request_id", None)
    return r.status_code, r.headers.get("content-type"), body


async def test_the_leads_list_answers_the_same_with_or_without_its_lean_handler(
    client: httpx.AsyncClient, leads_of: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = leads_of["headers"]
    key = await client.post(
        "/api/v1/api-keys", headers=headers, json={"name": "lean", "scopes": ["leads:read"]}
    )
    assert key.status_code == 201, key.text
    by_key = {"Authorization": f"Bearer {key.json()['key']}"}
    answered = 0
    real = leads_api._lean_arguments

    def counting(request: Request) -> dict[str, Any] | None:
        nonlocal answered
        found = real(request)
        answered += found is not None
        return found

    for credentials in (headers, by_key):
        lean_answers = []
        monkeypatch.setattr(leads_api, "_lean_arguments", counting)
        for query in QUERIES:
            lean_answers.append(await _answer(client, query, credentials))
        monkeypatch.setattr(leads_api, "_lean_arguments", lambda request: None)
        for query, lean_answer in zip(QUERIES, lean_answers, strict=True):
            assert await _answer(client, query, credentials) == lean_answer, query
    # The common requests were answered by the lean handler, the odd ones by FastAPI.
    assert 2 * 12 <= answered < 2 * len(QUERIES)
    statuses = {q: a[0] for q, a in zip(QUERIES, lean_answers, strict=True)}
    assert statuses["limit=2"] == 200 and statuses["limit=201"] == 422
    assert statuses["fields=id,nope"] == 422 and statuses["stage_id=not-a-uuid"] == 422


async def test_the_lean_list_refuses_as_the_route_does(
    client: httpx.AsyncClient, leads_of: dict[str, Any]
) -> None:
    assert (await client.get("/api/v1/leads?limit=2")).status_code == 401
    bad = {"Authorization": "Bearer lcrm_nope_nope"}
    assert (await client.get("/api/v1/leads?limit=2", headers=bad)).status_code == 401
    key = await client.post(
        "/api/v1/api-keys",
        headers=leads_of["headers"],
        json={"name": "no read", "scopes": ["members:read"]},
    )
    writer = {"Authorization": f"Bearer {key.json()['key']}"}
    r = await client.get("/api/v1/leads?limit=2", headers=writer)
    assert r.status_code == 403 and "leads:read" in r.text


async def test_the_lean_list_knows_every_parameter_the_route_declares(
    client: httpx.AsyncClient,
) -> None:
    """A parameter added to the route but unknown to its lean handler would be ignored by it."""
    spec = (await client.get("/openapi.json")).json()
    declared = {p["name"] for p in spec["paths"]["/api/v1/leads"]["get"]["parameters"]}
    assert declared == leads_api._LIST_PARAMETERS
