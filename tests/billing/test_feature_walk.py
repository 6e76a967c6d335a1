"""Every /api/v1 route, taken from the application's own routes, with its plan feature off:
refused with 403 ``feature_not_in_plan`` naming the feature and the plan; and with the
``api`` feature off, every authenticated route refuses an API key the same way."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from lovedcrm.core.deps import authenticate
from lovedcrm.db.engine import Database
from lovedcrm.organizations import plans
from lovedcrm.web.kit import PageRoute
from tests.billing.conftest import enforce, web_org


def _authenticated(dependant: Dependant) -> bool:
    return dependant.call is authenticate or any(_authenticated(d) for d in dependant.dependencies)


def _routes(app: Any) -> list[tuple[str, str]]:
    found = []
    for ctx in iter_route_contexts(app.routes):
        path = str(ctx.path)
        if not isinstance(ctx.original_route, APIRoute) or not path.startswith("/api/v1/"):
            continue
        dependant = ctx.dependant
        assert dependant is not None
        if not _authenticated(dependant) or path.startswith(plans.UNGATED_PREFIXES):
            continue
        for method in sorted(set(ctx.methods or ()) - {"HEAD"}):
            found.append((method, path))
    return found


def _concrete(path: str) -> str:
    parts = [str(uuid.uuid4()) if p.startswith("{") else p for p in path.split("/")]
    return "/".join(parts)


async def test_every_gated_route_refuses_when_its_feature_is_off(
    app: Any, client: httpx.AsyncClient, org: dict[str, Any], database: Database
) -> None:
    await enforce(database, org["org_id"], "starter", **dict.fromkeys(plans.FEATURES, "off"))
    gated = [(m, p) for m, p in _routes(app) if plans.feature_for(p) is not None]
    assert len(gated) >= 20  # calls, AI, scoring, reports, webhooks, branding…
    assert {plans.feature_for(p) for _, p in gated} >= {
        "calls", "ai_agent", "scoring", "reports", "webhooks", "custom_branding",
    }  # fmt: skip
    wrong = []
    for method, path in gated:
        r = await client.request(method, _concrete(path), headers=org["headers"])
        body = r.json() if r.headers.get("content-type", "").endswith("json") else {}
        if (r.status_code, body.get("code"), body.get("feature"), body.get("plan")) != (
            403, "feature_not_in_plan", plans.feature_for(path), "starter",
        ):  # fmt: skip
            wrong.append((method, path, r.status_code, body.get("code")))
    assert wrong == []


async def test_every_route_refuses_an_api_key_without_the_api_feature(
    app: Any, client: httpx.AsyncClient, org: dict[str, Any], database: Database
) -> None:
    r = await client.post(
        "/api/v1/api-keys", headers=org["headers"], json={"name": "all", "scopes": ["leads:read"]}
    )
    key = {"Authorization": f"Bearer {r.json()['key']}"}
    await enforce(database, org["org_id"], "starter")
    routes = _routes(app)
    assert len(routes) >= 100
    wrong = []
    for method, path in routes:
        if path == "/api/v1/events/stream":
            continue  # a stream; checked through the others (same dependency)
        r = await client.request(method, _concrete(path), headers=key)
        code = r.json().get("code") if r.headers.get("content-type", "").endswith("json") else None
        if (r.status_code, code) != (403, "feature_not_in_plan"):
            wrong.append((method, path, r.status_code, code))
    assert wrong == []


def _pages(app: Any) -> list[str]:
    """Every page (GET, a page route of the web kit) that names a feature."""
    found = []
    for ctx in iter_route_contexts(app.routes):
        path = str(ctx.path)
        route = ctx.original_route
        if path.startswith("/api/") or not isinstance(route, PageRoute):
            continue
        if "GET" in (ctx.methods or ()) and plans.feature_for(path) is not None:
            found.append(path)
    return found


async def test_every_page_of_a_feature_off_shows_the_plan_refusal_in_the_shell(
    app: Any, client: httpx.AsyncClient, database: Database
) -> None:
    from tests.factories import csrf_token

    org_id = await web_org(client)
    pages = _pages(app)
    assert {plans.feature_for(p) for p in pages} >= {
        "calls", "ai_agent", "scoring", "marketing", "reports", "webhooks",
    }  # fmt: skip
    # With every feature on (the trial), the pages open.
    for path in ("/marketing", "/reports", "/settings/telephony", "/settings/webhooks"):
        assert (await client.get(path)).status_code == 200, path
    await enforce(database, org_id, "starter", **dict.fromkeys(plans.FEATURES, "off"))
    wrong = []
    for path in pages:
        r = await client.get(_concrete(path), headers={"Accept-Language": "pt-BR"})
        # Inside the shell (the navigation is there), the reason in the reader's words, the
        # way to upgrade; never the login page.
        if not (
            r.status_code == 403
            and "Fora do seu plano" in r.text
            and 'href="/settings/billing"' in r.text
            and 'href="/leads"' in r.text
        ):
            wrong.append((path, r.status_code, r.headers.get("location")))
    assert wrong == []
    # A form of such a page is refused the same way, and the pages of the plan still open.
    token = await csrf_token(client, "/leads")
    r = await client.post(
        "/marketing/campaigns", data={"csrf_token": token, "name": "x"}, follow_redirects=False
    )
    assert r.status_code == 403
    assert "Fora do seu plano" in r.text
    assert (await client.get("/leads")).status_code == 200
    assert (await client.get("/settings/billing")).status_code == 200
