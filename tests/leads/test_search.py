"""Search: one box across name, e-mail, phone and company, insensitive to accents and
tolerant of a typo in each word (one letter missing, extra, changed or two swapped); a phone
in any format finds its E.164 form. Results come by relevance: as typed first, then with
typos, newest first within each."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import create_lead, join, login, signup


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
        "mariana": {"full_name": "Mariana Alves"},
        "fernanda": {"full_name": "Fernanda Queiroz", "company": "Padaria Pão Quente"},
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
        # A typo in a word: a letter missing, extra, changed, or two letters swapped.
        ("Marana", {"mariana"}),
        ("Fernada", {"fernanda"}),
        ("fernadna", {"fernanda"}),
        ("Quiroz", {"fernanda"}),
        ("mariana alvez", {"mariana"}),
        ("fernanda padaira", {"fernanda"}),  # name and company
        # Unrelated words find nothing, typo or not.
        ("Xilofone", set()),
        ("banana", set()),
        ("mariana rocha", set()),  # every word must be there
        # Under three characters there is no trigram to look up: still found as typed.
        ("jo", {"joao"}),
        ("Ç", {"joao", "maria", "acucar", "other"}),  # a "c" anywhere, the e-mail's too
        ("%", set()),  # LIKE's wildcards are plain characters
        ("_", set()),
        # Characters that mean something to a text-search query are plain characters too.
        ("o'b", set()),
        ("a & b | !c", set()),
        ("js@exam", {"joao"}),
        ("o s", {"joao"}),  # across the words of the name
        ("example.com", {"joao"}),
        ("4321", {"maria"}),  # a short run of digits is found as typed in the phone
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


async def _order(c: httpx.AsyncClient, h: dict[str, str], **params: Any) -> list[str]:
    r = await c.get("/api/v1/leads", headers=h, params=params)
    assert r.status_code == 200, r.text
    return [i["full_name"] for i in r.json()["items"]]


async def test_relevance_as_typed_first_then_typos_newest_first(
    client: httpx.AsyncClient,
) -> None:
    h = (await signup(client, full_name="Admin Relevance"))["headers"]
    for name in ("Mariana Souza", "Marana Lima", "Mariana Dias", "Ana Marana", "Pedro Reis"):
        await create_lead(client, h, full_name=name)
    # As typed (a substring of the name) first, then within one typo; newest first in each.
    expected = ["Ana Marana", "Marana Lima", "Mariana Dias", "Mariana Souza"]
    assert await _order(client, h, q="marana") == expected
    # Page by page, the same order (the cursor carries the rank).
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"q": "marana", "limit": 1}
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/api/v1/leads", headers=h, params=params)
        assert r.status_code == 200, r.text
        seen += [i["full_name"] for i in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    # Another order when asked for; relevance without a search is newest first.
    assert await _order(client, h, q="marana", sort="full_name") == sorted(expected)
    assert (await _order(client, h, sort="relevance"))[0] == "Pedro Reis"


async def test_every_word_exact_in_another_order_is_as_typed(client: httpx.AsyncClient) -> None:
    h = (await signup(client, full_name="Admin Words"))["headers"]
    await create_lead(client, h, full_name="Silva Joana")
    await create_lead(client, h, full_name="Joao Silva")
    await create_lead(client, h, full_name="Joao Silveira")
    await create_lead(client, h, full_name="Joao Silvo")  # newest, one typo away
    assert await _order(client, h, q="silva joao") == ["Joao Silva", "Joao Silvo"]
    # "Silva Joana" has the text as typed; the others one typo per word (joan/joao).
    assert await _order(client, h, q="silva joan") == ["Silva Joana", "Joao Silvo", "Joao Silva"]


async def test_the_same_page_shape_for_other_members_and_organizations_shows_their_own(
    client: httpx.AsyncClient,
) -> None:
    """A page's statement is built once per shape and reused with other values: two
    salespeople (each seeing only their leads), their admin and another organization asking
    the same search and the same filtered list in turn each get their own leads."""

    admin = await signup(client)
    h = admin["headers"]
    members = []
    for _ in range(2):
        member = await login(client, await join(client, h, "sales"))
        me = (await client.get("/api/v1/auth/me", headers=member)).json()["user"]["id"]
        members.append((member, me))
    other = await signup(client)
    owned: dict[str, set[str]] = {"admin": set(), "m0": set(), "m1": set(), "other": set()}
    for n in range(2):
        for who, headers, assignee in [
            ("m0", h, members[0][1]),
            ("m1", h, members[1][1]),
            ("other", other["headers"], None),
        ]:
            body: dict[str, Any] = {"full_name": f"Rosa Formato {who} {n}", "source": "feira"}
            if assignee:
                body["assigned_to"] = assignee
            lead = await create_lead(client, headers, **body)
            owned[who].add(lead["id"])
    owned["admin"] = owned["m0"] | owned["m1"]
    askers = [
        ("m0", members[0][0]),
        ("admin", h),
        ("m1", members[1][0]),
        ("other", other["headers"]),
        ("m0", members[0][0]),
    ]
    for params in ({"q": "rosa formato"}, {"source": "feira", "limit": 10}, {"q": "formato"}):
        for who, headers in askers:
            r = await client.get("/api/v1/leads", headers=headers, params=params)
            assert r.status_code == 200, r.text
            assert {i["id"] for i in r.json()["items"]} == owned[who], (who, params)
