"""The OpenAPI document a generated client is built from, and the pages that show it.

- every component has its own title (two ``MessageOut`` made a generated client lose the
  messages endpoints);
- every operation documents the errors it can answer, all as ``application/problem+json``;
- /docs and /redoc work offline: only local URLs, every asset served, no inline script;
- the ``leads:read`` scope says what it does for a key: every lead of the organization.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import create_lead, join_and_login, signup

PROBLEM = "application/problem+json"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def doc(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    data: dict[str, Any] = r.json()
    return data


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, item in doc["paths"].items() for m, op in item.items()]


async def test_every_component_has_its_own_title(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    titles = [schema.get("title", name) for name, schema in schemas.items()]
    assert len(titles) == len(set(titles)), sorted(t for t in titles if titles.count(t) > 1)
    assert not [name for name in schemas if "__" in name]  # no module-qualified duplicates
    assert schemas["MessageOut"]["properties"].keys() >= {"id", "direction", "status"}
    assert "detail" in schemas["DetailOut"]["properties"]


async def test_the_messages_endpoints_have_their_response_type(doc: dict[str, Any]) -> None:
    ref = "#/components/schemas/MessageOut"
    paths = doc["paths"]

    def success(method: str, path: str) -> dict[str, Any]:
        responses = paths[path][method]["responses"]
        (status,) = [s for s in responses if s.startswith("2")]
        schema: dict[str, Any] = responses[status]["content"]["application/json"]["schema"]
        return schema

    listed = success("get", "/api/v1/leads/{lead_id}/messages")
    assert listed["type"] == "array" and listed["items"] == {"$ref": ref}
    assert success("post", "/api/v1/leads/{lead_id}/messages") == {"$ref": ref}
    assert success("get", "/api/v1/messages/{message_id}") == {"$ref": ref}


async def test_every_operation_documents_the_errors_it_can_answer(doc: dict[str, Any]) -> None:
    for method, path, op in _operations(doc):
        responses = op["responses"]
        expected: set[str] = set()
        if op.get("security"):
            expected |= {"401", "403", "429"}
        if "requestBody" in op:
            expected |= {"400", "413", "422"}
        if any(p["in"] == "path" for p in op.get("parameters", [])):
            expected |= {"404", "422"}
        if method == "post" and path.startswith("/api/v1/"):
            expected |= {"400", "409"}  # a malformed or in-flight Idempotency-Key
        missing = expected - set(responses)
        assert not missing, (method, path, sorted(missing))
        for status, response in responses.items():
            if status.startswith("4"):
                assert list(response["content"]) == [PROBLEM], (method, path, status)
                schema = response["content"][PROBLEM]["schema"]["$ref"].rsplit("/", 1)[1]
                assert schema == ("ValidationProblem" if status == "422" else "Problem")
        if "429" in responses:
            assert "Retry-After" in responses["429"]["headers"]
    # Routes declare what only they can answer, e.g. the last admin cannot be demoted:
    assert "409" in doc["paths"]["/api/v1/members/{member_id}"]["patch"]["responses"]
    assert "401" in doc["paths"]["/api/v1/invitations/accept"]["post"]["responses"]


async def test_request_bodies_have_examples_and_say_what_text_is_refused(
    doc: dict[str, Any],
) -> None:
    schemas = doc["components"]["schemas"]
    for method, path, op in _operations(doc):
        body = op.get("requestBody")
        if not body or not path.startswith(("/api/v1/leads", "/api/v1/pipeline")):
            continue
        ref = body["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
        assert schemas[ref].get("examples"), (method, path, ref)
    lead_update = schemas["LeadUpdateIn"]["properties"]
    # Text is stripped and NUL refused: a name must have a visible character...
    assert lead_update["full_name"]["pattern"] == r"^[^\x00]*[^\s\x00][^\x00]*$"
    # ...and a lead always has one: the field may be left out but is never null.
    assert lead_update["full_name"]["type"] == "string" and "anyOf" not in lead_update["full_name"]
    assert lead_update["stage_id"]["type"] == "string" and "anyOf" not in lead_update["stage_id"]
    permissions = schemas["MemberUpdateIn"]["properties"]["permissions"]["anyOf"][0]
    assert "leads:read_all" in permissions["propertyNames"]["enum"]


async def test_docs_and_redoc_are_served_from_local_files_only(client: httpx.AsyncClient) -> None:
    for path, bundle in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        r = await client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith("text/html")
        page = r.text
        assert "http://" not in page and "https://" not in page, page
        urls = re.findall(r'(?:src|href|spec-url|data-openapi-url)="([^"]*)"', page)
        assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
        assert "/openapi.json" in urls
        assert f"/static/vendor/{bundle}" in urls
        # No inline script (the CSP forbids it): every <script> loads a file.
        for attributes, content in re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S):
            assert "src=" in attributes and not content.strip(), path
        for url in urls:
            if url.startswith("/static/"):
                asset = await client.get(url)
                assert asset.status_code == 200, (url, "run `make static`")
                kind = "css" if url.endswith(".css") else "javascript"
                assert kind in asset.headers["content-type"], url
                assert len(asset.content) > 500, url
    starter = (await client.get("/static/api-docs.js")).text
    assert "validatorUrl: null" in starter  # no badge fetched from validator.swagger.io


def test_the_docs_libraries_are_pinned_like_htmx() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())
    for name in ("swagger-ui-dist", "redoc", "htmx.org"):
        version = package["dependencies"][name]
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), (name, version)
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    makefile = (ROOT / "Makefile").read_text()
    assert "swagger-ui-dist/swagger-ui-bundle.js" in makefile
    assert "redoc/bundles/redoc.standalone.js" in makefile


async def test_the_leads_read_scope_says_a_key_reads_every_lead(
    client: httpx.AsyncClient,
) -> None:
    admin = await signup(client)
    r = await client.get("/api/v1/api-keys/scopes", headers=admin["headers"])
    assert r.status_code == 200, r.text
    scopes = {s["name"]: s["description"] for s in r.json()}
    assert "every lead of the organization" in scopes["leads:read"]
    assert "assigned" not in scopes["leads:read"] and "your" not in scopes["leads:read"]
    for name, text in scopes.items():
        assert "assigned to you" not in text and "your own" not in text, (name, text)

    # And that is what a key with leads:read does: a sales member's own lead is listed too.
    sales = await join_and_login(client, admin["headers"], "sales")
    theirs = await create_lead(client, sales)
    r = await client.post(
        "/api/v1/api-keys", headers=admin["headers"], json={"name": "BI", "scopes": ["leads:read"]}
    )
    assert r.status_code == 201, r.text
    key = {"Authorization": f"Bearer {r.json()['key']}"}
    listed = await client.get("/api/v1/leads", headers=key)
    assert theirs["id"] in [lead["id"] for lead in listed.json()["items"]]
