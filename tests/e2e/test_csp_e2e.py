"""The Content-Security-Policy in a real browser: every main page, signed in and signed out,
in Portuguese and in English, loads (and its htmx requests, live events and scripts run)
without a single CSP violation. Violations are caught twice: a ``securitypolicyviolation``
listener installed before any page script (``add_init_script``) records them into
``window.__csp``, and Chromium's console messages about the Content Security Policy are kept.
A first test proves that this recorder sees a violation when there is one."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from playwright.async_api import expect

from lovedcrm.web.i18n import LANG_COOKIE
from tests.e2e.conftest import DESKTOP
from tests.factories import activate_sandbox, browser_signup, live_lead, live_login

LIVE = 20_000  # ms: the server's worker polls every 2 s; the machine may be busy
LANGUAGES = ("pt-BR", "en")
ACCENT = "#0ea5e9"

RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push({
    directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample,
    source: e.sourceFile, line: e.lineNumber,
  });
});
"""

CSV = (
    "Nome,E-mail,Telefone,Empresa\n"
    "Helena Prado,helena.prado@example.com,(11) 91234-0001,Prado Doces\n"
    "Otávio Lima,otavio.lima@example.com,(21) 99876-0002,Lima & Filhos\n"
).encode()


class CspRecorder:
    """One browser context whose pages record every CSP violation (and page error)."""

    def __init__(self, context: Any, page: Any) -> None:
        self.context = context
        self.page = page
        self.console: list[str] = []
        self.violations: list[tuple[str, Any]] = []
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))

    @classmethod
    async def open(cls, browser: Any, base: str, lang: str) -> CspRecorder:
        context = await browser.new_context(viewport=DESKTOP, base_url=base, locale=lang)
        await context.add_init_script(RECORD_VIOLATIONS)
        await context.add_cookies([{"name": LANG_COOKIE, "value": lang, "url": base}])
        return cls(context, await context.new_page())

    def _on_console(self, message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            self.console.append(f"{self.page.url}: {text}")

    async def use_language(self, lang: str, base: str) -> None:
        await self.context.add_cookies([{"name": LANG_COOKIE, "value": lang, "url": base}])

    async def settle(self) -> None:
        """The page has loaded, no htmx request is in flight, and every queued task (where
        violation events are dispatched) has run."""
        page = self.page
        await page.wait_for_load_state("load")
        await page.wait_for_function("() => !document.querySelector('.htmx-request')")
        await page.evaluate(
            "() => new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)))"
        )

    async def collect(self) -> None:
        found = await self.page.evaluate("() => window.__csp || []")
        self.violations += [(self.page.url, v) for v in found]
        await self.page.evaluate("() => { window.__csp = []; }")

    async def visit(self, path: str, lang: str, status: int | None = 200) -> Any:
        """Open ``path`` (answering ``status``, or any 4xx for None)."""
        response = await self.page.goto(path)
        assert response is not None, path
        if status is None:
            assert 400 <= response.status < 500, (path, response.status)
        else:
            assert response.status == status, (path, response.status)
        policy = {
            words[0]: words[1:]
            for words in (
                part.split() for part in response.headers["content-security-policy"].split(";")
            )
            if words
        }
        assert policy.get("script-src") == ["'self'"], (path, policy)
        if path != "/redoc":  # Redoc's own policy lets it write <style> (core.middleware)
            assert policy.get("style-src") == ["'self'"], (path, policy)
        assert response.headers.get("x-frame-options") == "DENY", path
        await expect(self.page.locator("html")).to_have_attribute("lang", lang)
        await self.settle()
        await self.collect()
        return response

    def assert_clean(self) -> None:
        assert self.violations == [], self.violations
        assert self.console == [], self.console
        assert self.errors == [], self.errors

    async def close(self) -> None:
        await self.context.close()


async def test_the_recorder_sees_a_violation(browser: Any, live_server: str) -> None:
    """Without this, "zero violations" could mean a deaf listener."""
    rec = await CspRecorder.open(browser, live_server, "pt-BR")
    try:
        await rec.visit("/login", "pt-BR")
        rec.assert_clean()
        async with rec.page.expect_console_message(lambda m: "Content Security Policy" in m.text):
            await rec.page.evaluate(
                """() => {
                  document.body.insertAdjacentHTML("beforeend", '<i style="color: red">x</i>');
                  const s = document.createElement("script");
                  s.textContent = "window.__ran = true";
                  document.body.appendChild(s);
                }"""
            )
        await rec.page.wait_for_function("() => window.__csp.length >= 2")
        await rec.collect()
        directives = sorted(v["directive"] for _, v in rec.violations)
        assert directives == ["script-src-elem", "style-src-attr"], rec.violations
        assert await rec.page.evaluate("() => window.__ran === undefined")  # it did not run
        assert rec.console, "Chromium's console message was not seen"
    finally:
        await rec.close()


async def test_signed_out_pages_have_no_csp_violation(browser: Any, live_server: str) -> None:
    for lang in LANGUAGES:
        rec = await CspRecorder.open(browser, live_server, lang)
        try:
            for path in ("/login", "/signup", "/forgot-password"):
                await rec.visit(path, lang)
            # Message pages (a link that is not valid any more).
            await rec.visit("/verify-email?token=not-a-token", lang, status=None)
            await rec.visit("/invitations/accept?token=not-a-token", lang, status=None)
            await rec.visit("/reset-password?token=not-a-token", lang)
            # A wrong password: the form shown again with its error.
            await rec.visit("/login", lang)
            await rec.page.fill("#email", "nobody@example.com")
            await rec.page.fill("#password", "not-the-password")
            await rec.page.click("form button[type=submit]")
            await expect(rec.page.locator("[role=alert]").first).to_be_visible()
            await rec.settle()
            await rec.collect()
            rec.assert_clean()
        finally:
            await rec.close()


async def _seed(base: str, email: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A colored organization, two leads, a template, the sandbox active, and a Cloud API
    provider (its copy buttons) that is never called."""
    headers = await live_login(base, email)
    async with httpx.AsyncClient(base_url=base, headers=headers) as c:
        r = await c.patch(
            "/api/v1/organizations/current", json={"settings": {"primary_color": ACCENT}}
        )
        assert r.status_code == 200, r.text
        await activate_sandbox(c, headers)
        r = await c.post(
            "/api/v1/whatsapp/configs",
            json={
                "provider_type": "business_api",
                "business_phone_id": "1234567890",
                "access_token": "EAAG-not-a-real-token",
                "app_secret": "not-a-real-secret",
            },
        )
        assert r.status_code == 201, r.text
        r = await c.post(
            "/api/v1/templates",
            json={"name": "Boas-vindas", "category": "follow_up", "content": "Oi {{first_name}}!"},
        )
        assert r.status_code == 201, r.text
    lead = await live_lead(base, headers, full_name="Rita Moraes", company="Moraes Flores")
    twin = await live_lead(base, headers, full_name="Rita Morais", company="Moraes Flores")
    return lead, twin


async def test_every_main_page_has_no_csp_violation_in_both_languages(
    browser: Any, live_server: str
) -> None:
    rec = await CspRecorder.open(browser, live_server, "pt-BR")
    page = rec.page
    try:
        account = await browser_signup(page)
        lead, twin = await _seed(live_server, account["email"])
        lead_id = lead["id"]

        # A customer's message through the inbox's sandbox form (htmx post, live list).
        await rec.visit("/inbox", "pt-BR")
        await page.locator("#simulate summary").click()
        await page.fill("#sim-phone", "(11) 97777-1234")
        await page.fill("#sim-name", "Joana Campos")
        await page.fill("#sim-text", "Oi, vocês entregam?")
        await page.locator("#simulate button[type=submit]").click()
        await expect(page.locator(".simulate-done")).to_be_visible()
        conv = page.locator("#conversation-list li.conv", has_text="Joana Campos")
        await expect(conv).to_be_visible(timeout=LIVE)
        await conv.locator("a").click()
        await page.wait_for_url("**/inbox/*")
        conversation = page.url.removeprefix(live_server)
        await rec.settle()
        await rec.collect()

        # An import through the pages: upload, map, then its progress page.
        await rec.visit("/leads/import", "pt-BR")
        await page.set_input_files(
            "#import-file", {"name": "clientes.csv", "mimeType": "text/csv", "buffer": CSV}
        )
        await page.click("main form button[type=submit]")
        mapping = page.locator("form[action='/leads/import/start']")  # the mapping step
        await expect(mapping).to_be_visible()
        await rec.settle()
        await rec.collect()
        await mapping.locator("button[type=submit]").click()
        await page.wait_for_url(re.compile(r"/leads/import/[0-9a-f-]{36}$"))
        progress = page.url.removeprefix(live_server)
        # htmx asks again every second until the worker is done.
        await expect(page.locator("[data-stat=created]")).to_have_text("2", timeout=LIVE)
        await rec.settle()
        await rec.collect()

        pages = [
            "/",
            "/leads",
            "/leads?q=Rita",
            "/leads/new",
            f"/leads/{lead_id}",
            f"/leads/{lead_id}/merge?q=Rita",
            f"/leads/{lead_id}/merge?other={twin['id']}",
            f"/leads/{lead_id}/delete",
            "/leads/import",
            progress,
            "/pipeline",
            "/inbox",
            conversation,
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
        ]
        for lang in LANGUAGES:
            await rec.use_language(lang, live_server)
            for path in pages:
                await rec.visit(path, lang)
            await rec.visit(f"/leads/{uuid.uuid4()}", lang, status=404)  # the error page

            # What the moved scripts do still happens: the organization's color...
            await rec.visit("/", lang)
            accent = await page.evaluate(
                "() => getComputedStyle(document.documentElement)"
                ".getPropertyValue('--accent').trim()"
            )
            assert accent == ACCENT
            # ...htmx keeps its indicator CSS to app.css (no style of its own)...
            assert await page.evaluate("() => document.adoptedStyleSheets.length") == 0
            # ...a lead's field edited in place (htmx fragment)...
            await rec.visit(f"/leads/{lead_id}", lang)
            edit = page.locator("a.edit-link").first
            target = await edit.get_attribute("hx-target")
            await edit.click()
            await expect(page.locator(f"{target} form")).to_be_visible()
            await rec.settle()
            await rec.collect()
            # ...and the WhatsApp page's copy buttons.
            await rec.visit("/settings/whatsapp", lang)
            await rec.context.grant_permissions(
                ["clipboard-read", "clipboard-write"], origin=live_server
            )
            await page.locator("button[data-copy^=webhook-]").click()
            copied = "Copiado." if lang == "pt-BR" else "Copied."
            await expect(page.locator("#toasts .toast", has_text=copied)).to_be_visible()
            clip = await page.evaluate("() => navigator.clipboard.readText()")
            assert re.search(r"/webhooks/whatsapp/[0-9a-f-]{36}$", clip), clip
            await rec.settle()
            await rec.collect()
        rec.assert_clean()
    finally:
        await rec.close()


async def test_the_api_documentation_pages_have_no_csp_violation(
    browser: Any, live_server: str
) -> None:
    """/docs (Swagger UI) and /redoc, from local files, render the API under their policy."""
    rec = await CspRecorder.open(browser, live_server, "en")
    page = rec.page
    try:
        await rec.visit("/docs", "en")
        await expect(page.locator(".swagger-ui .opblock").first).to_be_visible(timeout=LIVE)
        await page.locator(".swagger-ui .opblock-summary").first.click()
        await rec.settle()
        await rec.collect()
        rec.assert_clean()

        await rec.visit("/redoc", "en")
        await expect(page.locator("redoc [role=menuitem], redoc li").first).to_be_visible(
            timeout=LIVE
        )
        await rec.settle()
        await rec.collect()
        # Redoc's sidebar always asks for its maker's logo on a CDN: the policy refuses it
        # (the page stays offline; Redoc then shows the text alone). Nothing else is refused.
        cdn = "https://cdn.redoc.ly/"
        refused = [v for _, v in rec.violations if v["blocked"].startswith(cdn)]
        assert {v["directive"] for v in refused} <= {"img-src"}, refused
        rec.violations = [(u, v) for u, v in rec.violations if v not in refused]
        rec.console = [m for m in rec.console if cdn not in m]
        rec.assert_clean()
    finally:
        await rec.close()
