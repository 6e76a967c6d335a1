"""API keys (§7.1): management by admins, authentication by key, scopes, revocation,
expiry, tenant isolation, and usage written by the flusher rather than per request."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from lovedcrm.auth import api_keys
from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from tests.factories import bearer, create_lead, join, join_and_login, login, signup


async def make_key(c: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    payload = {"name": "Integration", "scopes": ["leads:read"], **body}
    r = await c.post("/api/v1/api-keys", headers=headers, json=payload)
    assert r.status_code == 201, r.text
    return dict(r.json())


# --- management -------------------------------------------------------------------------


async def test_create_list_get_revoke(client: httpx.AsyncClient, owner: Any) -> None:
    admin = await signup(client)
    created = await make_key(
        client,
        admin["headers"],
        name="Zapier",
        scopes=["leads:write", "leads:read", "leads:read"],
        rate_limit_per_hour=250,
    )
    key = created["key"]
    assert key.startswith("lcrm_")
    assert key[5:13] == created["prefix"] and len(created["prefix"]) == 8
    assert key[13] == "_" and len(key[14:]) >= 32
    assert created["scopes"] == ["leads:read", "leads:write"]
    assert created["rate_limit_per_hour"] == 250
    assert created["is_active"] is True and created["total_requests"] == 0

    r = await client.get("/api/v1/api-keys", headers=admin["headers"])
    assert r.status_code == 200
    assert [k["id"] for k in r.json()] == [created["id"]]
    assert "key" not in r.json()[0] and key not in r.text and key[14:] not in r.text

    r = await client.get(f"/api/v1/api-keys/{created['id']}", headers=admin["headers"])
    assert r.status_code == 200 and r.json()["name"] == "Zapier" and "key" not in r.json()

    r = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin["headers"])
    assert r.status_code == 204
    r = await client.get(f"/api/v1/api-keys/{created['id']}", headers=admin["headers"])
    assert r.json()["is_active"] is False

    with owner.connect() as conn:
        actions = conn.execute(
            text("SELECT action FROM audit_logs WHERE resource_id = :id ORDER BY created_at"),
            {"id": created["id"]},
        ).scalars()
        assert list(actions) == ["api_key_create", "api_key_revoke"]


async def test_secret_is_shown_once_and_only_its_hash_stored(
    client: httpx.AsyncClient, owner: Any
) -> None:
    admin = await signup(client)
    created = await make_key(client, admin["headers"])
    key = created["key"]
    with owner.connect() as conn:
        row = conn.execute(
            text("SELECT * FROM api_keys WHERE id = :id"), {"id": created["id"]}
        ).one()
    values = [str(v) for v in row._mapping.values() if v is not None]
    assert key not in values
    assert not any(key[14:] in v for v in values)  # not even the secret part
    assert row.api_key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert row.api_key_prefix == created["prefix"]


async def test_bad_input(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    h = admin["headers"]
    r = await client.post("/api/v1/api-keys", headers=h, json={"name": "x", "scopes": ["a:b"]})
    assert r.status_code == 422 and r.json()["code"] == "invalid_scope"
    # members:manage is a permission but not something a key may hold.
    r = await client.post(
        "/api/v1/api-keys", headers=h, json={"name": "x", "scopes": ["members:manage"]}
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_scope"
    r = await client.post(
        "/api/v1/api-keys",
        headers=h,
        json={"name": "x", "scopes": ["leads:read"], "is_active": True},
    )
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    r = await client.post("/api/v1/api-keys", headers=h, json={"name": "x", "scopes": []})
    assert r.status_code == 422
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    r = await client.post(
        "/api/v1/api-keys",
        headers=h,
        json={"name": "x", "scopes": ["leads:read"], "expires_at": past},
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_expiry"
    for bad in (0, 100_001):
        r = await client.post(
            "/api/v1/api-keys",
            headers=h,
            json={"name": "x", "scopes": ["leads:read"], "rate_limit_per_hour": bad},
        )
        assert r.status_code == 422
    r = await client.get("/api/v1/api-keys/scopes", headers=h)
    assert r.status_code == 200
    assert {s["name"] for s in r.json()} == set(api_keys.SCOPES)


async def test_other_roles_cannot_manage_keys(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    for role in ("manager", "sales", "viewer"):
        headers = await join_and_login(client, admin["headers"], role)
        r = await client.post(
            "/api/v1/api-keys", headers=headers, json={"name": "x", "scopes": ["leads:read"]}
        )
        assert r.status_code == 403, (role, r.text)
        assert r.json()["code"] == "permission_denied"
        assert r.json()["permission"] == "api_keys:manage"
        r = await client.get("/api/v1/api-keys", headers=headers)
        assert r.status_code == 403


# --- authentication by key ----------------------------------------------------------------


async def test_key_reads_leads_of_its_organization(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    lead = await create_lead(client, admin["headers"])
    key = (await make_key(client, admin["headers"], scopes=["leads:read"]))["key"]
    r = await client.get("/api/v1/leads", headers=bearer(key))
    assert r.status_code == 200, r.text
    assert [i["id"] for i in r.json()["items"]] == [lead["id"]]
    r = await client.get(f"/api/v1/leads/{lead['id']}", headers=bearer(key))
    assert r.status_code == 200


async def test_key_with_write_scope_creates_leads(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    key = (await make_key(client, admin["headers"], scopes=["leads:read", "leads:write"]))["key"]
    lead = await create_lead(client, bearer(key))
    r = await client.get(f"/api/v1/leads/{lead['id']}", headers=admin["headers"])
    assert r.status_code == 200


async def test_missing_scope_is_403_naming_it(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    key = (await make_key(client, admin["headers"], scopes=["leads:read"]))["key"]
    r = await client.post("/api/v1/leads", headers=bearer(key), json={"full_name": "Nope"})
    assert r.status_code == 403
    body = r.json()
    assert body["detail"] == "This API key lacks the 'leads:write' scope."
    assert body["scope"] == body["permission"] == "leads:write"
    assert r.headers["content-type"] == "application/problem+json"
    r = await client.get("/api/v1/members", headers=bearer(key))
    assert r.status_code == 403 and r.json()["scope"] == "members:read"


async def test_revoked_key_is_refused_at_once(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    created = await make_key(client, admin["headers"])
    assert (await client.get("/api/v1/leads", headers=bearer(created["key"]))).status_code == 200
    r = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin["headers"])
    assert r.status_code == 204
    r = await client.get("/api/v1/leads", headers=bearer(created["key"]))
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_api_key"
    assert "revoked" in r.json()["detail"]


async def test_expired_key_is_refused(client: httpx.AsyncClient, owner: Any) -> None:
    admin = await signup(client)
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = await make_key(client, admin["headers"], expires_at=soon)
    assert (await client.get("/api/v1/leads", headers=bearer(created["key"]))).status_code == 200
    with owner.begin() as conn:
        conn.execute(
            text("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": created["id"]},
        )
    r = await client.get("/api/v1/leads", headers=bearer(created["key"]))
    assert r.status_code == 401 and r.json()["code"] == "invalid_api_key"
    assert "expired" in r.json()["detail"]


async def test_unknown_or_tampered_keys_are_refused(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    key = (await make_key(client, admin["headers"]))["key"]
    tampered = [
        key[:-1] + ("A" if key[-1] != "A" else "B"),  # wrong secret
        key[:5] + "ZZZZZZZZ" + key[13:],  # wrong prefix
        key[:14] + key[14:][::-1],  # right prefix, another secret
        "lcrm_short",
    ]
    for bad in tampered:
        r = await client.get("/api/v1/leads", headers=bearer(bad))
        assert r.status_code == 401, bad
        assert r.json()["code"] == "invalid_api_key"


async def test_key_cannot_manage_keys_or_use_account_routes(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    key = (await make_key(client, admin["headers"], scopes=sorted(api_keys.SCOPES)))["key"]
    for method, url, body in [
        ("POST", "/api/v1/api-keys", {"name": "x", "scopes": ["leads:read"]}),
        ("GET", "/api/v1/api-keys", None),
        ("GET", "/api/v1/auth/me", None),
        ("POST", "/api/v1/organizations", {"name": "Spawned by a key"}),
    ]:
        r = await client.request(method, url, headers=bearer(key), json=body)
        assert r.status_code == 403, (url, r.text)
        assert r.json()["code"] == "api_keys_require_user"


async def test_key_of_one_organization_cannot_reach_another(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    b = await signup(client)
    lead_b = await create_lead(client, b["headers"])
    key_a = await make_key(client, a["headers"], scopes=["leads:read", "leads:write"])
    r = await client.get(f"/api/v1/leads/{lead_b['id']}", headers=bearer(key_a["key"]))
    assert r.status_code == 404
    r = await client.patch(
        f"/api/v1/leads/{lead_b['id']}", headers=bearer(key_a["key"]), json={"company": "X"}
    )
    assert r.status_code == 404
    # Nor can B's admin see or revoke A's key.
    r = await client.get(f"/api/v1/api-keys/{key_a['id']}", headers=b["headers"])
    assert r.status_code == 404 and r.json()["code"] == "api_key_not_found"
    r = await client.delete(f"/api/v1/api-keys/{key_a['id']}", headers=b["headers"])
    assert r.status_code == 404
    assert (await client.get("/api/v1/leads", headers=bearer(key_a["key"]))).status_code == 200


async def test_key_stops_when_its_creator_leaves(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    other_email = await join(client, admin["headers"], "admin")
    other_admin = await login(client, other_email)
    key = (await make_key(client, other_admin, scopes=["leads:read"]))["key"]
    assert (await client.get("/api/v1/leads", headers=bearer(key))).status_code == 200
    members = (await client.get("/api/v1/members", headers=admin["headers"])).json()
    member_id = next(m["id"] for m in members if m["email"] == other_email)
    r = await client.delete(f"/api/v1/members/{member_id}", headers=admin["headers"])
    assert r.status_code == 204, r.text
    r = await client.get("/api/v1/leads", headers=bearer(key))
    assert r.status_code == 401 and r.json()["code"] == "invalid_api_key"


# --- usage ----------------------------------------------------------------------------------


async def test_usage_is_written_by_the_flush_not_per_request(
    client: httpx.AsyncClient, owner: Any, database: Database
) -> None:
    admin = await signup(client)
    created = await make_key(client, admin["headers"])
    for _ in range(3):
        assert (
            await client.get("/api/v1/leads", headers=bearer(created["key"]))
        ).status_code == 200

    def stored() -> Any:
        with owner.connect() as conn:
            return conn.execute(
                text("SELECT total_requests, last_used_at FROM api_keys WHERE id = :id"),
                {"id": created["id"]},
            ).one()

    before = stored()
    assert before.total_requests == 0 and before.last_used_at is None  # no write per request
    assert api_keys.pending_usage()[uuid.UUID(created["id"])] == 3

    await api_keys.flush_usage(database)
    after = stored()
    assert after.total_requests == 3
    assert after.last_used_at is not None
    assert uuid.UUID(created["id"]) not in api_keys.pending_usage()

    # Counts add up across flushes; last_used_at never goes back.
    assert (await client.get("/api/v1/leads", headers=bearer(created["key"]))).status_code == 200
    await api_keys.flush_usage(database)
    again = stored()
    assert again.total_requests == 4 and again.last_used_at >= after.last_used_at
    r = await client.get(f"/api/v1/api-keys/{created['id']}", headers=admin["headers"])
    assert r.json()["total_requests"] == 4


async def test_openapi_documents_the_routes_andbearer(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    post = spec["paths"]["/api/v1/api-keys"]["post"]
    assert post["tags"] == ["api-keys"]
    assert {"HTTPBearer": []} in post["security"]
    assert "201" in post["responses"]
    assert "/api/v1/api-keys/{key_id}" in spec["paths"]
    assert "API key" in spec["components"]["securitySchemes"]["HTTPBearer"]["description"]


async def test_app_lifespan_flushes_usage_at_shutdown(
    settings: Settings, owner_url: str, owner: Any
) -> None:
    """The flusher runs in the app's lifespan and writes what is left when it stops."""
    from sqlalchemy.engine import make_url

    from lovedcrm.app import create_app
    from lovedcrm.db.engine import create_database as create_db_handle

    slow = settings.model_copy(update={"api_key_usage_flush_seconds": 3600.0})
    app = create_app(slow, database=create_db_handle(slow, owner=make_url(owner_url)))

    def total(key_id: str) -> int:
        with owner.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT total_requests FROM api_keys WHERE id = :id"), {"id": key_id}
                ).scalar_one()
            )

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.8", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            admin = await signup(c)
            created = await make_key(c, admin["headers"])
            for _ in range(2):
                r = await c.get("/api/v1/leads", headers=bearer(created["key"]))
                assert r.status_code == 200
            assert total(created["id"]) == 0
    assert total(created["id"]) == 2
