"""Search: one box across name, e-mail, phone and company, insensitive to accents and
tolerant of typos (unaccent + pg_trgm); a phone in any format finds its E.164 form."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import signup


@pytest.fixture
async def org(client: httpx.AsyncClient) -> dict[str, Any]:
    data = await signup(client, full_name="Admin Search")
    h = data["headers"]
    leads = {}
    for key, body in {
        "joao": {"full_name": "João Silva", "email": "js@example.com"},
        "maria": {"full_name": "Maria Conceição", "phone": "+5511987654321"},
        "acucar": {"full_name": "Pedro Lima", "company": "Açúcar União"},
        "other": {
            "full_name": "Beatriz Rocha",
            "company": "Ferragens Ltda",
            "phone": "+5521912345678",
        },
    }.items():
        r = await client.post("/api/v1/leads", headers=h, json=body)
        assert r.status_code == 201, r.text
        leads[key] = r.json()["id"]
    return {"h": h, "ids": leads}


async def _found(c: httpx.AsyncClient, org: dict[str, Any], q: str) -> set[str]:
    r = await c.get("/api/v1/leads", headers=org["h"], params={"q": q})
    assert r.status_code == 200, r.text
    names = {v: k for k, v in org["ids"].items()}
    return {names[i["id"]] for i in r.json()["items"]}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("joao", {"joao"}),
        ("JOÃO", {"joao"}),
        ("Joao Silvaa", {"joao"}),  # a typo
        ("joao silva", {"joao"}),
        ("conceicao", {"maria"}),
        ("Maria Concicao", {"maria"}),
        ("acucar", {"acucar"}),
        ("açucar uniao", {"acucar"}),
        ("js@example", {"joao"}),
        ("(11) 98765-4321", {"maria"}),
        ("11987654321", {"maria"}),
        ("+55 11 98765 4321", {"maria"}),
        ("zzzz", set()),
    ],
)
async def test_search(
    client: httpx.AsyncClient, org: dict[str, Any], q: str, expected: set[str]
) -> None:
    assert await _found(client, org, q) == expected


async def test_search_stays_in_the_organization(
    client: httpx.AsyncClient, org: dict[str, Any]
) -> None:
    other = await signup(client, full_name="Other")
    r = await client.get("/api/v1/leads", headers=other["headers"], params={"q": "joao"})
    assert r.status_code == 200 and r.json()["items"] == []
