"""Tenant isolation proven in the database itself, as the app's own role.

The app role (``lovedcrm_app``) has neither SUPERUSER nor BYPASSRLS, so the row-level
security policies of the first migration are what keeps one organization's rows away from
another's, even for raw SQL without any ``organization_id`` filter. Composite
``(organization_id, <ref>)`` foreign keys keep a row from pointing into another
organization, even for the owner (who bypasses RLS).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg.errors
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import set_tenant
from tests.factories import signup

# Tenant tables checked explicitly for "tenant A sees only A" (each gets rows for A and B).
TENANT_TABLES = (
    "leads",
    "lead_activities",
    "pipeline_stages",
    "message_templates",
    "organization_members",
    "audit_logs",
)


@dataclass
class Tenant:
    org_id: uuid.UUID
    user_id: uuid.UUID
    member_id: uuid.UUID
    headers: dict[str, str]
    lead_ids: list[uuid.UUID] = field(default_factory=list)
    lead_names: list[str] = field(default_factory=list)
    stage_ids: list[uuid.UUID] = field(default_factory=list)


@dataclass
class World:
    a: Tenant
    b: Tenant


async def _make_tenant(c: httpx.AsyncClient, database: Database, label: str) -> Tenant:
    data = await signup(c, full_name=f"Owner {label}", organization_name=f"Org {label}")
    headers = data["headers"]
    members = await c.get("/api/v1/members", headers=headers)
    assert members.status_code == 200, members.text
    tenant = Tenant(
        org_id=uuid.UUID(data["organization_id"]),
        user_id=uuid.UUID(data["user"]["id"]),
        member_id=uuid.UUID(members.json()[0]["id"]),
        headers=headers,
    )
    for i in range(2):
        name = f"Lead {label}{i} {uuid.uuid4().hex[:6]}"
        r = await c.post(
            "/api/v1/leads",
            headers=headers,
            json={"full_name": name, "company": f"Company {label}"},
        )
        assert r.status_code == 201, r.text
        tenant.lead_ids.append(uuid.UUID(r.json()["id"]))
        tenant.lead_names.append(name)
    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, tenant.org_id, tenant.user_id)
        tenant.stage_ids = list(
            (await s.execute(text("SELECT id FROM pipeline_stages ORDER BY stage_order"))).scalars()
        )
        # Lead activities: no API writes them yet, so add one per lead as the app role.
        for lead_id in tenant.lead_ids:
            await s.execute(
                text(
                    "INSERT INTO lead_activities (organization_id, lead_id, user_id,"
                    " activity_type, title) VALUES (:org, :lead, :uid, 'note', 'hello')"
                ),
                {"org": tenant.org_id, "lead": lead_id, "uid": tenant.user_id},
            )
    assert tenant.stage_ids, "signup should create default pipeline stages"
    return tenant


@pytest.fixture(scope="module")
async def world(app: Any, database: Database) -> World:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.8", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        a = await _make_tenant(c, database, "A")
        b = await _make_tenant(c, database, "B")
    return World(a=a, b=b)


@pytest.fixture
async def session(database: Database) -> AsyncIterator[AsyncSession]:
    """A session as the app role inside one transaction, rolled back at the end."""
    async with database.sessionmaker() as s:
        await s.begin()
        try:
            yield s
        finally:
            await s.rollback()


async def _org_tables(s: AsyncSession) -> list[str]:
    rows = await s.execute(
        text(
            "SELECT c.table_name FROM information_schema.columns c"
            " JOIN information_schema.tables t"
            "   ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
            " WHERE c.table_schema = 'public' AND c.column_name = 'organization_id'"
            "   AND t.table_type = 'BASE TABLE'"
            " ORDER BY c.table_name"
        )
    )
    return list(rows.scalars())


def _rls_error(exc: DBAPIError) -> bool:
    return isinstance(exc.orig, psycopg.errors.InsufficientPrivilege) and (
        "row-level security" in str(exc.orig)
    )


def _fk_error(exc: DBAPIError) -> bool:
    return isinstance(exc.orig, psycopg.errors.ForeignKeyViolation)


_INSERT_LEAD = text(
    "INSERT INTO leads (organization_id, stage_id, full_name) VALUES (:org, :stage, :name)"
)


# --- the role -------------------------------------------------------------------------


async def test_app_role_is_not_privileged(database: Database, session: AsyncSession) -> None:
    role = database.app_url.username
    assert role == "lovedcrm_app"
    assert (await session.execute(text("SELECT current_user"))).scalar() == role
    row = (
        await session.execute(
            text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        )
    ).one()
    assert row.rolsuper is False
    assert row.rolbypassrls is False


def test_owner_is_superuser(owner: Any) -> None:
    """The owner connection used below really bypasses RLS, so the FK checks it sees are the
    constraints themselves, not a policy."""
    with owner.connect() as conn:
        assert conn.execute(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        ).scalar()


# --- reading --------------------------------------------------------------------------


@pytest.mark.parametrize("table", TENANT_TABLES)
@pytest.mark.parametrize("who", ["a", "b"])
async def test_tenant_sees_only_its_rows(
    world: World, session: AsyncSession, table: str, who: str
) -> None:
    me, other = (world.a, world.b) if who == "a" else (world.b, world.a)
    await set_tenant(session, me.org_id, me.user_id)
    orgs = list((await session.execute(text(f"SELECT organization_id FROM {table}"))).scalars())
    assert orgs, f"{table}: the tenant should see its own rows"
    assert set(orgs) == {me.org_id}
    assert other.org_id not in orgs


async def test_tenant_sees_only_its_leads_by_id(world: World, session: AsyncSession) -> None:
    await set_tenant(session, world.a.org_id, world.a.user_id)
    ids = set((await session.execute(text("SELECT id FROM leads"))).scalars())
    assert ids == set(world.a.lead_ids)
    # Even asking for B's rows by id finds nothing.
    found = await session.execute(
        text("SELECT count(*) FROM leads WHERE id = ANY(:ids)"), {"ids": world.b.lead_ids}
    )
    assert found.scalar() == 0
    orgs = set((await session.execute(text("SELECT id FROM organizations"))).scalars())
    assert orgs == {world.a.org_id}


async def test_no_tenant_sees_nothing(world: World, session: AsyncSession, owner: Any) -> None:
    tables = await _org_tables(session)
    assert set(TENANT_TABLES) <= set(tables)
    assert len(tables) >= 20
    counts = {}
    for table in [*tables, "organizations"]:
        counts[table] = (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
    assert counts == dict.fromkeys(counts, 0)
    # The rows are there: the owner (no RLS) sees them.
    with owner.connect() as conn:
        for table in [*TENANT_TABLES, "organizations"]:
            assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() > 0, table


async def test_cleared_tenant_sees_nothing(world: World, session: AsyncSession) -> None:
    await set_tenant(session, world.a.org_id, world.a.user_id)
    assert (await session.execute(text("SELECT count(*) FROM leads"))).scalar() == 2
    await set_tenant(session, None)
    assert (await session.execute(text("SELECT count(*) FROM leads"))).scalar() == 0


# --- writing --------------------------------------------------------------------------


async def test_insert_without_tenant_is_refused(world: World, session: AsyncSession) -> None:
    with pytest.raises(DBAPIError) as info:
        await session.execute(
            _INSERT_LEAD,
            {"org": world.a.org_id, "stage": world.a.stage_ids[0], "name": "Sneaky"},
        )
    assert _rls_error(info.value), info.value


async def test_insert_into_other_org_is_refused(world: World, session: AsyncSession) -> None:
    await set_tenant(session, world.b.org_id, world.b.user_id)
    with pytest.raises(DBAPIError) as info:
        await session.execute(
            _INSERT_LEAD,
            {"org": world.a.org_id, "stage": world.a.stage_ids[0], "name": "Sneaky"},
        )
    assert _rls_error(info.value), info.value


async def test_update_cannot_move_row_to_other_org(world: World, session: AsyncSession) -> None:
    await set_tenant(session, world.a.org_id, world.a.user_id)
    with pytest.raises(DBAPIError) as info:
        await session.execute(
            text("UPDATE leads SET organization_id = :b WHERE id = :id"),
            {"b": world.b.org_id, "id": world.a.lead_ids[0]},
        )
    # The WITH CHECK of the policy (or the composite FK to A's stage) refuses it.
    assert _rls_error(info.value) or _fk_error(info.value), info.value


async def test_update_and_delete_of_other_org_touch_nothing(
    world: World, session: AsyncSession
) -> None:
    await set_tenant(session, world.a.org_id, world.a.user_id)
    updated = await session.execute(
        text("UPDATE leads SET full_name = 'hijacked' WHERE id = ANY(:ids)"),
        {"ids": world.b.lead_ids},
    )
    assert updated.rowcount == 0
    deleted = await session.execute(
        text("DELETE FROM leads WHERE id = ANY(:ids)"), {"ids": world.b.lead_ids}
    )
    assert deleted.rowcount == 0


async def test_insert_with_other_orgs_stage_is_refused(world: World, session: AsyncSession) -> None:
    await set_tenant(session, world.a.org_id, world.a.user_id)
    # Sanity: the same insert with A's own stage is accepted.
    await session.execute(
        _INSERT_LEAD, {"org": world.a.org_id, "stage": world.a.stage_ids[0], "name": "Fine"}
    )
    with pytest.raises(DBAPIError) as info:
        await session.execute(
            _INSERT_LEAD,
            {"org": world.a.org_id, "stage": world.b.stage_ids[0], "name": "Cross"},
        )
    assert _fk_error(info.value), info.value
    assert "fk_leads_stage_id_same_org" in str(info.value.orig)


async def test_update_to_other_orgs_stage_is_refused(world: World, session: AsyncSession) -> None:
    await set_tenant(session, world.a.org_id, world.a.user_id)
    with pytest.raises(DBAPIError) as info:
        await session.execute(
            text("UPDATE leads SET stage_id = :stage WHERE id = :id"),
            {"stage": world.b.stage_ids[0], "id": world.a.lead_ids[0]},
        )
    assert _fk_error(info.value), info.value


def test_composite_fk_refuses_even_the_owner(world: World, owner: Any) -> None:
    """The superuser bypasses RLS; the composite foreign key still refuses the reference."""
    with owner.connect() as conn:
        tx = conn.begin()
        try:
            # The owner sees both organizations (no RLS for it) ...
            seen = conn.execute(
                text("SELECT count(DISTINCT organization_id) FROM leads WHERE id = ANY(:ids)"),
                {"ids": [*world.a.lead_ids, *world.b.lead_ids]},
            ).scalar()
            assert seen == 2
            # ... and may insert A's lead with A's stage ...
            with conn.begin_nested():
                conn.execute(
                    _INSERT_LEAD,
                    {"org": world.a.org_id, "stage": world.a.stage_ids[0], "name": "Owner"},
                )
            # ... but not with B's stage, neither on insert ...
            with pytest.raises(DBAPIError) as info, conn.begin_nested():
                conn.execute(
                    _INSERT_LEAD,
                    {"org": world.a.org_id, "stage": world.b.stage_ids[0], "name": "Cross"},
                )
            assert _fk_error(info.value), info.value
            # ... nor on update.
            with pytest.raises(DBAPIError) as info, conn.begin_nested():
                conn.execute(
                    text("UPDATE leads SET stage_id = :stage WHERE id = :id"),
                    {"stage": world.b.stage_ids[0], "id": world.a.lead_ids[0]},
                )
            assert _fk_error(info.value), info.value
            # A lead activity of A cannot point at B's lead either.
            with pytest.raises(DBAPIError) as info, conn.begin_nested():
                conn.execute(
                    text(
                        "INSERT INTO lead_activities (organization_id, lead_id, activity_type,"
                        " title) VALUES (:org, :lead, 'note', 'x')"
                    ),
                    {"org": world.a.org_id, "lead": world.b.lead_ids[0]},
                )
            assert _fk_error(info.value), info.value
        finally:
            tx.rollback()


# --- catalog --------------------------------------------------------------------------


async def test_rls_enabled_and_forced_everywhere(session: AsyncSession) -> None:
    tables = [*await _org_tables(session), "organizations"]
    rows = await session.execute(
        text(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relname = ANY(:tables)"
        ),
        {"tables": tables},
    )
    state = {r.relname: (r.relrowsecurity, r.relforcerowsecurity) for r in rows}
    assert set(state) == set(tables)
    missing = sorted(t for t, flags in state.items() if flags != (True, True))
    assert missing == [], f"RLS not enabled and forced on: {missing}"


async def test_every_rls_table_has_a_policy(session: AsyncSession) -> None:
    tables = [*await _org_tables(session), "organizations"]
    rows = await session.execute(
        text(
            "SELECT DISTINCT tablename FROM pg_policies"
            " WHERE schemaname = 'public' AND tablename = ANY(:tables)"
        ),
        {"tables": tables},
    )
    assert set(rows.scalars()) == set(tables)


# --- the API --------------------------------------------------------------------------


async def test_api_hides_other_orgs_lead(world: World, client: httpx.AsyncClient) -> None:
    b_lead, b_name = world.b.lead_ids[0], world.b.lead_names[0]
    url = f"/api/v1/leads/{b_lead}"

    r = await client.get(url, headers=world.a.headers)
    assert r.status_code == 404, r.text
    assert b_name not in r.text and "Company B" not in r.text

    r = await client.patch(url, headers=world.a.headers, json={"full_name": "Hijacked"})
    assert r.status_code == 404, r.text
    assert b_name not in r.text

    r = await client.patch(
        url, headers=world.a.headers, json={"stage_id": str(world.a.stage_ids[0])}
    )
    assert r.status_code == 404, r.text

    r = await client.delete(url, headers=world.a.headers)
    assert r.status_code == 404, r.text

    listed = await client.get("/api/v1/leads", headers=world.a.headers)
    assert listed.status_code == 200
    assert {i["id"] for i in listed.json()["items"]} == {str(i) for i in world.a.lead_ids}

    # B's lead is untouched.
    r = await client.get(url, headers=world.b.headers)
    assert r.status_code == 200, r.text
    assert r.json()["full_name"] == b_name


async def test_api_refuses_other_orgs_stage(world: World, client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/leads",
        headers=world.a.headers,
        json={"full_name": "Cross", "stage_id": str(world.b.stage_ids[0])},
    )
    assert r.status_code == 422, r.text
    r = await client.patch(
        f"/api/v1/leads/{world.a.lead_ids[0]}",
        headers=world.a.headers,
        json={"stage_id": str(world.b.stage_ids[0])},
    )
    assert r.status_code == 422, r.text


async def test_api_hides_other_orgs_member(world: World, client: httpx.AsyncClient) -> None:
    r = await client.patch(
        f"/api/v1/members/{world.b.member_id}",
        headers=world.a.headers,
        json={"role": "viewer"},
    )
    assert r.status_code == 404, r.text
    r = await client.delete(f"/api/v1/members/{world.b.member_id}", headers=world.a.headers)
    assert r.status_code == 404, r.text
    members = await client.get("/api/v1/members", headers=world.a.headers)
    assert [m["id"] for m in members.json()] == [str(world.a.member_id)]
    # B's admin is still B's admin.
    members = await client.get("/api/v1/members", headers=world.b.headers)
    assert members.json()[0]["role"] == "admin"


# --- the tenant setting is transaction-local ------------------------------------------


async def test_tenant_setting_is_transaction_local(world: World, database: Database) -> None:
    engine = create_async_engine(database.app_url, pool_size=1, max_overflow=0)
    current = text(
        "SELECT pg_backend_pid(), lovedcrm_current_org(), lovedcrm_current_user(),"
        " (SELECT count(*) FROM leads)"
    )
    try:
        async with AsyncSession(engine) as s:
            async with s.begin():
                await set_tenant(s, world.a.org_id, world.a.user_id)
                pid, org, user, leads = (await s.execute(current)).one()
                assert (org, user, leads) == (world.a.org_id, world.a.user_id, 2)
            # Committed; the next transaction on the same pooled connection has no tenant.
            async with s.begin():
                pid2, org, user, leads = (await s.execute(current)).one()
                assert pid2 == pid
                assert (org, user, leads) == (None, None, 0)
            # A rolled-back transaction does not leak its tenant either.
            async with s.begin():
                await set_tenant(s, world.b.org_id, world.b.user_id)
                await s.rollback()
        async with AsyncSession(engine) as s, s.begin():
            pid3, org, user, leads = (await s.execute(current)).one()
            assert pid3 == pid
            assert (org, user, leads) == (None, None, 0)
    finally:
        await engine.dispose()
