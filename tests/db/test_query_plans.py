"""The guard against the next missing index: the plans of the queries every page and list runs.

The real services run as the app's own role, under row-level security, for an organization
with a few hundred leads (and a neighbour with as many); every SELECT they send is captured as
sent (SQL and parameters) and explained in the same transaction with ``enable_seqscan`` and
``enable_sort`` off. With those off PostgreSQL still scans a table sequentially, or sorts,
when no index can do it -- so a ``Seq Scan`` of a tenant table means a missing index, and a
``Sort`` means no index gives the order (a sort of the whole organization's rows where a
keyset page should read the first few on an index). The search function's own statements
(``lovedcrm_search_leads`` is SECURITY DEFINER and runs as the owner) are explained through
``auto_explain``.

The checker is shown to catch both, on real plans: a query no index serves, and the default
list with its index dropped.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth.authentication import principal_for_member
from lovedcrm.core.principal import Principal
from lovedcrm.db.engine import Database
from lovedcrm.jobs import service as jobs_service
from lovedcrm.leads import activities
from lovedcrm.leads import service as leads_service
from lovedcrm.messaging import inbox
from lovedcrm.models import TENANT_TABLES
from lovedcrm.pipeline import board
from tests.factories import join, owner_sql, signup

LEADS = 400
WATCHED = {*TENANT_TABLES, "organizations"}


# --- the checker ---------------------------------------------------------------------------


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def plan_problems(plan: dict[str, Any], *, sort_allowed: bool = False) -> list[str]:
    """What is wrong with an EXPLAIN (FORMAT JSON) plan run with enable_seqscan and
    enable_sort off: a sequential scan of a tenant table, or (unless allowed) a sort."""
    problems = []
    for node in _nodes(plan):
        kind = node.get("Node Type")
        if kind == "Seq Scan" and node.get("Relation Name") in WATCHED:
            problems.append(f"Seq Scan on {node['Relation Name']}")
        if kind == "Sort" and not sort_allowed:
            problems.append(f"Sort by {', '.join(node.get('Sort Key', []))}")
    return problems


def test_the_checker_finds_a_seq_scan_and_a_sort() -> None:
    plan = {
        "Node Type": "Limit",
        "Plans": [
            {
                "Node Type": "Sort",
                "Sort Key": ["leads.job_title"],
                "Plans": [{"Node Type": "Seq Scan", "Relation Name": "leads"}],
            }
        ],
    }
    assert plan_problems(plan) == ["Sort by leads.job_title", "Seq Scan on leads"]
    assert plan_problems(plan, sort_allowed=True) == ["Seq Scan on leads"]
    assert plan_problems({"Node Type": "Seq Scan", "Relation Name": "alembic_version"}) == []


# --- the data --------------------------------------------------------------------------------


@dataclass
class World:
    org_id: uuid.UUID
    admin_id: uuid.UUID
    sales_id: uuid.UUID
    lead_id: uuid.UUID  # a lead with a timeline and messages


def _seed(owner: sa.Engine, org: str, users: list[str]) -> None:
    owner_sql(
        owner,
        """
        INSERT INTO leads (organization_id, full_name, email, phone, company, stage_id,
                           assigned_to, source, lead_score, estimated_value, last_activity_at,
                           created_at, updated_at)
        SELECT :org,
               (ARRAY['Mariana', 'Fernanda', 'João', 'Beatriz'])[1 + g % 4] || ' Lead ' || g,
               'lead' || g || '@example.com', '+55119' || lpad(g::text, 8, '0'),
               CASE WHEN g % 3 = 0 THEN NULL ELSE 'Empresa ' || g % 7 END,
               (SELECT array_agg(id ORDER BY stage_order) FROM pipeline_stages
                 WHERE organization_id = :org)[1 + g % 4],
               (CAST(:users AS uuid[]))[1 + g % 3],
               (ARRAY['whatsapp', 'site', 'evento'])[1 + g % 3],
               CASE WHEN g % 5 = 0 THEN NULL ELSE g % 101 END,
               CASE WHEN g % 4 = 0 THEN NULL ELSE g * 10.5 END,
               CASE WHEN g % 4 = 1 THEN NULL ELSE now() - g * interval '1 hour' END,
               now() - g * interval '1 minute', now() - g * interval '30 seconds'
          FROM generate_series(1, :n) AS g
        """,
        org=org,
        users=[*users, None],
        n=LEADS,
    )
    # A conversation on every fourth lead, a timeline on every tenth (the triggers keep the
    # inbox's conversations).
    owner_sql(
        owner,
        """
        INSERT INTO messages (organization_id, lead_id, provider_type, direction, content,
                              status, created_at)
        SELECT l.organization_id, l.id, 'sandbox',
               CASE WHEN k % 2 = 0 THEN 'inbound' ELSE 'outbound' END, 'Mensagem ' || k,
               CASE WHEN k % 2 = 0 THEN 'delivered' ELSE 'sent' END,
               now() - k * interval '1 minute' - n * interval '1 second'
          FROM (SELECT id, organization_id, row_number() OVER (ORDER BY id) AS n FROM leads
                 WHERE organization_id = :org) AS l, generate_series(1, 4) AS k
         WHERE l.n % 4 = 0
        """,
        org=org,
    )
    owner_sql(
        owner,
        """
        INSERT INTO message_attachments (organization_id, message_id, file_name, file_type,
                                         file_size, file_url)
        SELECT organization_id, id, 'foto.jpg', 'image/jpeg', 1000, 'file://foto.jpg'
          FROM messages WHERE organization_id = :org AND direction = 'inbound'
        """,
        org=org,
    )
    owner_sql(
        owner,
        """
        INSERT INTO lead_activities (organization_id, lead_id, activity_type, title, created_at)
        SELECT l.organization_id, l.id, 'note', 'Nota ' || k, now() - k * interval '1 hour'
          FROM (SELECT id, organization_id, row_number() OVER (ORDER BY id) AS n FROM leads
                 WHERE organization_id = :org) AS l, generate_series(1, 5) AS k
         WHERE l.n % 10 = 0
        """,
        org=org,
    )


@pytest.fixture(scope="module")
async def world(app: Any, owner: sa.Engine) -> World:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        admin = await signup(client, full_name="Admin Plans")
        neighbour = await signup(client, full_name="Admin Next Door")
        sales_email = await join(client, admin["headers"], "sales")
    org, admin_id = admin["organization_id"], admin["user"]["id"]
    sales_id = str(owner_sql(owner, "SELECT id FROM users WHERE email = :e", e=sales_email)[0][0])
    _seed(owner, org, [admin_id, sales_id])
    _seed(owner, neighbour["organization_id"], [neighbour["user"]["id"]])
    with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in (
            "leads",
            "messages",
            "message_attachments",
            "lead_activities",
            "inbox_conversations",
        ):
            conn.execute(sa.text(f"ANALYZE {table}"))
    lead_id = owner_sql(
        owner,
        "SELECT lead_id FROM lead_activities WHERE organization_id = :org"
        " AND lead_id IN (SELECT lead_id FROM messages WHERE organization_id = :org) LIMIT 1",
        org=org,
    )[0][0]
    return World(uuid.UUID(org), uuid.UUID(admin_id), uuid.UUID(sales_id), lead_id)


# --- running the services and explaining what they sent ------------------------------------

Service = Callable[[AsyncSession, Principal], Awaitable[Any]]


@contextmanager
def captured(database: Database) -> Iterator[list[tuple[str, Any]]]:
    """Every SELECT the app's engine sends meanwhile, as sent."""
    sent: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            sent.append((statement, parameters))

    engine = database.app_engine.sync_engine
    event.listen(engine, "before_cursor_execute", grab)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", grab)


async def explain(
    database: Database, world: World, user_id: uuid.UUID, service: Service
) -> list[tuple[str, dict[str, Any]]]:
    """Run ``service`` as the member, then EXPLAIN each SELECT it sent, in its transaction."""
    async with database.sessionmaker() as session, session.begin():
        principal = await principal_for_member(session, world.org_id, user_id)
        assert principal is not None
        await session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        await session.execute(sa.text("SET LOCAL enable_sort = off"))
        with captured(database) as sent:
            await service(session, principal)
        conn = await session.connection()
        plans = []
        for statement, parameters in sent:
            result = await conn.exec_driver_sql(
                "EXPLAIN (FORMAT JSON) " + statement, parameters or None
            )
            plans.append((statement, result.scalar_one()[0]["Plan"]))
        return plans


async def assert_indexed(
    database: Database,
    world: World,
    service: Service,
    *,
    user: str = "admin",
    sort_allowed: Callable[[str], bool] = lambda statement: False,
) -> None:
    """Every SELECT ``service`` sends reads its tenant tables on an index, and sorts nothing
    unless ``sort_allowed`` says that statement sorts a bounded set on purpose."""
    user_id = world.admin_id if user == "admin" else world.sales_id
    plans = await explain(database, world, user_id, service)
    assert plans, "the service sent no SELECT"
    for statement, plan in plans:
        problems = plan_problems(plan, sort_allowed=sort_allowed(statement))
        assert problems == [], f"{problems} in\n{statement}\n{json.dumps(plan, indent=1)}"


# --- the lists -------------------------------------------------------------------------------

SORTS = [
    *(f"{d}{k}" for k in ("created_at", "updated_at", "full_name", "lead_score") for d in "-+"),
    # The list page's other columns.
    *(f"{d}{k}" for k in ("company", "estimated_value", "last_activity_at") for d in "-+"),
]


@pytest.mark.parametrize("sort", [None, *(s.lstrip("+") for s in SORTS)])
async def test_every_order_of_the_list_is_an_index(
    database: Database, world: World, sort: str | None
) -> None:
    async def first_and_second_page(session: AsyncSession, principal: Principal) -> None:
        page = await leads_service.list_leads(session, principal, sort=sort, limit=20)
        assert page.next_cursor
        await leads_service.list_leads(
            session, principal, sort=sort, limit=20, cursor=page.next_cursor
        )

    await assert_indexed(database, world, first_and_second_page)


@pytest.mark.parametrize(
    "filters",
    [
        {"status": "active"},
        {"source": "site"},
        {"score_min": 10, "score_max": 60},
        {"stage": True},
        {"assignee": True},
    ],
    ids=["status", "source", "score", "stage", "assignee"],
)
async def test_the_filtered_lists_are_an_index(
    database: Database, world: World, owner: sa.Engine, filters: dict[str, Any]
) -> None:
    wanted = {k: v for k, v in filters.items() if k not in ("stage", "assignee")}
    if "stage" in filters:
        stage = owner_sql(
            owner,
            "SELECT stage_id FROM leads WHERE organization_id = :o LIMIT 1",
            o=world.org_id,
        )
        wanted["stage_id"] = stage[0][0]
    if "assignee" in filters:
        wanted["assigned_to"] = world.sales_id

    async def listing(session: AsyncSession, principal: Principal) -> None:
        page = await leads_service.list_leads(session, principal, limit=20, **wanted)
        if page.next_cursor:
            await leads_service.list_leads(
                session, principal, limit=20, cursor=page.next_cursor, **wanted
            )

    await assert_indexed(database, world, listing)


async def test_a_member_who_sees_only_their_leads(database: Database, world: World) -> None:
    async def listing(session: AsyncSession, principal: Principal) -> None:
        assert not principal.can("leads:read_all")
        page = await leads_service.list_leads(session, principal, limit=20)
        assert page.next_cursor
        await leads_service.list_leads(session, principal, limit=20, cursor=page.next_cursor)

    await assert_indexed(database, world, listing, user="sales")


# --- search, board, inbox, lead page ---------------------------------------------------------


async def test_search(database: Database, world: World) -> None:
    async def by_relevance(session: AsyncSession, principal: Principal) -> None:
        page = await leads_service.list_leads(session, principal, q="Marana", limit=20)
        assert page.items

    # Ordering the matches by relevance is a sort of the matches, not of the organization.
    await assert_indexed(
        database, world, by_relevance, sort_allowed=lambda sql: "lovedcrm_search_leads" in sql
    )

    async def newest_first(session: AsyncSession, principal: Principal) -> None:
        await leads_service.list_leads(session, principal, q="lead 1", sort="-created_at")

    await assert_indexed(database, world, newest_first)


def test_the_search_functions_own_statements(owner_url: str, world: World) -> None:
    """``lovedcrm_search_leads`` runs as the owner (SECURITY DEFINER): its statements are
    explained by auto_explain, which only a superuser may load."""
    notices: list[str] = []
    with psycopg.connect(owner_url.replace("postgresql+psycopg", "postgresql")) as conn:
        if not conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()[0]:
            pytest.skip("auto_explain needs a superuser owner")
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        for setting, value in {
            "auto_explain.log_min_duration": "0",
            "auto_explain.log_nested_statements": "on",
            "auto_explain.log_format": "json",
            "auto_explain.log_level": "notice",
            "client_min_messages": "notice",
            "enable_seqscan": "off",
        }.items():
            conn.execute(f"SET {setting} = {value}")
        conn.execute("SELECT set_config('app.organization_id', %s, false)", (str(world.org_id),))
        for q in ("Marana", "joao lead", "(11) 90000-0001", "lead1@"):
            digits = "".join(ch for ch in q if ch.isdigit())
            conn.execute(
                "SELECT * FROM lovedcrm_search_leads(%s, %s, %s, NULL)",
                (q, f"%{q}%", f"%{digits}%" if len(digits) >= 6 else None),
            ).fetchall()
    plans = [json.loads(n[n.index("{") :]) for n in notices if "Plan" in n]
    inner = [p for p in plans if "FROM leads" in p.get("Query Text", "")]
    assert inner, notices
    for p in inner:
        assert plan_problems(p["Plan"], sort_allowed=True) == [], json.dumps(p, indent=1)


def test_search_indexes_have_no_pending_list(owner: sa.Engine, world: World) -> None:
    """Every GIN index takes new entries at once (``fastupdate`` off, migration 0025): a
    pending list would be read row by row by every search until a vacuum merged it. New
    leads leave nothing pending."""
    world_org = str(world.org_id)
    rows = owner_sql(
        owner,
        "SELECT i.relname AS name, coalesce(i.reloptions, '{}') AS options"
        " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_am a ON a.oid = i.relam WHERE a.amname = 'gin'",
    )
    assert {r.name for r in rows} >= {"ix_leads_search_grams", "ix_leads_search_words"}
    assert [r.name for r in rows if "fastupdate=off" not in r.options] == []
    stage = owner_sql(
        owner, "SELECT id FROM pipeline_stages WHERE organization_id = :o LIMIT 1", o=world_org
    )[0].id
    owner_sql(
        owner,
        "INSERT INTO leads (organization_id, full_name, stage_id)"
        " SELECT :o, 'Pendente ' || g, :s FROM generate_series(1, 50) g",
        o=world_org,
        s=stage,
    )
    for r in rows:  # the number of pending entries merged: none were left pending
        assert owner_sql(owner, f"SELECT gin_clean_pending_list('{r.name}') AS n")[0].n == 0
    owner_sql(
        owner,
        "DELETE FROM leads WHERE organization_id = :o AND full_name LIKE 'Pendente %'",
        o=world_org,
    )


async def test_board(database: Database, world: World) -> None:
    async def whole_board(session: AsyncSession, principal: Principal) -> None:
        columns = (await board.board(session, principal, limit=10)).columns
        column = next(c for c in columns if c.next_cursor)
        await board.stage_cards(
            session, principal, column.stage.id, after=column.next_cursor, limit=10
        )

    await assert_indexed(database, world, whole_board)
    await assert_indexed(database, world, whole_board, user="sales")


@pytest.mark.parametrize("which", ["all", "mine", "unassigned", "unread"])
async def test_inbox_conversations(database: Database, world: World, which: str) -> None:
    async def conversations(session: AsyncSession, principal: Principal) -> None:
        found = await inbox.conversations(
            session,
            principal,
            which="all" if which == "unread" else which,  # type: ignore[arg-type]
            unread_only=which == "unread",
        )
        assert found
        await inbox.conversations(session, principal, before=found[-1]["last_message_at"])
        await inbox.unread_total(session, principal)

    await assert_indexed(database, world, conversations)
    if which == "all":
        await assert_indexed(database, world, conversations, user="sales")


async def test_lead_page(database: Database, world: World) -> None:
    async def lead_page(session: AsyncSession, principal: Principal) -> None:
        await leads_service.get_lead(session, principal, world.lead_id)
        page = await activities.list_activities(session, principal, world.lead_id, limit=2)
        await activities.list_activities(
            session, principal, world.lead_id, limit=2, cursor=page.next_cursor
        )
        assert await inbox.messages(session, principal, world.lead_id)

    # The attachments of the page's messages (found by message id) are put in order.
    await assert_indexed(
        database, world, lead_page, sort_allowed=lambda sql: "FROM message_attachments" in sql
    )


async def test_jobs_list(database: Database, world: World, owner: sa.Engine) -> None:
    owner_sql(
        owner,
        "INSERT INTO background_jobs (organization_id, job_type, job_data, status)"
        " SELECT :org, 'plans.test', '{}', 'completed' FROM generate_series(1, 60)",
        org=world.org_id,
    )

    async def jobs(session: AsyncSession, principal: Principal) -> None:
        _, cursor = await jobs_service.list_jobs(session, principal, limit=20)
        await jobs_service.list_jobs(session, principal, limit=20, cursor=cursor)

    await assert_indexed(database, world, jobs)


# --- and it fails when an index goes -------------------------------------------------------


def test_a_missing_index_is_caught(owner: sa.Engine, world: World) -> None:
    """A real plan: the default list (as the owner, in a transaction that drops its index
    and is rolled back) sorts the organization's leads."""
    with owner.connect() as conn, conn.begin() as tx:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        conn.execute(sa.text("SET LOCAL enable_sort = off"))
        query = (
            "EXPLAIN (FORMAT JSON) SELECT id FROM leads WHERE organization_id = :org"
            " ORDER BY GREATEST(created_at, '-infinity'::timestamptz) DESC, id DESC LIMIT 51"
        )
        with_index = conn.execute(sa.text(query), {"org": world.org_id}).scalar_one()
        assert plan_problems(with_index[0]["Plan"]) == []
        conn.execute(sa.text("DROP INDEX ix_leads_org_created"))
        without = conn.execute(sa.text(query), {"org": world.org_id}).scalar_one()
        assert plan_problems(without[0]["Plan"]) != []
        unindexed = conn.execute(
            sa.text("EXPLAIN (FORMAT JSON) SELECT id FROM leads WHERE job_title = 'x'")
        ).scalar_one()
        assert plan_problems(unindexed[0]["Plan"]) == ["Seq Scan on leads"]
        tx.rollback()


# Called by every request of its kind: a SECURITY DEFINER function in SQL is never inlined,
# and PostgreSQL 15 plans its query again at every call; in PL/pgSQL the plan is kept.
PER_REQUEST_FUNCTIONS = ("lovedcrm_api_key_auth", "lovedcrm_search_leads")


def test_functions_called_per_request_keep_their_plans(owner: sa.Engine) -> None:
    rows = owner_sql(
        owner,
        "SELECT p.proname AS name, l.lanname AS language FROM pg_proc p"
        " JOIN pg_language l ON l.oid = p.prolang WHERE p.proname = ANY(:names)",
        names=list(PER_REQUEST_FUNCTIONS),
    )
    assert {r.name: r.language for r in rows} == dict.fromkeys(PER_REQUEST_FUNCTIONS, "plpgsql")
