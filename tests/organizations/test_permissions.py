"""Roles and permissions: the code's matrix equals docs/permissions.md, overrides work, and
the HTTP routes enforce both the permission and the sales scope (own leads only)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from lovedcrm.auth.permissions import (
    PERMISSIONS,
    ROLE_PERMISSIONS,
    Role,
    effective_permissions,
    validate_overrides,
)
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import set_tenant
from tests.factories import create_lead, join, login, signup, unique_email

DOC = Path(__file__).resolve().parents[2] / "docs" / "permissions.md"
ROLES = [r.value for r in Role]


# --- the documented matrix ----------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_matrix(markdown: str) -> tuple[list[str], dict[str, tuple[str, dict[str, bool]]]]:
    """The one table of the doc: ``(role columns, {permission: (description, {role: ✓})})``."""
    lines = [ln for ln in markdown.splitlines() if ln.lstrip().startswith("|")]
    assert len(lines) >= 3, "docs/permissions.md has no markdown table"
    header = _cells(lines[0])
    assert header[:2] == ["Permission", "Allows"], header
    roles = header[2:]
    assert re.fullmatch(r"[\s|:-]+", lines[1]), "second table line must be the separator"
    matrix: dict[str, tuple[str, dict[str, bool]]] = {}
    for line in lines[2:]:
        cells = _cells(line)
        assert len(cells) == len(header), f"malformed row: {line}"
        name = cells[0].strip("`")
        assert name not in matrix, f"{name} listed twice"
        marks = cells[2:]
        assert all(m in ("✓", "") for m in marks), f"cells must be ✓ or blank: {line}"
        matrix[name] = (cells[1], {r: m == "✓" for r, m in zip(roles, marks, strict=True)})
    return roles, matrix


DOC_ROLES, DOC_MATRIX = parse_matrix(DOC.read_text(encoding="utf-8"))


def test_doc_lists_every_role_and_permission() -> None:
    assert DOC_ROLES == ROLES
    assert list(DOC_MATRIX) == list(PERMISSIONS)


@pytest.mark.parametrize("permission", list(PERMISSIONS))
def test_doc_description_matches_code(permission: str) -> None:
    assert DOC_MATRIX[permission][0] == PERMISSIONS[permission]


@pytest.mark.parametrize("permission", list(PERMISSIONS))
@pytest.mark.parametrize("role", list(ROLE_PERMISSIONS))
def test_role_permission_matches_doc(role: Role, permission: str) -> None:
    documented = DOC_MATRIX[permission][1][role.value]
    assert (permission in ROLE_PERMISSIONS[role]) is documented, (
        f"{role.value} / {permission}: code and docs/permissions.md disagree"
    )


def test_roles_only_use_known_permissions() -> None:
    for role, perms in ROLE_PERMISSIONS.items():
        assert perms <= set(PERMISSIONS), role
    assert set(ROLE_PERMISSIONS) == set(Role)
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(PERMISSIONS)


def test_doc_explains_scope_and_overrides() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert "leads:read_all" in doc and "leads:write_all" in doc
    assert "organization_members.permissions" in doc
    assert re.search(r'\{"[a-z_]+:[a-z_]+": (true|false)', doc)


# --- per-member overrides -------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_no_overrides_is_the_role(role: str) -> None:
    assert effective_permissions(role, None) == ROLE_PERMISSIONS[Role(role)]
    assert effective_permissions(role, {}) == ROLE_PERMISSIONS[Role(role)]


def test_override_grants() -> None:
    perms = effective_permissions("sales", {"leads:read_all": True, "leads:delete": True})
    assert perms == ROLE_PERMISSIONS[Role.SALES] | {"leads:read_all", "leads:delete"}


def test_override_revokes() -> None:
    perms = effective_permissions("manager", {"leads:delete": False, "audit:read": False})
    assert perms == ROLE_PERMISSIONS[Role.MANAGER] - {"leads:delete", "audit:read"}


def test_override_of_what_the_role_already_says_changes_nothing() -> None:
    assert (
        effective_permissions("viewer", {"leads:read": True, "leads:write": False})
        == ROLE_PERMISSIONS[Role.VIEWER]
    )


def test_unknown_or_non_boolean_overrides_are_ignored() -> None:
    perms = effective_permissions(
        "viewer", {"leads:everything": True, "admin": True, "leads:write": "yes", "leads:read": 0}
    )
    assert perms == ROLE_PERMISSIONS[Role.VIEWER]


def test_unknown_role_has_no_permissions() -> None:
    assert effective_permissions("owner", None) == frozenset()
    assert effective_permissions("owner", {"leads:read": True}) == {"leads:read"}


def test_validate_overrides() -> None:
    assert validate_overrides({"leads:read_all": True, "leads:delete": False}) == {
        "leads:read_all": True,
        "leads:delete": False,
    }
    assert validate_overrides({}) == {}
    with pytest.raises(ValueError, match="unknown permissions: leads:everything"):
        validate_overrides({"leads:everything": True})
    with pytest.raises(ValueError, match="true or false: leads:read_all"):
        validate_overrides({"leads:read_all": "yes"})
    with pytest.raises(ValueError, match="true or false"):
        validate_overrides({"leads:read_all": 1})


# --- over HTTP: one organization with a member in each role ---------------------------


@dataclass
class Member:
    role: str
    email: str
    user_id: uuid.UUID
    member_id: uuid.UUID
    headers: dict[str, str]


@dataclass
class Team:
    org_id: uuid.UUID
    members: dict[str, Member]  # admin, manager, sales, sales2, viewer

    def __getitem__(self, key: str) -> Member:
        return self.members[key]


@pytest.fixture(scope="module")
async def team(app: Any) -> Team:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        admin = await signup(c, full_name="Admin")
        emails = {"admin": admin["email"]}
        headers = {"admin": admin["headers"]}
        for key, role in [
            ("manager", "manager"),
            ("sales", "sales"),
            ("sales2", "sales"),
            ("viewer", "viewer"),
        ]:
            emails[key] = await join(c, admin["headers"], role)
            headers[key] = await login(c, emails[key])
        r = await c.get("/api/v1/members", headers=admin["headers"])
        assert r.status_code == 200, r.text
        by_email = {m["email"]: m for m in r.json()}
        members = {}
        for key, email in emails.items():
            m = by_email[email]
            members[key] = Member(
                role=m["role"],
                email=email,
                user_id=uuid.UUID(m["user_id"]),
                member_id=uuid.UUID(m["id"]),
                headers=headers[key],
            )
            assert m["role"] == key.rstrip("2")
    return Team(org_id=uuid.UUID(admin["organization_id"]), members=members)


async def _lead(
    c: httpx.AsyncClient, team: Team, *, assigned_to: str | None = None, **fields: Any
) -> dict[str, Any]:
    """A lead created by the admin, optionally assigned to one of the members."""
    if assigned_to:
        fields["assigned_to"] = str(team[assigned_to].user_id)
    return await create_lead(c, team["admin"].headers, **fields)


async def _set_overrides(
    c: httpx.AsyncClient, team: Team, who: str, overrides: dict[str, bool]
) -> None:
    r = await c.patch(
        f"/api/v1/members/{team[who].member_id}",
        headers=team["admin"].headers,
        json={"permissions": overrides},
    )
    assert r.status_code == 200, r.text
    assert r.json()["permissions"] == overrides


# endpoint -> (permission it needs, roles allowed, status when allowed)
ENDPOINTS: dict[str, tuple[str, set[str], int]] = {
    "GET /leads": ("leads:read", {"admin", "manager", "sales", "viewer"}, 200),
    "POST /leads": ("leads:write", {"admin", "manager", "sales"}, 201),
    "PATCH /leads/{id}": ("leads:write", {"admin", "manager", "sales"}, 200),
    "DELETE /leads/{id}": ("leads:delete", {"admin", "manager"}, 204),
    "GET /members": ("members:read", {"admin", "manager", "sales", "viewer"}, 200),
    "PATCH /members/{id}": ("members:manage", {"admin"}, 200),
    "POST /invitations": ("members:manage", {"admin"}, 201),
    "GET /invitations": ("members:manage", {"admin"}, 200),
    "PATCH /organizations/current": ("settings:manage", {"admin"}, 200),
}


def test_endpoint_expectations_follow_the_matrix() -> None:
    """The hand-written HTTP expectations agree with the documented matrix."""
    for endpoint, (permission, allowed, _) in ENDPOINTS.items():
        documented = {r for r, ok in DOC_MATRIX[permission][1].items() if ok}
        assert allowed == documented, endpoint


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("role", ROLES)
async def test_http_matrix(team: Team, client: httpx.AsyncClient, role: str, endpoint: str) -> None:
    permission, allowed, ok_status = ENDPOINTS[endpoint]
    me = team[role]
    h = me.headers
    if endpoint == "GET /leads":
        r = await client.get("/api/v1/leads", headers=h)
    elif endpoint == "POST /leads":
        r = await client.post("/api/v1/leads", headers=h, json={"full_name": f"By {role}"})
    elif endpoint == "PATCH /leads/{id}":
        lead = await _lead(client, team, assigned_to=role)
        r = await client.patch(f"/api/v1/leads/{lead['id']}", headers=h, json={"company": role})
        if r.status_code == 200:
            assert r.json()["company"] == role
    elif endpoint == "DELETE /leads/{id}":
        lead = await _lead(client, team, assigned_to=role)
        r = await client.delete(f"/api/v1/leads/{lead['id']}", headers=h)
        after = await client.get(f"/api/v1/leads/{lead['id']}", headers=team["admin"].headers)
        assert after.status_code == (404 if role in allowed else 200)
    elif endpoint == "GET /members":
        r = await client.get("/api/v1/members", headers=h)
        if r.status_code == 200:
            assert {m["email"] for m in r.json()} == {m.email for m in team.members.values()}
    elif endpoint == "PATCH /members/{id}":
        r = await client.patch(
            f"/api/v1/members/{team['sales2'].member_id}", headers=h, json={"is_active": True}
        )
    elif endpoint == "POST /invitations":
        r = await client.post(
            "/api/v1/invitations",
            headers=h,
            json={"email": unique_email("invitee"), "role": "viewer"},
        )
    elif endpoint == "GET /invitations":
        r = await client.get("/api/v1/invitations", headers=h)
    elif endpoint == "PATCH /organizations/current":
        r = await client.patch(
            "/api/v1/organizations/current", headers=h, json={"settings": {"timezone": "UTC"}}
        )
    else:  # pragma: no cover
        raise AssertionError(endpoint)

    if role in allowed:
        assert r.status_code == ok_status, r.text
    else:
        assert r.status_code == 403, r.text
        problem = r.json()
        assert problem["code"] == "permission_denied"
        assert problem["permission"] == permission


# --- sales scope ----------------------------------------------------------------------


async def test_sales_sees_only_assigned_leads(team: Team, client: httpx.AsyncClient) -> None:
    mine = await _lead(client, team, assigned_to="sales")
    theirs = await _lead(client, team, assigned_to="sales2")
    unassigned = await _lead(client, team)
    h = team["sales"].headers

    r = await client.get("/api/v1/leads", headers=h, params={"limit": 200})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    ids = {i["id"] for i in items}
    assert mine["id"] in ids
    assert theirs["id"] not in ids and unassigned["id"] not in ids
    assert {i["assigned_to"] for i in items} == {str(team["sales"].user_id)}

    # Another member's lead does not exist for them: 404 on read, write and delete.
    for lead in (theirs, unassigned):
        url = f"/api/v1/leads/{lead['id']}"
        r = await client.get(url, headers=h)
        assert r.status_code == 404, r.text
        assert lead["full_name"] not in r.text
        r = await client.patch(url, headers=h, json={"company": "mine now"})
        assert r.status_code == 404, r.text
    r = await client.get(f"/api/v1/leads/{mine['id']}", headers=h)
    assert r.status_code == 200, r.text

    # Filtering by another assignee does not widen the scope.
    r = await client.get(
        "/api/v1/leads", headers=h, params={"assigned_to": str(team["sales2"].user_id)}
    )
    assert r.json()["items"] == []


async def test_sales_cannot_reassign(team: Team, client: httpx.AsyncClient) -> None:
    mine = await _lead(client, team, assigned_to="sales")
    r = await client.patch(
        f"/api/v1/leads/{mine['id']}",
        headers=team["sales"].headers,
        json={"assigned_to": str(team["sales2"].user_id)},
    )
    assert r.status_code == 403, r.text
    assert r.json()["permission"] == "leads:write_all"


async def test_sales_new_lead_is_their_own(team: Team, client: httpx.AsyncClient) -> None:
    me = team["sales"]
    for assigned in (None, team["sales2"].user_id, team["admin"].user_id):
        body: dict[str, Any] = {"full_name": "Own lead"}
        if assigned:
            body["assigned_to"] = str(assigned)
        r = await client.post("/api/v1/leads", headers=me.headers, json=body)
        assert r.status_code == 201, r.text
        assert r.json()["assigned_to"] == str(me.user_id)
    # A manager (leads:write_all) may create a lead for someone else.
    r = await client.post(
        "/api/v1/leads",
        headers=team["manager"].headers,
        json={"full_name": "For sales2", "assigned_to": str(team["sales2"].user_id)},
    )
    assert r.status_code == 201, r.text
    assert r.json()["assigned_to"] == str(team["sales2"].user_id)


async def test_read_all_override_widens_sales_scope(team: Team, client: httpx.AsyncClient) -> None:
    other = await _lead(client, team, assigned_to="sales")
    h = team["sales2"].headers
    r = await client.get(f"/api/v1/leads/{other['id']}", headers=h)
    assert r.status_code == 404
    try:
        await _set_overrides(client, team, "sales2", {"leads:read_all": True})
        me = await client.get("/api/v1/auth/me", headers=h)
        assert "leads:read_all" in me.json()["permissions"]
        r = await client.get("/api/v1/leads", headers=h, params={"limit": 200})
        assert r.status_code == 200, r.text
        assert other["id"] in {i["id"] for i in r.json()["items"]}
        r = await client.get(f"/api/v1/leads/{other['id']}", headers=h)
        assert r.status_code == 200, r.text
        # Reading all is not editing all.
        r = await client.patch(f"/api/v1/leads/{other['id']}", headers=h, json={"company": "x"})
        assert r.status_code == 404, r.text
    finally:
        await _set_overrides(client, team, "sales2", {})
    r = await client.get(f"/api/v1/leads/{other['id']}", headers=h)
    assert r.status_code == 404


async def test_write_all_override_lets_sales_edit_any_lead(
    team: Team, client: httpx.AsyncClient
) -> None:
    other = await _lead(client, team, assigned_to="sales")
    h = team["sales2"].headers
    try:
        await _set_overrides(
            client, team, "sales2", {"leads:read_all": True, "leads:write_all": True}
        )
        r = await client.patch(f"/api/v1/leads/{other['id']}", headers=h, json={"company": "y"})
        assert r.status_code == 200, r.text
        assert r.json()["company"] == "y"
    finally:
        await _set_overrides(client, team, "sales2", {})


async def test_revoke_override_removes_a_role_permission(
    team: Team, client: httpx.AsyncClient
) -> None:
    lead = await _lead(client, team)
    h = team["manager"].headers
    try:
        await _set_overrides(client, team, "manager", {"leads:delete": False})
        r = await client.delete(f"/api/v1/leads/{lead['id']}", headers=h)
        assert r.status_code == 403, r.text
        assert r.json()["permission"] == "leads:delete"
    finally:
        await _set_overrides(client, team, "manager", {})
    r = await client.delete(f"/api/v1/leads/{lead['id']}", headers=h)
    assert r.status_code == 204, r.text


async def test_grant_override_adds_a_permission(team: Team, client: httpx.AsyncClient) -> None:
    h = team["viewer"].headers
    r = await client.post("/api/v1/leads", headers=h, json={"full_name": "Viewer lead"})
    assert r.status_code == 403
    try:
        await _set_overrides(client, team, "viewer", {"leads:write": True})
        r = await client.post("/api/v1/leads", headers=h, json={"full_name": "Viewer lead"})
        assert r.status_code == 201, r.text
        # Without leads:write_all the new lead is the viewer's own.
        assert r.json()["assigned_to"] == str(team["viewer"].user_id)
    finally:
        await _set_overrides(client, team, "viewer", {})


async def test_unknown_override_is_rejected(team: Team, client: httpx.AsyncClient) -> None:
    r = await client.patch(
        f"/api/v1/members/{team['sales2'].member_id}",
        headers=team["admin"].headers,
        json={"permissions": {"leads:everything": True}},
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_permissions"
    r = await client.get("/api/v1/members", headers=team["admin"].headers)
    sales2 = next(m for m in r.json() if m["id"] == str(team["sales2"].member_id))
    assert sales2["permissions"] == {}


async def test_viewer_reads_all_but_cannot_write(team: Team, client: httpx.AsyncClient) -> None:
    a = await _lead(client, team, assigned_to="sales")
    b = await _lead(client, team, assigned_to="sales2")
    h = team["viewer"].headers
    r = await client.get("/api/v1/leads", headers=h, params={"limit": 200})
    assert r.status_code == 200, r.text
    assert {a["id"], b["id"]} <= {i["id"] for i in r.json()["items"]}
    r = await client.get(f"/api/v1/leads/{b['id']}", headers=h)
    assert r.status_code == 200, r.text
    r = await client.post("/api/v1/leads", headers=h, json={"full_name": "Nope"})
    assert r.status_code == 403
    assert r.json()["permission"] == "leads:write"
    r = await client.patch(f"/api/v1/leads/{a['id']}", headers=h, json={"company": "Nope"})
    assert r.status_code == 403
    assert r.json()["permission"] == "leads:write"


# --- audit trail of lead changes ------------------------------------------------------


async def _audit_rows(database: Database, team: Team, lead_id: str) -> list[dict[str, Any]]:
    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, team.org_id, team["admin"].user_id)
        rows = await s.execute(
            text(
                "SELECT action, resource_type, user_id, organization_id, changes, success"
                " FROM audit_logs WHERE resource_id = :id ORDER BY created_at, id"
            ),
            {"id": lead_id},
        )
        return [dict(r._mapping) for r in rows]


async def test_lead_changes_are_audited(
    team: Team, client: httpx.AsyncClient, database: Database
) -> None:
    admin = team["admin"]
    lead = await _lead(client, team, company="Acme", email="Cliente@Example.com")
    r = await client.patch(
        f"/api/v1/leads/{lead['id']}",
        headers=admin.headers,
        json={"company": "Beta", "job_title": "CEO", "full_name": lead["full_name"]},
    )
    assert r.status_code == 200, r.text
    r = await client.delete(f"/api/v1/leads/{lead['id']}", headers=admin.headers)
    assert r.status_code == 204, r.text

    rows = await _audit_rows(database, team, lead["id"])
    assert [row["action"] for row in rows] == ["create", "update", "delete"]
    for row in rows:
        assert row["resource_type"] == "lead"
        assert row["user_id"] == admin.user_id
        assert row["organization_id"] == team.org_id
        assert row["success"] is True

    created, updated, deleted = (row["changes"] for row in rows)
    assert created["before"] == {}
    assert created["after"]["full_name"] == lead["full_name"]
    assert created["after"]["company"] == "Acme"
    assert created["after"]["email"] == "cliente@example.com"
    assert created["after"]["stage_id"] == lead["stage_id"]
    assert created["after"]["status"] == "active"

    # Only the fields that changed (full_name was sent unchanged).
    assert updated == {
        "before": {"company": "Acme", "job_title": None},
        "after": {"company": "Beta", "job_title": "CEO"},
    }

    assert deleted["after"] == {}
    assert deleted["before"]["full_name"] == lead["full_name"]
    assert deleted["before"]["company"] == "Beta"
    assert deleted["before"]["job_title"] == "CEO"


async def test_refused_change_writes_no_audit_row(
    team: Team, client: httpx.AsyncClient, database: Database
) -> None:
    lead = await _lead(client, team, assigned_to="sales2")
    r = await client.patch(
        f"/api/v1/leads/{lead['id']}", headers=team["sales"].headers, json={"company": "x"}
    )
    assert r.status_code == 404
    r = await client.delete(f"/api/v1/leads/{lead['id']}", headers=team["sales"].headers)
    assert r.status_code == 403
    rows = await _audit_rows(database, team, lead["id"])
    assert [row["action"] for row in rows] == ["create"]
