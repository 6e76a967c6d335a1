"""Security headers on every answer (pages, API, errors, static files), HSTS only when the
installation is served over HTTPS (``cookie_secure``), routes' own stricter headers kept; and
the pages' HTML holds nothing the Content-Security-Policy refuses (inline script or style,
event-handler attributes). The browser side is tests/e2e/test_csp_e2e.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from lovedcrm.app import create_app
from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.web.i18n import LANG_COOKIE
from tests.factories import activate_sandbox, create_lead, session_headers, signup, web_signup

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64

FIXED = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
}


def directives(policy: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def assert_secure(r: httpx.Response) -> None:
    where = f"{r.request.method} {r.request.url.path} → {r.status_code}"
    for name, value in FIXED.items():
        assert r.headers.get(name) == value, (where, name, r.headers.get(name))
    assert "camera=()" in r.headers.get("permissions-policy", ""), where
    csp = directives(r.headers.get("content-security-policy", ""))
    assert csp.get("default-src") == ["'self'"], (where, csp)
    assert csp.get("script-src") == ["'self'"], (where, csp)
    assert csp.get("style-src") == ["'self'"], (where, csp)
    assert csp.get("img-src") == ["'self'", "data:"], (where, csp)
    assert csp.get("connect-src") == ["'self'"], (where, csp)
    assert csp.get("frame-ancestors") == ["'none'"], (where, csp)
    assert csp.get("base-uri") == ["'self'"], (where, csp)
    assert csp.get("form-action") == ["'self'"], (where, csp)
    assert csp.get("object-src") == ["'none'"], (where, csp)


async def test_pages_api_errors_and_static_files_carry_every_header(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    answers = [
        await client.get("/login"),
        await client.get("/signup"),
        await client.get("/healthz"),
        await client.get("/static/app.css"),
        await client.get("/api/v1/auth/me"),  # 401 problem+json
        await client.get("/api/v1/nope"),  # 404 problem+json
        await client.post(  # 413 from the body-limit middleware
            "/api/v1/auth/login",
            content=b"x" * (settings.max_body_bytes + 1),
            headers={"content-type": "application/json"},
        ),
        await client.get("/openapi.json"),
    ]
    await web_signup(client)
    answers += [
        await client.get("/"),
        await client.get("/pipeline"),
        await client.get("/settings/branding"),
        await client.get(f"/leads/{uuid.uuid4()}"),  # the error page
        await client.get("/api/v1/leads", headers=await session_headers(client)),
    ]
    assert [r.status_code for r in answers] == [
        200, 200, 200, 200, 401, 404, 413, 200, 200, 200, 200, 404, 200,
    ]  # fmt: skip
    for r in answers:
        assert_secure(r)
        assert "strict-transport-security" not in r.headers  # plain HTTP installation


async def test_the_api_documentation_pages_policies(client: httpx.AsyncClient) -> None:
    """/docs (Swagger UI) lives with the pages' policy; /redoc's lets Redoc write its <style>
    elements and start its search worker, and nothing more: its scripts stay 'self'."""
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert_secure(docs)
    redoc = await client.get("/redoc")
    assert redoc.status_code == 200
    csp = directives(redoc.headers["content-security-policy"])
    assert csp.pop("style-src") == ["'self'", "'unsafe-inline'"]
    assert csp.pop("worker-src") == ["'self'", "blob:"]
    strict = directives(docs.headers["content-security-policy"])
    strict.pop("style-src")
    assert csp == strict
    for name, value in FIXED.items():
        assert redoc.headers[name] == value


@pytest.fixture
async def https_client(settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"cookie_secure": True}), database=database)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


async def test_hsts_only_when_cookies_are_secure(https_client: httpx.AsyncClient) -> None:
    for r in (
        await https_client.get("/login"),
        await https_client.get("/healthz"),
        await https_client.get("/api/v1/auth/me"),
    ):
        assert_secure(r)
        hsts = r.headers.get("strict-transport-security", "")
        assert hsts.startswith("max-age="), r.headers
        assert int(hsts.split("=", 1)[1].split(";")[0]) >= 31_536_000  # a year at least


async def test_a_routes_own_stricter_policy_is_kept(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    h = admin["headers"]
    r = await client.put(
        "/api/v1/organizations/current/logo", files={"logo": ("l.png", PNG, "image/png")}, headers=h
    )
    assert r.status_code == 200, r.text
    org_id = (await client.get("/api/v1/organizations/current", headers=h)).json()["id"]
    served = await client.get(f"/branding/logo/{org_id}", headers=h)
    assert served.status_code == 200 and served.content == PNG
    assert served.headers["content-security-policy"] == "default-src 'none'"  # not weakened
    assert served.headers.get_list("content-security-policy") == ["default-src 'none'"]
    assert served.headers.get_list("x-content-type-options") == ["nosniff"]  # not doubled
    assert served.headers["x-frame-options"] == "DENY"


class InlineFinder(HTMLParser):
    """What a strict CSP refuses in a page: inline <script> (JSON data blocks are data, not
    script), <style>, style="…", on…="…" and hx-on attributes, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and not values.get("src") and values.get("type") != "application/json":
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style>")
        for name, value in attrs:
            bare = name.removeprefix("data-")
            if name == "style" or name.startswith("on") or bare.startswith("hx-on"):
                self.found.append(f"<{tag} {name}=…>")
            if (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:…>")


def inline_parts(html: str) -> list[str]:
    finder = InlineFinder()
    finder.feed(html)
    return finder.found


def test_the_finder_sees_what_the_policy_refuses() -> None:
    assert inline_parts('<script type="application/json">{}</script><script src="/a.js">') == []
    assert inline_parts("<script>alert(1)</script>") == ["inline <script>"]
    assert inline_parts('<body style="--accent: #fff">') == ["<body style=…>"]
    assert inline_parts("<style>p{}</style>") == ["<style>"]
    assert inline_parts('<a onclick="x()" href="javascript:x()">') == [
        "<a onclick=…>",
        "<a href=javascript:…>",
    ]
    assert inline_parts('<b hx-on:click="x()"></b><i data-hx-on::load="y()"></i>') == [
        "<b hx-on:click=…>",
        "<i data-hx-on::load=…>",
    ]


async def test_no_page_holds_inline_script_or_style(client: httpx.AsyncClient) -> None:
    signed_out = ["/login", "/signup", "/forgot-password", "/verify-email?token=nope"]
    pages: dict[str, str] = {}
    for path in signed_out:
        pages[path] = (await client.get(path)).text
    await web_signup(client)
    h = await session_headers(client)
    # A colored organization, a lead, a sandbox and a Cloud API provider (copy buttons).
    r = await client.patch(
        "/api/v1/organizations/current", headers=h, json={"settings": {"primary_color": "#0ea5e9"}}
    )
    assert r.status_code == 200, r.text
    lead = await create_lead(client, h, full_name="Rita Moraes", phone="+5511987650000")
    await activate_sandbox(client, h)
    r = await client.post(
        "/api/v1/whatsapp/configs",
        headers=h,
        json={
            "provider_type": "business_api",
            "business_phone_id": "1234567890",
            "access_token": "EAAG-not-a-real-token",
            "app_secret": "not-a-real-secret",
        },
    )
    assert r.status_code == 201, r.text
    signed_in = [
        "/",
        "/leads",
        "/leads/new",
        f"/leads/{lead['id']}",
        "/leads/import",
        "/pipeline",
        "/inbox",
        f"/inbox/{lead['id']}",
        "/settings/profile",
        "/settings/branding",
        "/settings/pipeline",
        "/settings/custom-fields",
        "/settings/assignment",
        "/settings/templates",
        "/settings/whatsapp",
        "/settings/team",
        "/settings/api-keys",
        "/settings/webhooks",
        "/settings/jobs",
        f"/leads/{uuid.uuid4()}",
    ]
    for lang in ("pt-BR", "en"):
        client.cookies.set(LANG_COOKIE, lang)
        for path in signed_in:
            r = await client.get(path)
            assert r.status_code in (200, 404), (path, r.status_code)
            assert f'<html lang="{lang}"' in r.text, path
            pages[f"{lang} {path}"] = r.text
    # Fragments htmx swaps into the pages.
    for path in (
        f"/leads/{lead['id']}/edit?field=full_name",
        f"/leads/{lead['id']}/timeline",
        "/inbox/list",
        f"/inbox/{lead['id']}/thread",
        "/pipeline/totals",
    ):
        r = await client.get(path, headers={"HX-Request": "true"})
        assert r.status_code == 200, (path, r.status_code)
        pages[f"fragment {path}"] = r.text
    assert 'data-copy="webhook-' in pages["en /settings/whatsapp"]  # the copy buttons are there
    assert 'data-accent="#0ea5e9"' in pages["en /"]
    found: dict[str, Any] = {p: inline_parts(html) for p, html in pages.items()}
    assert {p: f for p, f in found.items() if f} == {}
