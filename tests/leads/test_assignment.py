"""Automatic assignment of new leads (organization setting ``assignment``): round-robin among
the active sales members, fair and safe under concurrent creations; manual assigns nobody;
an explicit assignee always wins."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import set_tenant
from lovedcrm.leads.assignment import automatic_assignee, rotation_order
from tests.factories import create_lead, join, login, run_import, signup, upload_import

URL = "/api/v1/leads"


@dataclass
class Org:
    id: uuid.UUID
    headers: dict[str, str]
    user_ids: dict[str, str]  # name → user id
    member_ids: dict[str, str]  # name → membership id
    emails: dict[str, str]


async def _org(client: httpx.AsyncClient, people: list[tuple[str, str]]) -> Org:
    """An organization whose admin invited ``people`` ((name, role)), in that order."""
    admin = await signup(client, full_name="Admin Rodízio")
    h = admin["headers"]
    emails = {name: await join(client, h, role) for name, role in people}
    r = await client.get("/api/v1/members", headers=h)
    assert r.status_code == 200, r.text
    by_email = {m["email"]: m for m in r.json()}
    return Org(
        id=uuid.UUID(admin["organization_id"]),
        headers=h,
        user_ids={name: by_email[e]["user_id"] for name, e in emails.items()},
        member_ids={name: by_email[e]["id"] for name, e in emails.items()},
        emails=emails,
    )


async def _set_mode(client: httpx.AsyncClient, org: Org, mode: str) -> None:
    r = await client.patch(
        "/api/v1/organizations/current",
        headers=org.headers,
        json={"settings": {"assignment": mode}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["settings"]["assignment"] == mode


async def _deactivate(client: httpx.AsyncClient, org: Org, name: str) -> None:
    r = await client.patch(
        f"/api/v1/members/{org.member_ids[name]}", headers=org.headers, json={"is_active": False}
    )
    assert r.status_code == 200, r.text


def _names(org: Org, leads: list[dict[str, Any]]) -> list[str | None]:
    by_id = {v: k for k, v in org.user_ids.items()}
    return [by_id.get(x["assigned_to"]) if x["assigned_to"] else None for x in leads]


SALES_TEAM = [
    ("ana", "sales"),
    ("gerente", "manager"),
    ("saiu", "sales"),
    ("bia", "sales"),
    ("leitor", "viewer"),
    ("caio", "sales"),
]


@pytest.fixture
async def team(client: httpx.AsyncClient) -> Org:
    """Three active sales members (ana, bia, caio, in that joined order), plus a manager, a
    viewer and a deactivated sales member who must all be skipped."""
    org = await _org(client, SALES_TEAM)
    await _deactivate(client, org, "saiu")
    return org


async def test_round_robin_takes_turns_in_joined_order(
    client: httpx.AsyncClient, team: Org
) -> None:
    await _set_mode(client, team, "round_robin")
    leads = [await create_lead(client, team.headers) for _ in range(6)]
    assert _names(team, leads) == ["ana", "bia", "caio", "ana", "bia", "caio"]
    # The rotation's state is the app's own: not shown, so settings read can be sent back.
    r = await client.get("/api/v1/organizations/current", headers=team.headers)
    org_settings = r.json()["settings"]
    assert "assignment_cursor" not in org_settings
    r = await client.patch(
        "/api/v1/organizations/current", headers=team.headers, json={"settings": org_settings}
    )
    assert r.status_code == 200, r.text
    assert _names(team, [await create_lead(client, team.headers)]) == ["ana"]


async def test_manual_is_the_default_and_assigns_nobody(
    client: httpx.AsyncClient, team: Org
) -> None:
    r = await client.get("/api/v1/organizations/current", headers=team.headers)
    assert r.json()["settings"]["assignment"] == "manual"
    assert _names(team, [await create_lead(client, team.headers) for _ in range(2)]) == [None, None]
    await _set_mode(client, team, "round_robin")
    await _set_mode(client, team, "manual")
    assert _names(team, [await create_lead(client, team.headers)]) == [None]


async def test_an_explicit_assignee_wins_and_does_not_move_the_rotation(
    client: httpx.AsyncClient, team: Org
) -> None:
    await _set_mode(client, team, "round_robin")
    chosen = await create_lead(client, team.headers, assigned_to=team.user_ids["caio"])
    nobody = await create_lead(client, team.headers, assigned_to=None)
    auto = [await create_lead(client, team.headers) for _ in range(2)]
    assert _names(team, [chosen, nobody, *auto]) == ["caio", None, "ana", "bia"]


async def test_a_salespersons_own_lead_stays_theirs(client: httpx.AsyncClient, team: Org) -> None:
    await _set_mode(client, team, "round_robin")
    own = await create_lead(client, await login(client, team.emails["caio"]))
    auto = await create_lead(client, team.headers)
    assert _names(team, [own, auto]) == ["caio", "ana"]


async def test_a_new_member_goes_first_then_the_longest_waiting(
    client: httpx.AsyncClient, team: Org
) -> None:
    await _set_mode(client, team, "round_robin")
    first = [await create_lead(client, team.headers) for _ in range(2)]  # ana, bia
    email = await join(client, team.headers, "sales")
    members = (await client.get("/api/v1/members", headers=team.headers)).json()
    team.user_ids["davi"] = next(m["user_id"] for m in members if m["email"] == email)
    later = [await create_lead(client, team.headers) for _ in range(4)]
    # caio never got one (joined first), davi neither; then ana and bia by oldest pick.
    assert _names(team, [*first, *later]) == ["ana", "bia", "caio", "davi", "ana", "bia"]


async def test_no_active_sales_member_leaves_the_lead_unassigned(
    client: httpx.AsyncClient,
) -> None:
    org = await _org(client, [("gerente", "manager"), ("vendedor", "sales")])
    await _deactivate(client, org, "vendedor")
    await _set_mode(client, org, "round_robin")
    assert _names(org, [await create_lead(client, org.headers)]) == [None]


async def test_concurrent_creations_each_member_exactly_twice(app: Any, team: Org) -> None:
    """Six creations at once, each on its own client and database session: the advisory lock
    serializes the picks, so nobody is picked twice in a row by accident."""

    async def create_on_own_client(i: int) -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app, client=(f"203.0.113.{20 + i}", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await create_lead(c, team.headers, full_name=f"Simultâneo {i}")

    transport = httpx.ASGITransport(app=app, client=("203.0.113.19", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        await _set_mode(c, team, "round_robin")
    leads = await asyncio.gather(*(create_on_own_client(i) for i in range(6)))
    assert Counter(_names(team, list(leads))) == {"ana": 2, "bia": 2, "caio": 2}


async def test_the_setting_is_validated(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    r = await client.patch(
        "/api/v1/organizations/current",
        headers=admin["headers"],
        json={"settings": {"assignment": "random"}},
    )
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["detail"] == "Invalid settings: assignment must be one of manual, round_robin"
    assert body["errors"] == [
        {"field": "assignment", "message": "must be one of manual, round_robin"}
    ]
    r = await client.patch(
        "/api/v1/organizations/current",
        headers=admin["headers"],
        json={"settings": {"assignment_cursor": {"seq": 0}}},
    )
    assert r.status_code == 422 and r.json()["code"] == "unknown_setting"


async def test_the_function_other_modules_call(
    client: httpx.AsyncClient, team: Org, database: Database
) -> None:
    """``automatic_assignee`` records its pick in the caller's transaction: a rollback
    gives the same member again; manual mode answers None without touching anything."""
    org_settings = {"assignment": "round_robin"}
    ana, bia = uuid.UUID(team.user_ids["ana"]), uuid.UUID(team.user_ids["bia"])
    async with database.sessionmaker() as s:
        async with s.begin():
            await set_tenant(s, team.id, None)
            assert await automatic_assignee(s, team.id, {"assignment": "manual"}) is None
            assert await automatic_assignee(s, team.id, org_settings) == ana
            await s.rollback()
        async with s.begin():
            await set_tenant(s, team.id, None)
            assert [u for u, _ in await rotation_order(s, team.id)][:1] == [ana]
            assert await automatic_assignee(s, team.id, org_settings) == ana
        async with s.begin():
            await set_tenant(s, team.id, None)
            assert await automatic_assignee(s, team.id, org_settings) == bia


async def test_imports_follow_the_rotation(
    client: httpx.AsyncClient, team: Org, database: Database, settings: Settings
) -> None:
    await _set_mode(client, team, "round_robin")
    csv = "Nome;E-mail\nImport A;a@example.com\nImport B;b@example.com\nImport C;c@example.com\n"
    analysis = await upload_import(client, team.headers, "rodizio.csv", csv.encode())
    result = await run_import(client, team.headers, database, settings, analysis)
    assert result["status"] == "completed" and result["progress"]["created"] == 3, result
    r = await client.get(URL, headers=team.headers, params={"sort": "full_name"})
    assert _names(team, r.json()["items"]) == ["ana", "bia", "caio"]
