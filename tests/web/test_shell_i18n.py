"""The web shell: languages (cookie, organization, Accept-Language), formats, branding
(color, logo) and the home page's numbers."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from lovedcrm.auth.authentication import principal_for_member
from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.reports import home as dashboard
from lovedcrm.web import i18n
from lovedcrm.web.i18n import LANG_COOKIE, Localizer, choose_locale
from tests.factories import (
    CSRF_INPUT,
    create_lead,
    csrf_token,
    session_headers,
    signup,
    web_accept_invitation,
    web_signup,
)

NBSP = "\xa0"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64


async def _patch_org(client: httpx.AsyncClient, settings: dict[str, Any]) -> httpx.Response:
    return await client.patch(
        "/api/v1/organizations/current",
        json={"settings": settings},
        headers=await session_headers(client),
    )


# --- formats -----------------------------------------------------------------------------


def test_money_in_both_languages() -> None:
    assert Localizer(locale="pt_BR").money(1234.56) == f"R${NBSP}1.234,56"
    assert Localizer(locale="en").money(Decimal("1234.56")) == "R$1,234.56"
    assert Localizer(locale="en", currency="USD").money(1234.56) == "$1,234.56"
    assert Localizer(locale="pt_BR", currency="EUR").money(10) == f"€{NBSP}10,00"
    assert Localizer(locale="pt_BR").money(48500, cents=False) == f"R${NBSP}48.500"
    # Cards: cents only when there are any (R$ 1.800,50 is not rounded to R$ 1.801).
    assert Localizer(locale="pt_BR").money(Decimal("1800.50"), cents=None) == f"R${NBSP}1.800,50"
    assert Localizer(locale="pt_BR").money(Decimal("1800.00"), cents=None) == f"R${NBSP}1.800"
    assert Localizer(locale="pt_BR").number(1234567) == "1.234.567"
    assert Localizer(locale="en").number(1234567) == "1,234,567"


def test_dates_and_relative_times() -> None:
    pt, en = Localizer(locale="pt_BR"), Localizer(locale="en")
    assert pt.date(date(2026, 11, 25)) == "25/11/2026"
    assert en.date(date(2026, 11, 25)) == "Nov 25, 2026"
    now = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 12:00 in São Paulo
    assert pt.reltime_text(now - timedelta(minutes=5), now) == "há 5 min"
    assert en.reltime_text(now - timedelta(minutes=5), now) == "5 min ago"
    assert pt.reltime_text(now - timedelta(days=1), now) == "ontem"
    assert en.reltime_text(now - timedelta(days=1), now) == "yesterday"
    assert pt.reltime_text(now - timedelta(days=3), now) == "há 3 dias"
    assert en.reltime_text(now - timedelta(days=3), now) == "3 days ago"
    assert pt.reltime_text(now + timedelta(days=1), now) == "amanhã"
    assert pt.reltime_text(now - timedelta(days=9), now) == "há 9 dias"
    assert pt.reltime_text(now - timedelta(days=40), now) == "16/10/2026"
    tag = str(pt.reltime(now - timedelta(minutes=5), now))
    assert "há 5 min" in tag and 'title="25/11/2026 11:55"' in tag


def test_phone_for_people() -> None:
    assert Localizer().phone("+5511987654321") == "+55 11 98765-4321"
    assert Localizer().phone("not a phone") == "not a phone"


def test_locale_choice_order() -> None:
    assert choose_locale(None, None, None) == "pt_BR"
    assert choose_locale(None, None, "en-US,en;q=0.9") == "en"
    assert choose_locale(None, None, "fr-FR, en;q=0.5") == "en"
    assert choose_locale(None, None, "de") == "pt_BR"
    assert choose_locale(None, "pt-BR", "en") == "pt_BR"  # the organization beats the browser
    assert choose_locale("en", "pt-BR", "pt") == "en"  # the person beats the organization


def test_catalogs_compile_when_the_po_is_newer(tmp_path: Any, monkeypatch: Any) -> None:
    folder = tmp_path / "pt_BR" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    source = i18n.LOCALE_DIR / "pt_BR" / "LC_MESSAGES" / "messages.po"
    (folder / "messages.po").write_bytes(source.read_bytes())
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    assert i18n.translations("pt_BR").ugettext("Pipeline") == "Funil"
    assert (folder / "messages.mo").exists()


# --- the shell's language ----------------------------------------------------------------


async def test_shell_is_pt_br_by_default(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    page = (await client.get("/")).text
    assert '<html lang="pt-BR">' in page
    for word in ("Início", "Funil", "Leads", "Conversas", "Agenda", "Relatórios", "Configurações"):
        assert word in page
    assert "Agenda" in page and "Novo lead" in page
    assert 'href="/pipeline"' in page and 'href="/settings"' in page
    assert 'action="/leads"' in page and 'name="q"' in page


async def test_english_by_accept_language_and_by_cookie(client: httpx.AsyncClient) -> None:
    # The log-in page: no organization, so the browser's language decides.
    r = await client.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="en">' in r.text and "Log in" in r.text
    assert "Entrar" in (await client.get("/login")).text

    await web_signup(client)
    # The new organization's own setting is pt-BR, which beats the browser...
    page = (await client.get("/", headers={"Accept-Language": "en"})).text
    assert "Funil" in page and "Configurações" in page
    # ... and the person's choice beats both.
    csrf = await csrf_token(client)
    r = await client.post(
        "/preferences/language", data={"language": "en", "next": "/", "csrf_token": csrf}
    )
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert client.cookies.get(LANG_COOKIE) == "en"
    page = (await client.get("/")).text
    assert '<html lang="en">' in page
    assert "Pipeline" in page and "Settings" in page and "Calendar" in page
    assert "Funil" not in page
    assert "Language changed." in page  # the flash message, shown once
    assert "Language changed." not in (await client.get("/")).text


async def test_language_choice_needs_csrf_when_signed_in_and_only_local_redirects(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post(
        "/preferences/language", data={"language": "en", "next": "https://evil.example/"}
    )
    assert r.status_code == 303 and r.headers["location"] == "/"
    await web_signup(client)
    r = await client.post("/preferences/language", data={"language": "en"})
    assert r.status_code == 403


async def test_organization_locale_wins_over_accept_language(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    r = await _patch_org(client, {"locale": "en"})
    assert r.status_code == 200, r.text
    page = (await client.get("/", headers={"Accept-Language": "pt-BR"})).text
    assert "Pipeline" in page and "Settings" in page and "Configurações" not in page


# --- branding ------------------------------------------------------------------------------


async def test_branding_color_is_applied_and_a_bad_color_refused(
    client: httpx.AsyncClient,
) -> None:
    await web_signup(client)
    page = await client.get("/settings/branding")
    assert page.status_code == 200 and "Cor principal" in page.text
    csrf = CSRF_INPUT.search(page.text)
    assert csrf
    form = {
        "csrf_token": csrf.group(1),
        "name": "Loja Azul",
        "locale": "pt-BR",
        "currency": "BRL",
        "stale_days": "10",
    }
    bad = await client.post("/settings/branding", data={**form, "primary_color": "blue"})
    assert bad.status_code == 422
    assert "Use uma cor no formato #RRGGBB" in bad.text and 'aria-invalid="true"' in bad.text

    ok = await client.post("/settings/branding", data={**form, "primary_color": "#0EA5E9"})
    assert ok.status_code == 303
    assert "Configurações salvas." in (await client.get("/settings/branding")).text  # toast
    home = (await client.get("/")).text
    assert 'data-accent="#0ea5e9"' in home and "Loja Azul" in home
    assert "Configurações salvas." not in home  # once

    # The JSON API refuses a bad color too, naming the field.
    r = await _patch_org(client, {"primary_color": "#12345"})
    assert r.status_code == 422
    assert "primary_color" in r.json()["detail"]
    assert r.json()["errors"][0]["field"] == "primary_color"
    r = await _patch_org(client, {"primary_color": "#ffffff", "stale_days": 0})
    assert r.status_code == 422 and "stale_days" in r.json()["detail"]


async def test_branding_cannot_be_changed_without_the_permission(
    client: httpx.AsyncClient,
) -> None:
    admin = await signup(client)
    await web_accept_invitation(client, admin["headers"], "sales")
    page = await client.get("/settings/branding")
    assert page.status_code == 200 and "Só administradores" in page.text
    r = await client.post(
        "/settings/branding",
        data={
            "csrf_token": await csrf_token(client, "/settings/branding"),
            "name": "Hack",
            "primary_color": "#000000",
            "locale": "pt-BR",
            "currency": "BRL",
            "stale_days": "7",
        },
    )
    assert r.status_code == 403
    files = {"logo": ("logo.png", PNG, "image/png")}
    r = await client.put(
        "/api/v1/organizations/current/logo",
        files=files,
        headers=await session_headers(client),
    )
    assert r.status_code == 403


async def test_logo_upload_checks_and_serving(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await signup(client)
    h = admin["headers"]
    org_id = admin["organization"]["id"] if "organization" in admin else None
    if org_id is None:
        org_id = (await client.get("/api/v1/organizations/current", headers=h)).json()["id"]

    # A .png that is really HTML is refused; so is SVG.
    fake = {"logo": ("logo.png", b"<html><script>alert(1)</script></html>", "image/png")}
    r = await client.put("/api/v1/organizations/current/logo", files=fake, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "logo_not_an_image"
    svg = {"logo": ("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml")}
    r = await client.put("/api/v1/organizations/current/logo", files=svg, headers=h)
    assert r.status_code == 422
    # Over the limit: refused naming the limit.
    big = {"logo": ("big.png", PNG + b"\x00" * settings.logo_max_bytes, "image/png")}
    r = await client.put("/api/v1/organizations/current/logo", files=big, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "logo_too_large"
    assert "1 MB" in r.json()["detail"]

    ok = {"logo": ("logo.png", PNG, "image/png")}
    r = await client.put("/api/v1/organizations/current/logo", files=ok, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["settings"]["logo"] == f"uploads/{org_id}/logo.png"

    served = await client.get(f"/branding/logo/{org_id}", headers=h)
    assert served.status_code == 200 and served.content == PNG
    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"

    # The stored path cannot be pointed elsewhere through the settings API.
    r = await client.patch(
        "/api/v1/organizations/current",
        headers=h,
        json={"settings": {"logo": "../../etc/passwd"}},
    )
    assert r.status_code == 422

    # A member of another organization gets 404; so does nobody.
    other = await signup(client)
    assert (await client.get(f"/branding/logo/{org_id}", headers=other["headers"])).status_code == (
        404
    )
    client.cookies.clear()
    assert (await client.get(f"/branding/logo/{org_id}")).status_code == 404


async def test_logo_form_and_shell(client: httpx.AsyncClient, settings: Settings) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, "/settings/branding")
    r = await client.post(
        "/settings/branding/logo",
        data={"csrf_token": csrf},
        files={"logo": ("x.png", b"GIF89a not allowed", "image/png")},
    )
    assert r.status_code == 422 and "não é uma imagem PNG, JPEG ou WebP" in r.text
    r = await client.post(
        "/settings/branding/logo",
        data={"csrf_token": csrf},
        files={"logo": ("x.png", PNG + b"\x00" * settings.logo_max_bytes, "image/png")},
    )
    assert r.status_code == 422 and "o limite é 1 MB" in r.text
    r = await client.post(
        "/settings/branding/logo",
        data={"csrf_token": csrf},
        files={"logo": ("x.png", PNG, "image/png")},
    )
    assert r.status_code == 303
    home = (await client.get("/")).text
    logo = re.search(r'<img class="org-logo" src="(/branding/logo/[0-9a-f-]+)"', home)
    assert logo
    assert (await client.get(logo.group(1))).content == PNG


# --- home ------------------------------------------------------------------------------------


async def _summary_as_of(
    database: Database, org_id: str, user_id: str, now: datetime
) -> dashboard.HomeSummary:
    """The home numbers of ``user_id`` as they are at ``now`` (the service takes the time)."""
    async with database.sessionmaker() as session, session.begin():
        principal = await principal_for_member(session, uuid.UUID(org_id), uuid.UUID(user_id))
        assert principal is not None
        return await dashboard.home_summary(session, principal, now=now)


async def test_home_summary_numbers(client: httpx.AsyncClient, database: Database) -> None:
    await web_signup(client)
    h = await session_headers(client)
    org_id = (await client.get("/api/v1/organizations/current")).json()["id"]
    me = (await client.get("/api/v1/auth/me")).json()
    my_id = me.get("id") or me.get("user", {}).get("id")
    a = await create_lead(client, h, full_name="Ana Paula", estimated_value="1000.50")
    b = await create_lead(client, h, full_name="<script>alert(1)</script>", estimated_value="2500")
    won = await create_lead(client, h, full_name="Bruno Ganho", estimated_value="1234.56")
    # Tasks around a fixed moment, 3 p.m. in the organization's zone (the default), which the
    # summary is asked as of; they are all past for the page, which reads the wall clock.
    three_pm = datetime(2025, 5, 20, 15, 0, tzinfo=ZoneInfo("America/Sao_Paulo"))
    tasks = [
        (a["id"], "Ligar para a Ana", three_pm - timedelta(days=2), False),  # overdue
        (b["id"], "Enviar proposta", three_pm + timedelta(hours=2), False),  # due today
        (b["id"], "Amanhã cedo", three_pm + timedelta(hours=9), False),  # 00:00 tomorrow
        (a["id"], "Tarefa feita", three_pm - timedelta(days=1), True),  # done: never shown
        # Later for the page too: due in five days of the wall clock.
        (a["id"], "Tarefa futura", datetime.now(UTC) + timedelta(days=5), False),
    ]
    for lead_id, title, due, done in tasks:
        r = await client.post(
            f"/api/v1/leads/{lead_id}/activities",
            headers=h,
            json={
                "type": "task",
                "title": title,
                "metadata": {"due_at": due.isoformat(), "done": done},
            },
        )
        assert r.status_code == 201, r.text
    r = await client.patch(f"/api/v1/leads/{won['id']}", headers=h, json={"status": "converted"})
    assert r.status_code == 200, r.text
    converted_at = datetime.fromisoformat(r.json()["converted_at"])

    # As of 3 p.m.: the overdue task, then today's; tomorrow's, the done and the later not.
    summary = await _summary_as_of(database, org_id, my_id, three_pm)
    assert [(t.title, t.overdue) for t in summary.tasks] == [
        ("Ligar para a Ana", True),
        ("Enviar proposta", False),
    ]
    assert summary.overdue_count == 1
    assert [t.lead_id for t in summary.tasks] == [uuid.UUID(a["id"]), uuid.UUID(b["id"])]
    # Won this month: the converted lead, in the month it was converted and not the next.
    summary = await _summary_as_of(database, org_id, my_id, converted_at)
    assert (summary.won_count, summary.won_value) == (1, Decimal("1234.56"))
    summary = await _summary_as_of(database, org_id, my_id, converted_at + timedelta(days=32))
    assert (summary.won_count, summary.won_value) == (0, Decimal(0))

    page = (await client.get("/")).text
    assert "Minhas tarefas" in page and "Leads parados" in page and "Ganho no mês" in page
    assert "Ligar para a Ana" in page and "Enviar proposta" in page
    assert "Tarefa feita" not in page and "Tarefa futura" not in page
    assert f'href="/leads/{a["id"]}"' in page
    assert "Atrasada" in page
    # Per stage: the two active leads in the first stage, summed.
    stages = page.split('id="by-stage"')[1].split("</section>")[0]
    assert f"R${NBSP}3.501" in stages
    # Escaped, never run.
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page

    # In English the same numbers in English formats.
    client.cookies.set(LANG_COOKIE, "en")
    page = (await client.get("/")).text
    assert "My tasks" in page and "Won this month" in page
    stages = page.split('id="by-stage"')[1].split("</section>")[0]
    assert "R$3,501" in stages


async def test_home_stale_leads_follow_the_setting(
    client: httpx.AsyncClient, database: Any
) -> None:
    from sqlalchemy import text

    from lovedcrm.db.tenant import tenant_transaction

    await web_signup(client)
    h = await session_headers(client)
    org_id = (await client.get("/api/v1/organizations/current")).json()["id"]
    me = (await client.get("/api/v1/auth/me")).json()
    my_id = me.get("id") or me.get("user", {}).get("id")
    fresh = await create_lead(client, h, full_name="Lead Novo")
    old = await create_lead(client, h, full_name="Lead Esquecido", assigned_to=my_id)
    async with tenant_transaction(database.sessionmaker, org_id) as session:
        last_activity = (
            await session.execute(
                text(
                    "UPDATE leads SET last_activity_at = now() - interval '9 days',"
                    " created_at = now() - interval '20 days', assigned_to = :me WHERE id = :id"
                    " RETURNING last_activity_at"
                ),
                {"id": old["id"], "me": my_id},
            )
        ).scalar_one()
        await session.execute(
            text("UPDATE leads SET assigned_to = :me WHERE id = :id"),
            {"id": fresh["id"], "me": my_id},
        )
    before = datetime.now(UTC)
    page = (await client.get("/")).text
    after = datetime.now(UTC)
    section = page.split('id="stale"')[1].split("</section>")[0]
    assert "Lead Esquecido" in section and "Lead Novo" not in section
    # "há 9 dias" (in calendar days: "há 10 dias" if midnight passed since the update).
    pt = i18n.localizer_for("pt_BR")
    assert any(pt.reltime_text(last_activity, at) in section for at in (before, after)), section
    r = await _patch_org(client, {"stale_days": 10})
    assert r.status_code == 200
    section = (await client.get("/")).text.split('id="stale"')[1].split("</section>")[0]
    assert "Lead Esquecido" not in section


@pytest.mark.parametrize("path", ["/settings/branding", "/settings/jobs"])
async def test_settings_pages_use_the_shell(client: httpx.AsyncClient, path: str) -> None:
    await web_signup(client)
    page = await client.get(path)
    assert page.status_code == 200
    assert 'class="sidebar"' in page.text and 'aria-current="page"' in page.text
    assert (await client.get("/settings")).headers["location"] == "/settings/branding"


def test_portuguese_plurals_follow_brazilian_usage() -> None:
    """Zero is plural in Brazilian Portuguese: "0 leads convertidos", "1 de 1 linha"."""
    pt = Localizer(locale="pt_BR")
    converted = ("%(count)s lead converted", "%(count)s leads converted")
    assert [pt.ngettext(*converted, n) % {"count": n} for n in (0, 1, 2)] == [
        "0 leads convertidos",
        "1 lead convertido",
        "2 leads convertidos",
    ]
    rows = ("%(processed)s of %(total)s row", "%(processed)s of %(total)s rows")
    assert pt.ngettext(*rows, 1) % {"processed": 1, "total": 1} == "1 de 1 linha"
    assert pt.ngettext(*rows, 5) % {"processed": 2, "total": 5} == "2 de 5 linhas"
