"""Accounts through the JSON API: sign-up, log-in, tokens, email verification, password
reset, and the audit rows they leave."""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
from sqlalchemy import select, update

from lovedcrm.auth.models import OrganizationMember, User, UserToken
from lovedcrm.config import Settings
from lovedcrm.core import security
from lovedcrm.core.errors import ValidationFailed
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import set_tenant
from lovedcrm.leads.models import PipelineStage
from lovedcrm.messaging.models import MessageTemplate
from lovedcrm.organizations.models import Organization
from tests.factories import PASSWORD, signup, unique_email

PROBLEM = "application/problem+json"
NEW_PASSWORD = "outra-s3nha-boa"


# ---------------------------------------------------------------- helpers


def mailed_token(settings: Settings, to: str, path: str) -> str:
    """The token of the newest mail to ``to`` whose link points at ``path``."""
    folder = Path(settings.data_dir) / "mail"
    found: list[tuple[float, str]] = []
    for file in folder.glob("*.eml"):
        msg = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
        if msg["To"] != to:
            continue
        body = msg.get_body(preferencelist=("plain",))
        assert body is not None
        match = re.search(re.escape(path) + r"\?token=([A-Za-z0-9_\-]+)", body.get_content())
        if match:
            found.append((file.stat().st_mtime_ns, match.group(1)))
    assert found, f"no mail to {to} with a {path} link"
    return max(found)[1]


def owner_rows(owner_url: str, sql: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(owner_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).mappings())
    finally:
        engine.dispose()


async def login(client: httpx.AsyncClient, email_: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email_, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/v1/auth/me", headers=bearer(token))


# ---------------------------------------------------------------- sign-up


async def test_signup_creates_user_org_membership_stages_templates(
    client: httpx.AsyncClient, database: Database
) -> None:
    name = f"Souza Imóveis {uuid.uuid4().hex[:6]}"
    data = await signup(client, organization_name=name)
    org_id = uuid.UUID(data["organization_id"])
    user_id = uuid.UUID(data["user"]["id"])
    assert data["user"]["email"] == data["email"]
    assert data["user"]["email_verified"] is False
    assert data["organization_slug"] == re.sub(r"[^a-z0-9]+", "-", name.lower().replace("ó", "o"))
    assert data["tokens"]["token_type"] == "bearer"
    assert data["tokens"]["organization_id"] == str(org_id)

    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, org_id, user_id)
        user = await s.get(User, user_id)
        assert user is not None and user.email == data["email"]
        assert user.password_hash != PASSWORD
        org = await s.get(Organization, org_id)
        assert org is not None and org.name == name and org.slug == data["organization_slug"]
        members = (
            (
                await s.execute(
                    select(OrganizationMember).where(OrganizationMember.organization_id == org_id)
                )
            )
            .scalars()
            .all()
        )
        assert [(m.user_id, m.role) for m in members] == [(user_id, "admin")]
        stages = (
            (
                await s.execute(
                    select(PipelineStage)
                    .where(PipelineStage.organization_id == org_id)
                    .order_by(PipelineStage.stage_order)
                )
            )
            .scalars()
            .all()
        )
        assert [(st.name, st.stage_order, st.color) for st in stages] == [
            ("Lead", 1, "#ef4444"),
            ("Contato", 2, "#f97316"),
            ("Proposta", 3, "#eab308"),
            ("Negociação", 4, "#22c55e"),
            ("Fechado", 5, "#6366f1"),
        ]
        templates = (
            (
                await s.execute(
                    select(MessageTemplate).where(MessageTemplate.organization_id == org_id)
                )
            )
            .scalars()
            .all()
        )
        assert sorted(t.name for t in templates) == sorted(
            ["Saudação Inicial", "Follow-up", "Fechamento"]
        )
        assert all("{{lead_name}}" in t.content for t in templates)


async def test_same_org_name_gets_a_different_slug(client: httpx.AsyncClient) -> None:
    name = f"Mesma Empresa {uuid.uuid4().hex[:6]}"
    first = await signup(client, organization_name=name)
    second = await signup(client, organization_name=name)
    assert first["organization_slug"] != second["organization_slug"]
    assert second["organization_slug"].startswith(first["organization_slug"])


async def test_email_taken_is_409_case_insensitive(client: httpx.AsyncClient) -> None:
    data = await signup(client)
    for candidate in (data["email"], data["email"].upper()):
        r = await client.post(
            "/api/v1/auth/signup",
            json={
                "email": candidate,
                "password": PASSWORD,
                "full_name": "Outra Pessoa",
                "organization_name": "Outra Org",
            },
        )
        assert r.status_code == 409, r.text
        assert r.headers["content-type"].startswith(PROBLEM)
        assert r.json()["code"] == "email_taken"


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("curta1", "10 characters"),
        ("somenteletrasaqui", "digit or symbol"),
        ("1234567890!", "letter"),
    ],
)
async def test_weak_password_is_422_naming_the_rule(
    client: httpx.AsyncClient, password: str, rule: str
) -> None:
    r = await client.post(
        "/api/v1/auth/signup",
        json={
            "email": unique_email(),
            "password": password,
            "full_name": "Ana",
            "organization_name": "Org",
        },
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["code"] == "weak_password"
    assert rule in body["detail"]
    assert any(e["field"] == "password" for e in body["errors"])


async def test_password_equal_to_email_is_weak(client: httpx.AsyncClient) -> None:
    addr = unique_email()
    r = await client.post(
        "/api/v1/auth/signup",
        json={"email": addr, "password": addr, "full_name": "Ana", "organization_name": "Org"},
    )
    assert r.status_code == 422
    assert r.json()["code"] == "weak_password"
    assert "email" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"email": "ana@example.com"}, {"password", "full_name", "organization_name"}),
        (
            {
                "email": "ana@example.com",
                "password": PASSWORD,
                "full_name": "Ana",
                "organization_name": "Org",
                "is_admin": True,
            },
            {"is_admin"},
        ),
        (
            {
                "email": "not-an-email",
                "password": PASSWORD,
                "full_name": "Ana",
                "organization_name": "Org",
            },
            {"email"},
        ),
    ],
    ids=["missing", "unknown", "bad-email"],
)
async def test_malformed_signup_lists_each_field(
    client: httpx.AsyncClient, body: dict[str, Any], fields: set[str]
) -> None:
    r = await client.post("/api/v1/auth/signup", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    data = r.json()
    assert data["code"] == "validation_error"
    assert data["status"] == 422
    assert {e["field"] for e in data["errors"]} == fields
    for field in fields:
        assert field in data["detail"]


async def test_signup_is_atomic(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lovedcrm.organizations import service

    real = service.create_organization
    calls: list[str] = []

    async def failing(*args: Any, **kwargs: Any) -> Any:
        org = await real(*args, **kwargs)  # user, org, member, stages, templates all written
        calls.append(org.slug)
        raise ValidationFailed("boom after the rows were written", code="forced_failure")

    monkeypatch.setattr(service, "create_organization", failing)
    addr = unique_email("atomic")
    body = {
        "email": addr,
        "password": PASSWORD,
        "full_name": "Ana",
        "organization_name": f"Atomic {uuid.uuid4().hex[:6]}",
    }
    r = await client.post("/api/v1/auth/signup", json=body)
    assert r.status_code == 422 and r.json()["code"] == "forced_failure"
    assert calls, "the failure was not forced after the organization was written"

    async with database.sessionmaker() as s, s.begin():
        assert (await s.execute(select(User).where(User.email == addr))).first() is None

    monkeypatch.setattr(service, "create_organization", real)
    r = await client.post("/api/v1/auth/signup", json=body)
    assert r.status_code == 201, r.text
    # The rolled-back organization did not keep its slug.
    assert r.json()["organization_slug"] == calls[0]


# ---------------------------------------------------------------- log-in


async def test_login_issues_tokens_and_sets_last_login(client: httpx.AsyncClient) -> None:
    data = await signup(client)
    assert data["user"]["last_login_at"] is None
    r = await login(client, data["email"].upper(), PASSWORD)
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["access_token"] and tokens["refresh_token"]
    assert tokens["expires_in"] > 0
    assert tokens["organization_id"] == data["organization_id"]
    m = await me(client, tokens["access_token"])
    assert m.status_code == 200
    assert m.json()["user"]["last_login_at"] is not None
    assert m.json()["role"] == "admin"


async def test_wrong_password_and_unknown_email_look_the_same(client: httpx.AsyncClient) -> None:
    data = await signup(client)
    wrong = await login(client, data["email"], "senha-errada-123")
    unknown = await login(client, unique_email("nobody"), "senha-errada-123")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.headers["content-type"].startswith(PROBLEM)
    a, b = wrong.json(), unknown.json()
    assert a["code"] == b["code"] == "invalid_credentials"
    assert a["detail"] == b["detail"]
    assert a["title"] == b["title"]


async def test_login_throttled_after_ten_failures(client: httpx.AsyncClient) -> None:
    data = await signup(client)
    other = await signup(client)
    for _ in range(10):
        r = await login(client, data["email"], "senha-errada-123")
        assert r.status_code == 401
    r = await login(client, data["email"], PASSWORD)
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "login_throttled"
    assert int(r.headers["retry-after"]) > 0
    # Another email from the same address is not affected.
    r = await login(client, other["email"], PASSWORD)
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------- tokens


def _claims(data: dict[str, Any], **over: Any) -> dict[str, Any]:
    decoded = jwt.decode(data["tokens"]["access_token"], options={"verify_signature": False})
    return {**decoded, **over}


async def test_forged_expired_and_garbage_tokens_are_rejected(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    data = await signup(client)
    assert (await me(client, data["tokens"]["access_token"])).status_code == 200

    forged = jwt.encode(_claims(data), "another-key-" + "x" * 40, algorithm="HS256")
    past = security.utcnow() - timedelta(minutes=5)
    expired = jwt.encode(
        _claims(
            data, iat=int((past - timedelta(minutes=15)).timestamp()), exp=int(past.timestamp())
        ),
        settings.secret_key.get_secret_value(),
        algorithm=security.JWT_ALGORITHM,
    )
    for token in (forged, expired, "garbage", "a.b.c"):
        r = await me(client, token)
        assert r.status_code == 401, token
        assert r.headers["content-type"].startswith(PROBLEM)
        assert r.json()["code"] == "invalid_token"
    r = await client.get("/api/v1/auth/me")
    assert r.status_code == 401
    assert r.json()["code"] == "not_authenticated"


async def test_logout_ends_the_access_token(client: httpx.AsyncClient) -> None:
    data = await signup(client)
    token = data["tokens"]["access_token"]
    r = await client.post("/api/v1/auth/logout", headers=bearer(token))
    assert r.status_code == 200, r.text
    r = await me(client, token)
    assert r.status_code == 401
    # The refresh token of that session is dead too.
    r = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": data["tokens"]["refresh_token"]}
    )
    assert r.status_code == 401


async def test_refresh_rotates(client: httpx.AsyncClient) -> None:
    data = await signup(client)
    old = data["tokens"]["refresh_token"]
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": old})
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["refresh_token"] != old
    assert (await me(client, new["access_token"])).status_code == 200
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
    assert r.status_code == 200, r.text
    # The rotated token again: a stolen copy (tests/auth/test_token_and_login_races.py).
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": old})
    assert r.status_code == 401
    assert r.json()["code"] == "refresh_token_reused"


# ---------------------------------------------------------------- email verification


async def test_verify_email_with_mailed_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    data = await signup(client)
    token = mailed_token(settings, data["email"], "/verify-email")
    r = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert r.status_code == 200, r.text
    m = await me(client, data["tokens"]["access_token"])
    assert m.json()["user"]["email_verified"] is True
    again = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert again.status_code == 401
    assert again.json()["code"] == "invalid_token"
    rnd = await client.post("/api/v1/auth/verify-email", json={"token": security.new_token()})
    assert rnd.status_code == 401


# ---------------------------------------------------------------- password reset


async def test_password_reset_request_does_not_reveal_accounts(client: httpx.AsyncClient) -> None:
    data = await signup(client)
    known = await client.post("/api/v1/auth/password-reset/request", json={"email": data["email"]})
    unknown = await client.post(
        "/api/v1/auth/password-reset/request", json={"email": unique_email("ghost")}
    )
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()


async def test_password_reset_flow(client: httpx.AsyncClient, settings: Settings) -> None:
    data = await signup(client)
    old_access = data["tokens"]["access_token"]
    r = await client.post("/api/v1/auth/password-reset/request", json={"email": data["email"]})
    assert r.status_code == 202
    token = mailed_token(settings, data["email"], "/reset-password")

    # A weak password is refused and does not use up the link.
    r = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "fraca"}
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "weak_password"

    r = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert r.status_code == 200, r.text
    assert (await login(client, data["email"], PASSWORD)).status_code == 401
    assert (await login(client, data["email"], NEW_PASSWORD)).status_code == 200
    # Existing sessions ended.
    assert (await me(client, old_access)).status_code == 401
    # Single use.
    r = await client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"token": token, "new_password": "terceira-s3nha"},
    )
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_token"


async def test_expired_reset_token(
    client: httpx.AsyncClient, settings: Settings, database: Database
) -> None:
    data = await signup(client)
    await client.post("/api/v1/auth/password-reset/request", json={"email": data["email"]})
    token = mailed_token(settings, data["email"], "/reset-password")
    async with database.sessionmaker() as s, s.begin():
        result = await s.execute(
            update(UserToken)
            .where(UserToken.token_hash == security.token_hash(token))
            .values(expires_at=security.utcnow() - timedelta(minutes=1))
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]
    r = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert r.status_code == 401
    assert (await login(client, data["email"], PASSWORD)).status_code == 200


# ---------------------------------------------------------------- audit trail


async def test_audit_rows_for_signup_and_logins(client: httpx.AsyncClient, owner_url: str) -> None:
    addr = unique_email("audited")
    r = await client.post(
        "/api/v1/auth/signup",
        json={"email": addr, "password": PASSWORD, "full_name": "Ana", "organization_name": "Aud"},
    )
    assert r.status_code == 201
    signup_rid = r.headers["x-request-id"]
    user_id, org_id = r.json()["user"]["id"], r.json()["organization_id"]
    ok = await login(client, addr, PASSWORD)
    bad = await login(client, addr, "senha-errada-123")
    assert ok.status_code == 200 and bad.status_code == 401

    rows = owner_rows(
        owner_url,
        "SELECT * FROM audit_logs WHERE request_id = ANY(CAST(:ids AS uuid[])) ORDER BY created_at",
        ids=[signup_rid, ok.headers["x-request-id"], bad.headers["x-request-id"]],
    )
    by_rid = {str(row["request_id"]): row for row in rows if row["action"] in ("signup", "login")}
    assert set(by_rid) == {signup_rid, ok.headers["x-request-id"], bad.headers["x-request-id"]}
    for row in by_rid.values():
        assert str(row["ip_address"]) == "203.0.113.7"

    s = by_rid[signup_rid]
    assert s["action"] == "signup" and s["success"] is True
    assert str(s["organization_id"]) == org_id and str(s["user_id"]) == user_id

    good = by_rid[ok.headers["x-request-id"]]
    assert good["action"] == "login" and good["success"] is True
    assert str(good["organization_id"]) == org_id and str(good["user_id"]) == user_id

    fail = by_rid[bad.headers["x-request-id"]]
    assert fail["action"] == "login"
    assert fail["success"] is False
    assert fail["organization_id"] is None
    assert fail["changes"]["email"] == addr
    assert fail["failure_reason"] == "bad_credentials"


async def test_audit_row_for_unknown_email_failure(
    client: httpx.AsyncClient, owner_url: str
) -> None:
    addr = unique_email("ghost")
    r = await login(client, addr, "qualquer-c0isa")
    assert r.status_code == 401
    rows = owner_rows(
        owner_url,
        "SELECT * FROM audit_logs WHERE request_id = CAST(:rid AS uuid)",
        rid=r.headers["x-request-id"],
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["success"] is False and row["organization_id"] is None and row["user_id"] is None
    assert row["changes"]["email"] == addr
    assert str(row["ip_address"]) == "203.0.113.7"
