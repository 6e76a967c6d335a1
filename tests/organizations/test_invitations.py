"""Invitations, memberships, switching organizations, and member management."""

from __future__ import annotations

import email
import email.policy
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import sqlalchemy as sa

from lovedcrm.config import Settings
from tests.factories import PASSWORD, signup, unique_email


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_of(accept_url: str) -> str:
    return parse_qs(urlparse(accept_url).query)["token"][0]


def mails_to(settings: Settings, to: str) -> list[str]:
    folder = Path(settings.data_dir) / "mail"
    bodies = []
    for file in folder.glob("*.eml"):
        msg = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
        if msg["To"] == to:
            part = msg.get_body(preferencelist=("plain",))
            assert part is not None
            bodies.append(part.get_content())
    return bodies


def audit_rows(owner_url: str, org_id: str, action: str) -> list[Any]:
    engine = sa.create_engine(owner_url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT * FROM audit_logs WHERE organization_id = CAST(:org AS uuid)"
                        " AND action = :action ORDER BY created_at"
                    ),
                    {"org": org_id, "action": action},
                ).mappings()
            )
    finally:
        engine.dispose()


async def invite(
    client: httpx.AsyncClient, admin: dict[str, Any], addr: str, role: str = "sales"
) -> httpx.Response:
    return await client.post(
        "/api/v1/invitations", json={"email": addr, "role": role}, headers=admin["headers"]
    )


async def login_tokens(client: httpx.AsyncClient, addr: str, password: str) -> dict[str, Any]:
    r = await client.post("/api/v1/auth/login", json={"email": addr, "password": password})
    assert r.status_code == 200, r.text
    tokens: dict[str, Any] = r.json()
    return tokens


async def new_member(
    client: httpx.AsyncClient, admin: dict[str, Any], role: str = "sales"
) -> dict[str, Any]:
    """Invite a brand-new person and accept; returns their email, tokens and headers."""
    addr = unique_email("member")
    r = await invite(client, admin, addr, role)
    assert r.status_code == 201, r.text
    r = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token_of(r.json()["accept_url"]), "full_name": "Bia", "password": PASSWORD},
    )
    assert r.status_code == 200, r.text
    tokens = await login_tokens(client, addr, PASSWORD)
    return {"email": addr, "tokens": tokens, "headers": bearer(tokens["access_token"])}


async def member_id(client: httpx.AsyncClient, admin: dict[str, Any], addr: str) -> str:
    r = await client.get("/api/v1/members", headers=admin["headers"])
    assert r.status_code == 200, r.text
    (found,) = [m for m in r.json() if m["email"] == addr]
    return str(found["id"])


async def test_invite_new_person_who_accepts(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await signup(client)
    addr = unique_email("invitee")
    r = await invite(client, admin, addr)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["email"] == addr and created["role"] == "sales"
    token = token_of(created["accept_url"])
    assert any(token in body for body in mails_to(settings, addr))

    r = await client.get("/api/v1/invitations", headers=admin["headers"])
    assert r.status_code == 200
    assert [i["id"] for i in r.json() if i["email"] == addr] == [created["id"]]

    r = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token, "full_name": "Bia Lima", "password": PASSWORD},
    )
    assert r.status_code == 200, r.text
    assert r.json()["organization_id"] == admin["organization_id"]
    assert r.json()["role"] == "sales"

    tokens = await login_tokens(client, addr, PASSWORD)
    r = await client.get("/api/v1/organizations", headers=bearer(tokens["access_token"]))
    assert r.status_code == 200
    assert [(o["organization_id"], o["role"]) for o in r.json()] == [
        (admin["organization_id"], "sales")
    ]
    me = (await client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))).json()
    assert me["user"]["email_verified"] is True
    assert me["role"] == "sales"

    # Accepted: the invitation is no longer pending and its token is spent.
    r = await client.get("/api/v1/invitations", headers=admin["headers"])
    assert all(i["email"] != addr for i in r.json())
    r = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token, "full_name": "Bia Lima", "password": PASSWORD},
    )
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_invitation"


async def test_existing_user_accepts_and_switches(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    other = await signup(client)  # has their own organization
    r = await invite(client, admin, other["email"])
    assert r.status_code == 201, r.text
    token = token_of(r.json()["accept_url"])

    r = await client.post(
        "/api/v1/invitations/accept", json={"token": token}, headers=other["headers"]
    )
    assert r.status_code == 200, r.text
    r = await client.get("/api/v1/organizations", headers=other["headers"])
    assert {(o["organization_id"], o["role"]) for o in r.json()} == {
        (other["organization_id"], "admin"),
        (admin["organization_id"], "sales"),
    }

    me = (await client.get("/api/v1/auth/me", headers=other["headers"])).json()
    assert me["organization_id"] == other["organization_id"] and me["role"] == "admin"
    r = await client.post(
        "/api/v1/auth/switch-organization",
        json={"organization_id": admin["organization_id"]},
        headers=other["headers"],
    )
    assert r.status_code == 200, r.text
    switched = r.json()
    assert switched["organization_id"] == admin["organization_id"]
    me = (await client.get("/api/v1/auth/me", headers=bearer(switched["access_token"]))).json()
    assert me["organization_id"] == admin["organization_id"]
    assert me["role"] == "sales"
    assert "members:manage" not in me["permissions"]

    # Not a member of that one.
    stranger = await signup(client)
    r = await client.post(
        "/api/v1/auth/switch-organization",
        json={"organization_id": stranger["organization_id"]},
        headers=bearer(switched["access_token"]),
    )
    assert r.status_code == 404
    assert r.json()["code"] == "organization_not_found"
    r = await client.post(
        "/api/v1/auth/switch-organization",
        json={"organization_id": str(uuid.uuid4())},
        headers=bearer(switched["access_token"]),
    )
    assert r.status_code == 404


async def test_new_person_flow_refuses_existing_account(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    other = await signup(client)
    r = await invite(client, admin, other["email"])
    r = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token_of(r.json()["accept_url"]), "full_name": "X", "password": PASSWORD},
    )
    assert r.status_code == 409
    assert r.json()["code"] == "email_taken"


async def test_invitation_for_another_email_is_refused(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    other = await signup(client)
    r = await invite(client, admin, unique_email("someone-else"))
    r = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token_of(r.json()["accept_url"])},
        headers=other["headers"],
    )
    assert r.status_code == 403
    assert r.json()["code"] == "invitation_email_mismatch"


async def test_inviting_an_existing_member_is_409(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    r = await invite(client, admin, admin["email"].upper())
    assert r.status_code == 409
    assert r.json()["code"] == "already_member"
    member = await new_member(client, admin)
    r = await invite(client, admin, member["email"])
    assert r.status_code == 409


async def test_sales_cannot_invite(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    sales = await new_member(client, admin)
    r = await invite(client, sales, unique_email())
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "permission_denied"
    assert r.json()["permission"] == "members:manage"
    r = await client.get("/api/v1/invitations", headers=sales["headers"])
    assert r.status_code == 403


async def test_revoked_invitation_cannot_be_accepted(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    addr = unique_email()
    r = await invite(client, admin, addr)
    inv = r.json()
    r = await client.delete(f"/api/v1/invitations/{inv['id']}", headers=admin["headers"])
    assert r.status_code == 204
    r = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token_of(inv["accept_url"]), "full_name": "X", "password": PASSWORD},
    )
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_invitation"


async def test_reinvite_replaces_the_pending_invitation(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    addr = unique_email()
    first = (await invite(client, admin, addr)).json()
    second = (await invite(client, admin, addr, "manager")).json()
    r = await client.get("/api/v1/invitations", headers=admin["headers"])
    assert [i["id"] for i in r.json() if i["email"] == addr] == [second["id"]]
    r = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token_of(first["accept_url"]), "full_name": "X", "password": PASSWORD},
    )
    assert r.status_code == 401


async def test_role_change_and_removal_are_audited(
    client: httpx.AsyncClient, owner_url: str
) -> None:
    admin = await signup(client)
    org = admin["organization_id"]
    member = await new_member(client, admin)
    mid = await member_id(client, admin, member["email"])

    r = await client.patch(
        f"/api/v1/members/{mid}", json={"role": "manager"}, headers=admin["headers"]
    )
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "manager"
    me = (await client.get("/api/v1/auth/me", headers=member["headers"])).json()
    assert me["role"] == "manager"
    rows = audit_rows(owner_url, org, "role_change")
    assert len(rows) == 1
    assert rows[0]["changes"] == {"before": {"role": "sales"}, "after": {"role": "manager"}}
    assert str(rows[0]["resource_id"]) == mid
    assert str(rows[0]["user_id"]) == admin["user"]["id"]

    r = await client.delete(f"/api/v1/members/{mid}", headers=admin["headers"])
    assert r.status_code == 204, r.text
    rows = audit_rows(owner_url, org, "member_remove")
    assert len(rows) == 1
    assert rows[0]["changes"]["before"]["role"] == "manager"
    assert str(rows[0]["resource_id"]) == mid
    r = await client.get("/api/v1/members", headers=admin["headers"])
    assert [m["email"] for m in r.json()] == [admin["email"]]
    # The removed member's token no longer reaches the organization.
    r = await client.get("/api/v1/members", headers=member["headers"])
    assert r.status_code == 403


async def test_last_admin_cannot_leave(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    mid = await member_id(client, admin, admin["email"])
    r = await client.patch(
        f"/api/v1/members/{mid}", json={"role": "sales"}, headers=admin["headers"]
    )
    assert r.status_code == 409
    assert r.json()["code"] == "last_admin"
    r = await client.patch(
        f"/api/v1/members/{mid}", json={"is_active": False}, headers=admin["headers"]
    )
    assert r.status_code == 409
    r = await client.delete(f"/api/v1/members/{mid}", headers=admin["headers"])
    assert r.status_code == 409
    assert r.json()["code"] == "last_admin"

    # With a second admin, the first may step down.
    second = await new_member(client, admin, role="admin")
    assert second["tokens"]["organization_id"] == admin["organization_id"]
    r = await client.patch(
        f"/api/v1/members/{mid}", json={"role": "sales"}, headers=admin["headers"]
    )
    assert r.status_code == 200, r.text
