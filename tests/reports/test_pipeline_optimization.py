"""Pipeline optimization: stalled deals (in a stage longer than its p75, no activity for as
long), the actions naming them with a link to the filtered leads list, the bottleneck marks,
and the home page showing the actions to managers and admins only."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import sqlalchemy as sa

from lovedcrm.web.i18n import LANG_COOKIE
from tests.factories import join, login, owner_sql, signup, web_login


def _lead(
    owner: sa.Engine,
    org: str,
    stage: str,
    name: str,
    days_ago: float,
    activity_days_ago: float,
    who: str | None,
) -> str:
    lead_id = str(uuid.uuid4())
    owner_sql(
        owner,
        "INSERT INTO leads (id, organization_id, full_name, stage_id, assigned_to,"
        " created_at, last_activity_at)"
        " VALUES (:id, :o, :n, :s, :w, now() - make_interval(days => :d),"
        " now() - make_interval(days => :a))",
        id=lead_id,
        o=org,
        n=name,
        s=stage,
        w=who,
        d=days_ago + 1,
        a=activity_days_ago,
    )
    return lead_id


def _move(owner: sa.Engine, org: str, lead: str, src: str, dst: str, days_ago: float) -> None:
    owner_sql(
        owner,
        "INSERT INTO analytics_events (organization_id, event_type, event_data, occurred_at)"
        " VALUES (:o, 'pipeline_conversion', jsonb_build_object('lead_id', CAST(:l AS text),"
        " 'from_stage_id', CAST(:f AS text), 'to_stage_id', CAST(:t AS text)),"
        " now() - make_interval(days => :d))",
        o=org,
        l=lead,
        f=src,
        t=dst,
        d=days_ago,
    )


async def test_stalled_deals_and_actions(client: httpx.AsyncClient, owner: sa.Engine) -> None:
    admin = await signup(client)
    org, h = admin["organization_id"], admin["headers"]
    sales_email = await join(client, h, "sales")
    sales_id = str(owner_sql(owner, "SELECT id FROM users WHERE email = :e", e=sales_email)[0][0])
    stages = [
        (str(r[0]), r[1])
        for r in owner_sql(
            owner,
            "SELECT id, name FROM pipeline_stages WHERE organization_id = :o ORDER BY stage_order",
            o=org,
        )
    ]
    (s1, _), (s2, s2_name), (s3, _) = stages[0], stages[1], stages[2]
    # History: five leads went s1 -> s2 -> s3, two days in s2 each (p75 = 2 days).
    for k in range(5):
        lead = _lead(owner, org, s3, f"Done {k}", 30, 20, None)
        _move(owner, org, lead, s1, s2, 25)
        _move(owner, org, lead, s2, s3, 23)
    # Now in s2: stalled (10 days, no activity for 10), busy (10 days, activity yesterday),
    # new (moved in yesterday), and a salesperson's stalled one.
    stalled = _lead(owner, org, s2, "Parado Silva", 12, 10, None)
    _move(owner, org, stalled, s1, s2, 10)
    busy = _lead(owner, org, s2, "Ativo Souza", 12, 1, None)
    _move(owner, org, busy, s1, s2, 10)
    fresh = _lead(owner, org, s2, "Novo Lima", 3, 3, None)
    _move(owner, org, fresh, s1, s2, 1)
    theirs = _lead(owner, org, s2, "Deles Costa", 12, 9, sales_id)
    _move(owner, org, theirs, s1, s2, 9)
    r = await client.post("/api/v1/reports/recompute", headers=h)
    assert r.status_code == 200, r.text

    body = (await client.get("/api/v1/reports/optimization", headers=h)).json()
    assert body["enough_history"] is True
    (group,) = body["stalled"]
    assert (group["stage_id"], group["threshold_days"], group["count"]) == (s2, 2, 2)
    assert [x["full_name"] for x in group["leads"]] == ["Parado Silva", "Deles Costa"]
    assert group["url"] == f"/leads?stage={s2}&status=active&sort=activity"
    action = body["actions"][0]
    assert action["kind"] == "stalled" and action["count"] == 2 and action["days"] == 2
    assert action["text"] == f"2 leads in {s2_name} for more than 2 days with no activity"
    assert action["names"] == ["Parado Silva", "Deles Costa"]
    marks = {b["stage_id"]: b for b in body["bottlenecks"]}
    assert marks[s2]["history_median_days"] == 2.0

    # The salesperson sees only their own stalled lead, linked to their own list.
    mine = (
        await client.get("/api/v1/reports/optimization", headers=await login(client, sales_email))
    ).json()
    (group,) = mine["stalled"]
    assert group["count"] == 1 and group["leads"][0]["full_name"] == "Deles Costa"
    assert f"assignee={sales_id}" in group["url"]

    # Home: the admin sees the action in pt-BR with its link; the salesperson does not.
    await web_login(client, admin["email"])
    client.cookies.set(LANG_COOKIE, "pt-BR")
    assert 'hx-get="/reports/actions"' in (await client.get("/")).text
    page = (await client.get("/reports/actions")).text
    assert f"2 leads em {s2_name} há mais de 2 dias sem atividade" in page
    assert f'href="/leads?stage={s2}&amp;status=active&amp;sort=activity"' in page
    report = (await client.get("/reports")).text
    assert "Parado Silva" in report and "Negócios parados" in report
    await web_login(client, sales_email)
    assert 'hx-get="/reports/actions"' not in (await client.get("/")).text
    assert (await client.get("/reports/actions")).text == ""


async def test_the_leads_list_link_lists_the_stage(client: httpx.AsyncClient) -> None:
    """The actions' link uses the leads list's own filters (no new filter was needed)."""
    admin = await signup(client)
    await web_login(client, admin["email"])
    board = (await client.get("/api/v1/board", headers=admin["headers"])).json()
    stage: Any = board["columns"][1]["stage"]["id"]
    r = await client.get("/leads", params={"stage": stage, "status": "active", "sort": "activity"})
    assert r.status_code == 200
