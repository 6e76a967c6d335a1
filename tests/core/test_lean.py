"""Lean handlers (core.lean): a hot route answers its common requests itself and leaves
everything else to FastAPI, so the answers are the same either way.

The leads list is the route that has one: for each request below, its answer with the lean
handler is compared with FastAPI's own (the lean handler made to decline), status, headers
that matter and body."""

from __future__ import annotations

import json
import re
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


# The lead create's bodies: the plain ones the lean handler answers, the odd ones it leaves to
# FastAPI (each sent with its Content-Type; a dict as JSON, text as it is).
CREATES: list[tuple[Any, str | None]] = [
    ({"full_name": "Lean Create"}, "application/json"),
    (
        {
            "full_name": "  Lean Inteira  ",
            "email": "LEAN@Example.com",
            "phone": "(11) 98765-4321",
            "company": "Padaria Lean",
            "job_title": "Sócia",
            "source": "site",
            "estimated_value": "1500.50",
            "probability_percentage": 40,
            "custom_fields": {},
        },
        "application/json",
    ),
    ({"full_name": "Lean Create", "email": "lean@example.com"}, "application/json"),  # 409
    (
        {"full_name": "Lean Again", "email": "lean@example.com", "allow_duplicate": True},
        "application/json",
    ),
    ({"full_name": ""}, "application/json"),
    ({"full_name": "x", "bogus": 1}, "application/json"),
    ({"full_name": "x", "stage_id": "not-a-uuid"}, "application/json"),
    ({"full_name": "x", "stage_id": "00000000-0000-0000-0000-000000000000"}, "application/json"),
    ({"full_name": "x", "estimated_value": -1}, "application/json"),
    ({"full_name": "x", "custom_fields": {"nope": 1}}, "application/json"),
    ({"full_name": "x", "email": "not an e-mail"}, "application/json"),
    ('{"full_name": "Lean Text"}', "application/json; charset=utf-8"),
    ('{"full_name": "Lean Plain"}', "text/plain"),
    ('{"full_name": "Lean None"}', None),
    ("not json", "application/json"),
    ("[]", "application/json"),
    ("null", "application/json"),
    ("", "application/json"),
    ('{"full_name": "\\ud800"}', "application/json"),
]

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_MOMENT = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"


async def _created(client: httpx.AsyncClient, body: Any, kind: str | None, auth: Any) -> Any:
    content = body if isinstance(body, str) else json.dumps(body)
    headers = {**auth, **({"Content-Type": kind} if kind else {})}
    r = await client.post("/api/v1/leads", headers=headers, content=content.encode())
    # Ids and moments differ from one organization to the other; the rest must not.
    text = re.sub(_MOMENT, "<moment>", re.sub(_UUID, "<id>", r.text))
    answer: Any = json.loads(text)
    if isinstance(answer, dict):
        answer.pop("request_id", None)
    return r.status_code, r.headers.get("content-type"), answer


async def test_the_lead_create_answers_the_same_with_or_without_its_lean_handler(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same bodies sent to two new organizations, one answered with the lean handler, the
    other with it made to decline: the same statuses and the same bodies."""
    answered = 0
    real = leads_api.json_body

    async def counting(request: Request, model: Any) -> Any:
        nonlocal answered
        found = await real(request, model)
        answered += found is not None
        return found

    async def declining(request: Request, model: Any) -> None:
        return None

    answers = []
    for handler in (counting, declining):
        admin = await signup(client, full_name="Ana Lean")
        monkeypatch.setattr(leads_api, "json_body", handler)
        answers.append([await _created(client, b, k, admin["headers"]) for b, k in CREATES])
    for (body, kind), lean_answer, full_answer in zip(CREATES, *answers, strict=True):
        assert lean_answer == full_answer, (body, kind)
    statuses = [status for status, _, _ in answers[0]]
    assert statuses[:4] == [201, 201, 409, 201] and statuses[4:11] == [422] * 7
    # Without Content-Type FastAPI refuses the body (strict content type), as text/plain.
    assert statuses[11:14] == [201, 422, 422] and statuses[14:] == [422] * 5
    # The lean handler read the plain JSON bodies that validate (six: the 409, an unknown
    # stage and an unknown custom field among them, refused by the service as FastAPI's
    # route would be); FastAPI the others, with its own errors.
    assert answered == 6
    lead = answers[0][1][2]
    assert lead["full_name"] == "Lean Inteira" and lead["email"] == "lean@example.com"
    assert lead["estimated_value"] == "1500.50" and lead["phone"] == "+5511987654321"


async def test_the_lean_create_refuses_as_the_route_does(client: httpx.AsyncClient) -> None:
    admin = await signup(client, full_name="Ana Lean")
    body = {"full_name": "Sem Chave"}
    assert (await client.post("/api/v1/leads", json=body)).status_code == 401
    key = await client.post(
        "/api/v1/api-keys", headers=admin["headers"], json={"name": "ro", "scopes": ["leads:read"]}
    )
    reader = {"Authorization": f"Bearer {key.json()['key']}"}
    r = await client.post("/api/v1/leads", json=body, headers=reader)
    assert r.status_code == 403 and "leads:write" in r.text
    listed = await client.get("/api/v1/leads", headers=admin["headers"])
    assert listed.json()["items"] == []
