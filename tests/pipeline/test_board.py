"""The pipeline board: columns with totals, load more, moves (across and within columns),
optimistic concurrency, and the refusals that leave the board as it was."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import set_tenant
from tests.factories import create_lead, join_and_login, signup

BOARD = "/api/v1/board"


@pytest.fixture
async def org(client: httpx.AsyncClient) -> dict[str, Any]:
    admin = await signup(client, full_name="Admin Board")
    h = admin["headers"]
    stages = (await client.get("/api/v1/pipeline/stages", headers=h)).json()
    me = (await client.get("/api/v1/auth/me", headers=h)).json()["user"]["id"]
    return {
        "h": h,
        "org_id": admin["organization_id"],
        "stages": [s["id"] for s in stages],
        "me": me,
    }


async def _board(c: httpx.AsyncClient, h: dict[str, str], **params: Any) -> dict[str, Any]:
    r = await c.get(BOARD, headers=h, params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _column(board: dict[str, Any], stage_id: str) -> dict[str, Any]:
    return next(c for c in board["columns"] if c["stage"]["id"] == stage_id)


def _ids(column: dict[str, Any]) -> list[str]:
    return [card["id"] for card in column["cards"]]


async def _card(c: httpx.AsyncClient, h: dict[str, str], lead_id: str) -> dict[str, Any]:
    r = await c.get(f"{BOARD}/cards/{lead_id}", headers=h)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _move(
    c: httpx.AsyncClient, h: dict[str, str], lead_id: str, **body: Any
) -> httpx.Response:
    if "expected_version" not in body:
        body["expected_version"] = (await _card(c, h, lead_id))["version"]
    return await c.post(f"/api/v1/leads/{lead_id}/move", headers=h, json=body)


async def test_columns_counts_sums_and_cards(
    client: httpx.AsyncClient, org: dict[str, Any]
) -> None:
    h, stages = org["h"], org["stages"]
    first = await create_lead(
        client, h, estimated_value="100.50", company="ACME", assigned_to=org["me"]
    )
    second = await create_lead(client, h, estimated_value="200.00", source="ads")
    await create_lead(client, h, stage_id=stages[2], estimated_value="7.00")
    board = await _board(client, h)
    assert [c["stage"]["id"] for c in board["columns"]] == stages
    col = _column(board, stages[0])
    assert col["lead_count"] == 2 and float(col["total_value"]) == 300.50
    assert _ids(col) == [second["id"], first["id"]]  # new cards on top
    card = col["cards"][1]
    assert card["company"] == "ACME" and card["assignee_initials"] == "AB"
    assert card["version"] >= 1 and card["last_activity_age_seconds"] is None
    assert _column(board, stages[2])["lead_count"] == 1
    assert _column(board, stages[1])["lead_count"] == 0 and _column(board, stages[1])["cards"] == []
    filtered = await _board(client, h, source="ADS")
    assert _ids(_column(filtered, stages[0])) == [second["id"]]
    assert _column(filtered, stages[0])["lead_count"] == 1


async def test_inactive_stage_has_no_column(client: httpx.AsyncClient, org: dict[str, Any]) -> None:
    h, stages = org["h"], org["stages"]
    r = await client.patch(
        f"/api/v1/pipeline/stages/{stages[3]}", headers=h, json={"is_active": False}
    )
    assert r.status_code == 200, r.text
    board = await _board(client, h)
    assert stages[3] not in [c["stage"]["id"] for c in board["columns"]]
    lead = await create_lead(client, h)
    r = await _move(client, h, lead["id"], stage_id=stages[3])
    assert r.status_code == 422 and r.json()["code"] == "invalid_stage", r.text
    assert (await _card(client, h, lead["id"]))["stage_id"] == stages[0]


async def test_first_50_then_load_more(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database
) -> None:
    h, stages = org["h"], org["stages"]
    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, uuid.UUID(org["org_id"]), None)
        await s.execute(
            text(
                "INSERT INTO leads (organization_id, full_name, stage_id, estimated_value)"
                " SELECT :org, 'Bulk ' || g, :stage, 1 FROM generate_series(1, 120) g"
            ),
            {"org": org["org_id"], "stage": stages[1]},
        )
    col = _column(await _board(client, h), stages[1])
    assert col["lead_count"] == 120 and float(col["total_value"]) == 120
    seen = _ids(col)
    assert len(seen) == 50 and col["next_cursor"]
    cursor = col["next_cursor"]
    while cursor:
        r = await client.get(
            f"{BOARD}/stages/{stages[1]}/cards", headers=h, params={"after": cursor}
        )
        assert r.status_code == 200, r.text
        seen += [i["id"] for i in r.json()["items"]]
        cursor = r.json()["next_cursor"]
    assert len(seen) == 120 and len(set(seen)) == 120
    r = await client.get(f"{BOARD}/stages/{stages[1]}/cards", headers=h, params={"after": "x"})
    assert r.status_code == 400


async def test_move_across_stages_writes_activity_and_analytics(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database
) -> None:
    h, stages = org["h"], org["stages"]
    lead = await create_lead(client, h, estimated_value="50.00")
    other = await create_lead(client, h, stage_id=stages[1])
    r = await _move(client, h, lead["id"], stage_id=stages[1], after_id=other["id"])
    assert r.status_code == 200, r.text
    card = r.json()
    assert card["stage_id"] == stages[1] and card["last_activity_age_seconds"] is not None
    board = await _board(client, h)
    assert _ids(_column(board, stages[1])) == [other["id"], lead["id"]]
    assert _column(board, stages[1])["lead_count"] == 2
    assert float(_column(board, stages[1])["total_value"]) == 50
    assert _column(board, stages[0])["lead_count"] == 0
    r = await client.get(f"/api/v1/leads/{lead['id']}/activities", headers=h)
    entries = [a for a in r.json()["items"] if a["type"] == "stage_change"]
    assert len(entries) == 1
    meta = entries[0]["metadata"]
    assert meta["from_stage_id"] == stages[0] and meta["to_stage_id"] == stages[1]
    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, uuid.UUID(org["org_id"]), None)
        rows = (
            await s.execute(
                text(
                    "SELECT event_data FROM analytics_events WHERE event_type ="
                    " 'pipeline_conversion' AND event_data->>'lead_id' = :id"
                ),
                {"id": lead["id"]},
            )
        ).all()
    assert len(rows) == 1 and rows[0][0]["to_stage_id"] == stages[1]


@pytest.fixture
async def abc(client: httpx.AsyncClient, org: dict[str, Any]) -> list[str]:
    ids = [(await create_lead(client, org["h"], full_name=name))["id"] for name in ("A", "B", "C")]
    return ids


async def test_reorder_within_a_column(
    client: httpx.AsyncClient, org: dict[str, Any], abc: list[str], database: Database
) -> None:
    h, stage = org["h"], org["stages"][0]
    a, b, c = abc
    assert _ids(_column(await _board(client, h), stage)) == [c, b, a]
    r = await _move(client, h, a, stage_id=stage)  # to the top
    assert r.status_code == 200, r.text
    assert _ids(_column(await _board(client, h), stage)) == [a, c, b]
    r = await _move(client, h, a, stage_id=stage, after_id=c, before_id=b)
    assert r.status_code == 200, r.text
    assert _ids(_column(await _board(client, h), stage)) == [c, a, b]
    r = await _move(client, h, c, stage_id=stage, after_id=b)  # to the bottom
    assert _ids(_column(await _board(client, h), stage)) == [a, b, c]
    r = await _move(client, h, b, stage_id=stage, before_id=a)
    assert _ids(_column(await _board(client, h), stage)) == [b, a, c]
    # No stage-change entry for a move within a column.
    r = await client.get(f"/api/v1/leads/{a}/activities", headers=h)
    assert [x for x in r.json()["items"] if x["type"] == "stage_change"] == []
    # Many moves into the same gap: the column is renumbered, the order stays right.
    for _ in range(60):
        r = await _move(client, h, a, stage_id=stage, after_id=b, before_id=c)
        assert r.status_code == 200, r.text
        r = await _move(client, h, c, stage_id=stage, after_id=b, before_id=a)
        assert r.status_code == 200, r.text
    assert _ids(_column(await _board(client, h), stage)) == [b, c, a]


async def test_stale_version_is_refused_with_the_fresh_card(
    client: httpx.AsyncClient, org: dict[str, Any]
) -> None:
    h, stages = org["h"], org["stages"]
    lead = await create_lead(client, h)
    shown = (await _card(client, h, lead["id"]))["version"]
    r = await client.patch(f"/api/v1/leads/{lead['id']}", headers=h, json={"company": "New Co"})
    assert r.status_code == 200
    r = await _move(client, h, lead["id"], stage_id=stages[2], expected_version=shown)
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["code"] == "stale_version" and "someone else" in body["detail"].lower()
    assert body["lead"]["company"] == "New Co" and body["lead"]["version"] > shown
    assert body["lead"]["stage_id"] == stages[0]
    assert (await _card(client, h, lead["id"]))["stage_id"] == stages[0]  # nothing moved
    # Two people moving from the same view: the second is refused.
    fresh = body["lead"]["version"]
    first = await _move(client, h, lead["id"], stage_id=stages[1], expected_version=fresh)
    second = await _move(client, h, lead["id"], stage_id=stages[2], expected_version=fresh)
    assert first.status_code == 200 and second.status_code == 409
    assert second.json()["lead"]["stage_id"] == stages[1]


async def test_other_organization_is_refused(
    client: httpx.AsyncClient, org: dict[str, Any]
) -> None:
    h, stages = org["h"], org["stages"]
    other = await signup(client, full_name="Other Org")
    other_stages = (await client.get("/api/v1/pipeline/stages", headers=other["headers"])).json()
    lead = await create_lead(client, h)
    r = await _move(client, h, lead["id"], stage_id=other_stages[1]["id"])
    assert r.status_code == 422 and r.json()["code"] == "invalid_stage"
    r = await _move(client, h, lead["id"], stage_id=str(uuid.uuid4()))
    assert r.status_code == 422 and r.json()["code"] == "invalid_stage"
    theirs = await create_lead(client, other["headers"])
    r = await _move(client, h, theirs["id"], stage_id=stages[1], expected_version=1)
    assert r.status_code == 404
    r = await client.get(f"{BOARD}/cards/{theirs['id']}", headers=h)
    assert r.status_code == 404
    r = await client.get(f"{BOARD}/stages/{other_stages[0]['id']}/cards", headers=h)
    assert r.status_code == 404
    assert (await _card(client, h, lead["id"]))["stage_id"] == stages[0]


async def test_sales_member_moves_only_their_leads(
    client: httpx.AsyncClient, org: dict[str, Any]
) -> None:
    h, stages = org["h"], org["stages"]
    sales = await join_and_login(client, h, "sales")
    me = (await client.get("/api/v1/auth/me", headers=sales)).json()["user"]["id"]
    mine = await create_lead(client, h, assigned_to=me, estimated_value="10.00")
    theirs = await create_lead(client, h, estimated_value="99.00")
    board = await _board(client, sales)
    col = _column(board, stages[0])
    assert _ids(col) == [mine["id"]] and col["lead_count"] == 1
    assert float(col["total_value"]) == 10
    assert col["cards"][0]["assignee_initials"] == "MS"  # "Member sales"
    r = await _move(client, sales, theirs["id"], stage_id=stages[1], expected_version=1)
    assert r.status_code == 404
    r = await _move(client, sales, mine["id"], stage_id=stages[1])
    assert r.status_code == 200, r.text
    viewer = await join_and_login(client, h, "viewer")
    r = await _move(client, viewer, mine["id"], stage_id=stages[2], expected_version=9)
    assert r.status_code == 403


async def test_board_search(client: httpx.AsyncClient, org: dict[str, Any]) -> None:
    h, stage = org["h"], org["stages"][0]
    joao = await create_lead(client, h, full_name="João Silva")
    await create_lead(client, h, full_name="Maria Souza")
    col = _column(await _board(client, h, q="joao silvaa"), stage)
    assert _ids(col) == [joao["id"]] and col["lead_count"] == 1
