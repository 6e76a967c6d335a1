"""Each report's numbers against a hand-computed history (written as the database owner, then
the aggregates rebuilt by ``POST /api/v1/reports/recompute``), the sales member's own view, the
page and the CSV showing the API's numbers, bad filters, and an organization with nothing yet.

The history (organization time America/Sao_Paulo; the period is March 2026, the previous one
29 Jan - 28 Feb):

lead owner  source value created  stages (moves)                       outcome
L1   admin  site   1000  03-02    s1 -> s2 03-04 -> s3 03-09            won 03-20
L2   sales  site    500  03-03    s1 -> s2 03-05                        lost 03-15
L3   sales  ads    2000  03-10    s1                                    open
L4   admin  ads     300  02-10    s1 -> s2 02-12                        won 03-05
L5   admin  -        -   03-25    s1 (made before analytics: no event)  open
"""

from __future__ import annotations

import csv
import io
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from lovedcrm.web.i18n import LANG_COOKIE
from tests.factories import join, join_and_login, login, owner_sql, signup, web_login

PERIOD = {"start": "2026-03-01", "end": "2026-03-31"}


def _ts(day: str, hour: int = 12, minute: int = 0) -> str:
    return f"2026-{day} {hour:02d}:{minute:02d}:00+00"


def _build(owner: sa.Engine, org: str, admin_id: str, sales_id: str) -> dict[str, Any]:
    stages = [
        str(r[0])
        for r in owner_sql(
            owner,
            "SELECT id FROM pipeline_stages WHERE organization_id = :o ORDER BY stage_order",
            o=org,
        )
    ]
    s1, s2, s3 = stages[0], stages[1], stages[2]
    ids = {f"L{i}": str(uuid.uuid4()) for i in range(1, 6)}
    leads = [
        # id, owner, source, value, created, stage, status, converted_at
        ("L1", admin_id, "site", 1000, _ts("03-02"), s3, "converted", _ts("03-20")),
        ("L2", sales_id, "site", 500, _ts("03-03"), s2, "lost", None),
        ("L3", sales_id, "ads", 2000, _ts("03-10"), s1, "active", None),
        ("L4", admin_id, "ads", 300, _ts("02-10"), s2, "converted", _ts("03-05")),
        ("L5", admin_id, None, None, _ts("03-25"), s1, "active", None),
    ]
    for key, who, source, value, created, stage, status, converted in leads:
        owner_sql(
            owner,
            "INSERT INTO leads (id, organization_id, full_name, stage_id, assigned_to, source,"
            " estimated_value, status, converted_at, lost_reason, created_at, updated_at)"
            " VALUES (:id, :o, :name, :stage, :who, :source, :value, :status, :conv,"
            " :reason, :created, :created)",
            id=ids[key],
            o=org,
            name=f"Lead {key}",
            stage=stage,
            who=who,
            source=source,
            value=value,
            status=status,
            conv=converted,
            reason="price" if status == "lost" else None,
            created=created,
        )

    def event(kind: str, at: str, data: str, **params: Any) -> None:
        owner_sql(
            owner,
            "INSERT INTO analytics_events (organization_id, event_type, event_data, occurred_at)"
            f" VALUES (:o, :kind, {data}, :at)",
            o=org,
            kind=kind,
            at=at,
            **params,
        )

    created = (
        "jsonb_build_object('lead_id', CAST(:l AS text),"
        " 'lead', jsonb_build_object('stage_id', CAST(:s AS text)))"
    )
    moved = (
        "jsonb_build_object('lead_id', CAST(:l AS text), 'from_stage_id', CAST(:f AS text),"
        " 'to_stage_id', CAST(:t AS text))"
    )
    for key, day in (("L1", "03-02"), ("L2", "03-03"), ("L3", "03-10"), ("L4", "02-10")):
        event("lead_created", _ts(day), created, l=ids[key], s=s1)
    event("pipeline_conversion", _ts("03-04"), moved, l=ids["L1"], f=s1, t=s2)
    event("pipeline_conversion", _ts("03-09"), moved, l=ids["L1"], f=s2, t=s3)
    event("pipeline_conversion", _ts("03-05"), moved, l=ids["L2"], f=s1, t=s2)
    event("pipeline_conversion", _ts("02-12"), moved, l=ids["L4"], f=s1, t=s2)
    event("lead_lost", _ts("03-15"), "jsonb_build_object('lead_id', CAST(:l AS text))", l=ids["L2"])

    # Activities: 3 by the admin and 1 by the salesperson in March, 1 in February, and a
    # system entry (no member) that nobody's work counts.
    for who, kind, at in (
        (admin_id, "note", _ts("03-06")),
        (admin_id, "note", _ts("03-06", 13)),
        (admin_id, "call", _ts("03-07")),
        (sales_id, "note", _ts("03-06", 14)),
        (admin_id, "note", _ts("02-20")),
        (None, "stage_change", _ts("03-06")),
    ):
        owner_sql(
            owner,
            "INSERT INTO lead_activities (organization_id, lead_id, user_id, activity_type,"
            " title, created_at) VALUES (:o, :l, :u, :k, 'x', :at)",
            o=org,
            l=ids["L1"],
            u=who,
            k=kind,
            at=at,
        )
    # WhatsApp: L1 writes, is answered 30 minutes later, writes again; L3 writes, no answer;
    # L2 only got a message (no conversation started by the lead).
    for key, direction, at in (
        ("L1", "inbound", _ts("03-02", 13)),
        ("L1", "outbound", _ts("03-02", 13, 30)),
        ("L1", "inbound", _ts("03-02", 14)),
        ("L3", "inbound", _ts("03-11", 10)),
        ("L2", "outbound", _ts("03-04", 10)),
    ):
        owner_sql(
            owner,
            "INSERT INTO messages (organization_id, lead_id, provider_type, direction, content,"
            " created_at) VALUES (:o, :l, 'sandbox', :d, 'oi', :at)",
            o=org,
            l=ids[key],
            d=direction,
            at=at,
        )
    # Templates: an A/B family with 40 sends each (30 vs 10 answered), and one with too few.
    families = {}
    for name, parent in (("Ola A", None), ("Ola B", "Ola A"), ("Oi A", None), ("Oi B", "Oi A")):
        tid = str(uuid.uuid4())
        families[name] = tid
        owner_sql(
            owner,
            "INSERT INTO message_templates (id, organization_id, created_by, name, category,"
            " content, parent_template_id) VALUES (:id, :o, :u, :n, 'greeting', 'x', :p)",
            id=tid,
            o=org,
            u=admin_id,
            n=name,
            p=families.get(parent) if parent else None,
        )
    for name, sends, answered, converted in (
        ("Ola A", 40, 30, 4),
        ("Ola B", 40, 10, 1),
        ("Oi A", 5, 3, 0),
        ("Oi B", 4, 1, 0),
    ):
        owner_sql(
            owner,
            "INSERT INTO template_usage_stats (organization_id, template_id, user_id, lead_id,"
            " response_received, led_to_conversion, response_time_minutes, created_at)"
            " SELECT :o, :t, :u, :l, g <= :a, g <= :c, CASE WHEN g <= :a THEN g END, :at"
            " FROM generate_series(1, :n) g",
            o=org,
            t=families[name],
            u=admin_id,
            l=ids["L1"],
            a=answered,
            c=converted,
            n=sends,
            at=_ts("03-12"),
        )
    return {"ids": ids, "stages": stages, "templates": families}


@pytest.fixture
async def world(client: httpx.AsyncClient, owner: sa.Engine) -> dict[str, Any]:
    admin = await signup(client)
    org = admin["organization_id"]
    sales_email = await join(client, admin["headers"], "sales")
    members = dict(
        owner_sql(
            owner,
            "SELECT u.email, u.id FROM organization_members m JOIN users u ON u.id = m.user_id"
            " WHERE m.organization_id = :o",
            o=org,
        )
    )
    admin_id, sales_id = str(members[admin["email"]]), str(members[sales_email])
    built = _build(owner, org, admin_id, sales_id)
    r = await client.post("/api/v1/reports/recompute", headers=admin["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["leads"] == 5
    return {
        **built,
        "admin": admin,
        "admin_id": admin_id,
        "sales_id": sales_id,
        "sales_headers": await login(client, sales_email),
    }


async def _get(client: httpx.AsyncClient, headers: dict[str, str], name: str, **params: Any) -> Any:
    r = await client.get(f"/api/v1/reports/{name}", headers=headers, params={**PERIOD, **params})
    assert r.status_code == 200, r.text
    return r.json()


async def test_overview_win_rate_deal_size_and_cycle(client: httpx.AsyncClient, world: Any) -> None:
    body = await _get(client, world["admin"]["headers"], "overview")
    assert body["filters"]["period"]["days"] == 31
    assert body["filters"]["previous"] == {"start": "2026-01-29", "end": "2026-02-28", "days": 31}
    cur, prev = body["current"], body["previous"]
    assert (cur["leads_created"], cur["won"], cur["lost"]) == (4, 2, 1)
    assert cur["win_rate"] == pytest.approx(2 / 3)
    assert Decimal(cur["won_value"]) == Decimal("1300.00")
    assert Decimal(cur["average_deal_size"]) == Decimal("650.00")
    assert cur["sales_cycle_median_days"] == 20.5  # 18 (L1) and 23 (L4) days
    assert cur["sales_cycle_average_days"] == 20.5
    assert (prev["leads_created"], prev["won"], prev["lost"]) == (1, 0, 0)
    assert prev["win_rate"] is None and prev["average_deal_size"] is None
    assert prev["sales_cycle_median_days"] is None


async def test_funnel_stage_to_stage(client: httpx.AsyncClient, world: Any) -> None:
    body = await _get(client, world["admin"]["headers"], "funnel")
    assert body["cohort"] == 4 and body["previous_cohort"] == 1
    steps = [(s["reached"], s["conversion_from_previous"]) for s in body["steps"]]
    # L1 won (reaches every step), L2 reached the second stage, L3 and L5 the first.
    assert steps == [(4, None), (2, 0.5), (1, 0.5), (1, 1.0), (1, 1.0), (1, 1.0)]
    assert body["steps"][-1]["stage_id"] is None
    assert body["overall_conversion"] == 0.25
    assert body["previous_overall_conversion"] == 1.0


async def test_time_in_stage_median_and_p75(client: httpx.AsyncClient, world: Any) -> None:
    body = await _get(client, world["admin"]["headers"], "stages")
    rows = {s["stage_id"]: s for s in body["stages"]}
    s1, s2, s3 = world["stages"][:3]
    # Stays that ended in March: s1 of L1 (2 days) and L2 (2 days); s2 of L1 (5 days). L4's
    # first stay ended in February. Active leads in s1 now: L3 and L5.
    assert (rows[s1]["stays"], rows[s1]["median_days"], rows[s1]["p75_days"]) == (2, 2.0, 2.0)
    assert (rows[s2]["stays"], rows[s2]["median_days"], rows[s2]["p75_days"]) == (1, 5.0, 5.0)
    assert rows[s3]["stays"] == 0 and rows[s3]["median_days"] is None
    assert rows[s1]["open_now"] == 2 and rows[s2]["open_now"] == 0


async def test_leaderboard_sources_activity(client: httpx.AsyncClient, world: Any) -> None:
    h = world["admin"]["headers"]
    owners = {o["owner_id"]: o for o in (await _get(client, h, "owners"))["owners"]}
    a, s = owners[world["admin_id"]], owners[world["sales_id"]]
    assert (a["leads_created"], a["won"], a["lost"], a["win_rate"]) == (2, 2, 0, 1.0)
    assert Decimal(a["won_value"]) == Decimal(1300) and a["open_leads"] == 1
    assert a["activities"] == 3
    assert (s["leads_created"], s["won"], s["lost"], s["win_rate"]) == (2, 0, 1, 0.0)
    assert Decimal(s["open_value"]) == Decimal(2000) and s["activities"] == 1

    sources = [
        (
            x["source"],
            x["leads"],
            x["won"],
            x["conversion"],
            Decimal(x["won_value"]),
            x["previous_leads"],
        )
        for x in (await _get(client, h, "sources"))["sources"]
    ]
    assert sources == [
        ("site", 2, 1, 0.5, Decimal(1000), 0),
        ("ads", 1, 0, 0.0, Decimal(0), 1),
        (None, 1, 0, 0.0, Decimal(0), 0),
    ]

    act = await _get(client, h, "activity")
    assert (act["total"], act["previous_total"]) == (4, 1)
    assert [(k["activity_type"], k["count"], k["previous"]) for k in act["kinds"]] == [
        ("note", 3, 1),
        ("call", 1, 0),
    ]
    per_day = {d["day"]: d["count"] for d in act["days"] if d["count"]}
    assert per_day == {"2026-03-06": 3, "2026-03-07": 1}
    assert len(act["days"]) == 31


async def test_whatsapp_first_response(client: httpx.AsyncClient, world: Any) -> None:
    body = await _get(client, world["admin"]["headers"], "whatsapp")
    rows = {o["owner_id"]: o for o in body["owners"]}
    a, s = rows[world["admin_id"]], rows[world["sales_id"]]
    assert (a["conversations"], a["answered"], a["median_first_response_minutes"]) == (1, 1, 30.0)
    assert (s["conversations"], s["answered"], s["answer_rate"]) == (1, 0, 0.0)
    assert s["median_first_response_minutes"] is None
    t = body["total"]
    assert (t["conversations"], t["answered"], t["answer_rate"]) == (2, 1, 0.5)


async def test_templates_and_ab_significance(client: httpx.AsyncClient, world: Any) -> None:
    body = await _get(client, world["admin"]["headers"], "templates")
    rows = {t["name"]: t for t in body["templates"]}
    assert (rows["Ola A"]["sends"], rows["Ola A"]["answer_rate"], rows["Ola A"]["conversion"]) == (
        40,
        0.75,
        0.1,
    )
    assert rows["Ola B"]["is_variant"] and rows["Ola B"]["answer_rate"] == 0.25
    assert rows["Ola A"]["median_response_minutes"] == 15.5  # minutes 1..30
    by_family = {c["leader_name"]: c for c in body["comparisons"]}
    ola = by_family["Ola A"]
    # p1 = 0.75, p2 = 0.25, pooled 0.5: z = 0.5 / sqrt(0.25 * (1/40 + 1/40)) = 4.472
    assert ola["other_name"] == "Ola B" and ola["z"] == pytest.approx(4.472, abs=1e-3)
    assert ola["p_value"] == pytest.approx(0.0, abs=1e-4)
    assert ola["enough_data"] and ola["significant"]
    assert (ola["leader_sends"], ola["other_sends"], ola["minimum_sends"]) == (40, 40, 30)
    oi = by_family["Oi A"]
    assert not oi["enough_data"] and not oi["significant"]


async def test_a_salesperson_sees_only_their_own(client: httpx.AsyncClient, world: Any) -> None:
    h = world["sales_headers"]
    body = await _get(client, h, "overview")
    assert body["filters"]["own_only"] is True
    cur = body["current"]
    assert (cur["leads_created"], cur["won"], cur["lost"], cur["win_rate"]) == (2, 0, 1, 0.0)
    owners = (await _get(client, h, "owners"))["owners"]
    assert [o["owner_id"] for o in owners] == [world["sales_id"]]
    # Asking for the admin's numbers does not widen the scope.
    body = await _get(client, h, "overview", owner=world["admin_id"])
    assert body["current"]["leads_created"] == 0
    act = await _get(client, h, "activity")
    assert act["total"] == 1
    assert (await _get(client, h, "templates"))["templates"] == []  # the admin sent them
    wa = await _get(client, h, "whatsapp")
    assert wa["total"]["conversations"] == 1
    funnel = await _get(client, h, "funnel")
    assert funnel["cohort"] == 2


async def test_filters_owner_source_stage(client: httpx.AsyncClient, world: Any) -> None:
    h = world["admin"]["headers"]
    site = await _get(client, h, "overview", source="site")
    assert (site["current"]["leads_created"], site["current"]["won"]) == (2, 1)
    mine = await _get(client, h, "overview", owner=world["admin_id"])
    assert mine["current"]["leads_created"] == 2
    first = await _get(client, h, "funnel", stage=world["stages"][0])
    assert first["cohort"] == 2  # L3 and L5 are in the first stage now


async def test_page_and_csv_show_the_api_numbers(client: httpx.AsyncClient, world: Any) -> None:
    h = world["admin"]["headers"]
    api_csv = {}
    for name in ("overview", "funnel", "owners", "sources", "stages", "whatsapp", "activity"):
        r = await client.get(
            f"/api/v1/reports/{name}", headers=h, params={**PERIOD, "format": "csv"}
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        api_csv[name] = r.text
    rows = list(csv.reader(io.StringIO(api_csv["overview"])))
    assert rows[0] == ["measure", "period", "previous_period"]
    assert ["won_value", "1300.00", "0.00"] in rows
    assert ["win_rate", "0.6667", ""] in rows

    await web_login(client, world["admin"]["email"])
    for name, text in api_csv.items():
        r = await client.get(f"/reports/{name}.csv", params=PERIOD)
        assert r.status_code == 200, r.text
        assert r.text == text, name
    r = await client.get("/reports", params=PERIOD)
    assert r.status_code == 200, r.text
    page = r.text.replace("\xa0", " ")  # pt-BR: R$ 1.300,00
    for shown in ("R$ 1.300,00", "R$ 650,00", "66,7%", "20,5", "25%"):
        assert shown in page, shown
    assert 'id="report-data"' in page and 'data-chart="funnel"' in page
    assert 'href="/reports/forecast"' in page
    for path in ("/reports/pipeline", "/reports/team", "/reports/channels"):
        r = await client.get(path, params=PERIOD)
        assert r.status_code == 200, (path, r.text[:300])
    team = (await client.get("/reports/team", params=PERIOD)).text
    assert "R$ 1.300,00" in team.replace("\xa0", " ")


async def test_bad_filters(client: httpx.AsyncClient, world: Any) -> None:
    h = world["admin"]["headers"]
    for params in (
        {"start": "2026-13-01"},
        {"start": "2026-03-10", "end": "2026-03-01"},
        {"owner": "nobody"},
        {"stage": "x"},
        {"start": "2020-01-01", "end": "2026-01-01"},
    ):
        r = await client.get("/api/v1/reports/overview", headers=h, params=params)
        assert r.status_code == 422, (params, r.text)
        # what the schema says (a date, an id) is checked first; the rules after
        assert r.json()["code"] in ("validation_error", "invalid_report_filters")
        assert r.json()["errors"], r.text
    r = await client.get(
        "/api/v1/reports/overview",
        headers={**h, "Accept-Language": "pt-BR"},
        params={"start": "2026-03-10", "end": "2026-03-01"},
    )
    assert r.json()["detail"] == "Os filtros do relatório são inválidos: end"
    r = await client.get("/api/v1/reports/funnel", headers=h, params={"format": "xml"})
    assert r.status_code == 422
    await web_login(client, world["admin"]["email"])
    r = await client.get("/reports", params={"start": "ontem"})
    assert r.status_code == 422
    assert 'name="start" value="ontem"' in r.text and "field-error" in r.text


async def test_an_empty_organization_explains(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    h = admin["headers"]
    for name in (
        "overview",
        "funnel",
        "stages",
        "owners",
        "sources",
        "templates",
        "whatsapp",
        "activity",
        "optimization",
    ):
        r = await client.get(f"/api/v1/reports/{name}", headers=h)
        assert r.status_code == 200, (name, r.text)
        assert "NaN" not in r.text
    body = (await client.get("/api/v1/reports/overview", headers=h)).json()
    assert body["current"]["win_rate"] is None and body["current"]["won"] == 0
    opt = (await client.get("/api/v1/reports/optimization", headers=h)).json()
    assert opt["enough_history"] is False and opt["actions"] == []
    await web_login(client, admin["email"])
    client.cookies.set(LANG_COOKIE, "en")
    for path in ("/reports", "/reports/pipeline", "/reports/team", "/reports/channels", "/"):
        r = await client.get(path)
        assert r.status_code == 200, path
        assert "NaN" not in r.text
    page = (await client.get("/reports")).text
    assert "No leads were created in this period" in page
    assert "Not enough history yet" in page


async def test_only_admins_recompute_and_viewers_read(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    manager = await join_and_login(client, admin["headers"], "manager")
    r = await client.post("/api/v1/reports/recompute", headers=manager)
    assert r.status_code == 403
    viewer = await join_and_login(client, admin["headers"], "viewer")
    r = await client.get("/api/v1/reports/overview", headers=viewer)
    assert r.status_code == 200 and r.json()["filters"]["own_only"] is False
