"""Cross-cutting HTTP behaviour: problem+json, request ids, body limit, OpenAPI."""

from __future__ import annotations

import httpx

PROBLEM = "application/problem+json"


async def test_unknown_route_is_problem_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/nope")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == 404 and body["code"] == "not_found"
    assert body["request_id"] == r.headers["x-request-id"]


async def test_client_request_id_is_kept_when_well_formed(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz", headers={"X-Request-ID": "abc12345-trace"})
    assert r.headers["x-request-id"] == "abc12345-trace"
    r = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces"


async def test_body_over_the_limit_is_413_naming_it(
    client: httpx.AsyncClient, settings: object
) -> None:
    limit = settings.max_body_bytes  # type: ignore[attr-defined]
    r = await client.post(
        "/api/v1/auth/login",
        content=b"x" * (limit + 1),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert r.headers["content-type"].startswith(PROBLEM)
    assert str(limit) in r.json()["detail"]


async def test_body_over_the_limit_without_content_length(
    client: httpx.AsyncClient, settings: object
) -> None:
    limit = settings.max_body_bytes  # type: ignore[attr-defined]

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    r = await client.post(
        "/api/v1/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


async def test_unknown_field_is_422_naming_it(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/auth/login", json={"email": "a@b.com", "password": "x", "admin": True}
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["admin"]


async def test_openapi_is_3_1_with_bearer_security(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    assert "/api/v1/auth/signup" in doc["paths"]
    r = await client.get("/docs")
    assert r.status_code == 200


async def test_openapi_documents_validation_errors_as_problem_json(
    client: httpx.AsyncClient,
) -> None:
    doc = (await client.get("/openapi.json")).json()
    documented = 0
    for path in doc["paths"].values():
        for operation in path.values():
            response = operation.get("responses", {}).get("422")
            if response is None:
                continue
            documented += 1
            assert list(response["content"]) == ["application/problem+json"]
    assert documented > 20
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert "errors" in doc["components"]["schemas"]["ValidationProblem"]["properties"]


async def test_healthz_db_runs_a_query(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz/db")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_the_favicon_is_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/favicon.ico")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("image/svg+xml") and b"<svg" in r.content
