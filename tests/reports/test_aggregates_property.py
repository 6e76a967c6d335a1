"""The aggregates kept change by change (``reports.events``) equal a full recomputation
(``reports.aggregates.recompute``) after random sequences of changes made through the API:
leads created in any stage, moved, won, lost, reopened, reassigned, revalued, given
activities, deleted. A seeded random walk per case (the HTTP fixtures are async, so the walk
is drawn by ``random.Random(seed)``; each failing seed is printed to replay)."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.factories import join, owner_sql, signup

SNAPSHOTS = {
    "facts": "SELECT lead_id, owner_id, source, stage_id, status, value, created_at, closed_at,"
    " first_inbound_at, first_reply_at FROM report_lead_facts WHERE organization_id = :o"
    " ORDER BY lead_id",
    "spans": "SELECT lead_id, stage_id, entered_at, left_at FROM report_stage_spans"
    " WHERE organization_id = :o ORDER BY lead_id, entered_at, stage_id",
    "activity": "SELECT bucket, user_id, activity_type, count FROM report_activity_counts"
    " WHERE organization_id = :o ORDER BY bucket, user_id, activity_type",
}


def _snapshot(owner: sa.Engine, org: str) -> dict[str, list[Any]]:
    return {k: [tuple(r) for r in owner_sql(owner, sql, o=org)] for k, sql in SNAPSHOTS.items()}


async def _walk(
    client: httpx.AsyncClient,
    h: dict[str, str],
    rng: random.Random,
    stages: list[str],
    members: list[str],
    steps: int,
) -> None:
    leads: list[str] = []
    for _ in range(steps):
        op = rng.choice(
            [
                "create",
                "create",
                "move",
                "move",
                "win",
                "lose",
                "reopen",
                "assign",
                "value",
                "note",
                "delete",
            ]
        )
        if op == "create" or not leads:
            body: dict[str, Any] = {
                "full_name": f"Lead {rng.randrange(10**6)}",
                "stage_id": rng.choice(stages),
                "assigned_to": rng.choice([*members, None]),
                "source": rng.choice(["site", "ads", None]),
                "estimated_value": rng.choice([None, "100.00", "2500.50"]),
            }
            r = await client.post("/api/v1/leads", headers=h, json=body)
            assert r.status_code == 201, r.text
            leads.append(r.json()["id"])
            continue
        lead = rng.choice(leads)
        changes: dict[str, Any] = {
            "move": {"stage_id": rng.choice(stages)},
            "win": {"status": "converted"},
            "lose": {"status": "lost", "lost_reason": "price"},
            "reopen": {"status": "active"},
            "assign": {"assigned_to": rng.choice(members)},
            "value": {"estimated_value": str(rng.randrange(1, 9999))},
        }.get(op, {})
        if changes:
            r = await client.patch(f"/api/v1/leads/{lead}", headers=h, json=changes)
            assert r.status_code == 200, (op, r.text)
        elif op == "note":
            r = await client.post(
                f"/api/v1/leads/{lead}/activities",
                headers=h,
                json={"type": rng.choice(["note", "call"]), "title": "x", "description": "y"},
            )
            assert r.status_code == 201, r.text
        elif op == "delete":
            r = await client.delete(f"/api/v1/leads/{lead}", headers=h)
            assert r.status_code == 204, r.text
            leads.remove(lead)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_incremental_aggregates_equal_a_recomputation(
    client: httpx.AsyncClient, owner: sa.Engine, seed: int
) -> None:
    admin = await signup(client)
    org, h = admin["organization_id"], admin["headers"]
    await join(client, h, "sales")
    stages = [
        str(r[0])
        for r in owner_sql(
            owner, "SELECT id FROM pipeline_stages WHERE organization_id = :o", o=org
        )
    ]
    members = [
        str(r[0])
        for r in owner_sql(
            owner, "SELECT user_id FROM organization_members WHERE organization_id = :o", o=org
        )
    ]
    await _walk(client, h, random.Random(seed), sorted(stages), sorted(members), 40)
    kept = _snapshot(owner, org)
    assert kept["facts"] and kept["spans"], "the walk left nothing to compare"
    r = await client.post("/api/v1/reports/recompute", headers=h)
    assert r.status_code == 200, r.text
    rebuilt = _snapshot(owner, org)
    for name in SNAPSHOTS:
        assert kept[name] == rebuilt[name], f"seed {seed}: {name} differ"
