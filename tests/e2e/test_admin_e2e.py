"""The admin screens in a real browser, in Portuguese and in English, at 1440 and 390 px:
invite a member from Settings → Team and accept the invitation from the link in the mail;
create an API key (its secret shown once) and revoke it; add a webhook pointed at a receiver
on loopback, send a test, see the delivery arrive in the log and redeliver it; change your
own password and end another session from My account."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.e2e.conftest import DESKTOP, PHONE, screenshot
from tests.factories import PASSWORD, browser_signup, live_login, mailed_links, unique_email
from tests.fakes import FakeServer, RecordedRequest, Reply

LIVE = 30_000  # ms: the server's worker picks the delivery up by itself; the machine may be busy
NEW_PASSWORD = "0utra-senha-boa"

WORDS = {
    "pt-BR": {
        "team": "Equipe",
        "account": "Minha conta",
        "keys": "Chaves de API",
        "send_invitation": "Enviar convite",
        "invited": "Convite enviado para",
        "no_invitation": "Nenhum convite esperando resposta.",
        "create_key": "Criar chave",
        "shown_once": "é mostrada só desta vez",
        "revoke": "Revogar",
        "revoke_key": "Revogar chave",
        "revoked": "Revogada",
        "add_webhook": "Adicionar webhook",
        "send_test": "Enviar um teste",
        "delivered": "Entregue",
        "redeliver": "Reenviar",
        "end": "Encerrar",
        "end_session": "Encerrar sessão",
        "session_ended": "Sessão encerrada.",
        "change_password": "Alterar senha",
        "password_changed": "Senha alterada.",
        "log_out": "Sair",
    },
    "en": {
        "team": "Team",
        "account": "My account",
        "keys": "API keys",
        "send_invitation": "Send invitation",
        "invited": "Invitation sent to",
        "no_invitation": "No invitation waiting for an answer.",
        "create_key": "Create key",
        "shown_once": "it is shown only this once",
        "revoke": "Revoke",
        "revoke_key": "Revoke key",
        "revoked": "Revoked",
        "add_webhook": "Add webhook",
        "send_test": "Send a test",
        "delivered": "Delivered",
        "redeliver": "Redeliver",
        "end": "End",
        "end_session": "End session",
        "session_ended": "Session ended.",
        "change_password": "Change password",
        "password_changed": "Password changed.",
        "log_out": "Log out",
    },
}


class Receiver(FakeServer):
    """Where the webhooks point: 200 to everything."""

    def handle(self, request: RecordedRequest) -> Reply:
        return Reply.json({"received": True})


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as fake:
        yield fake


async def _open_menu_link(page: Any, label: str) -> None:
    await page.locator("details.user-menu > summary").click()
    await page.locator(".user-menu .menu-link", has_text=label).click()


async def _shots(page: Any, name: str) -> None:
    """Desktop and phone screenshots; at 390 px nothing may be wider than the screen."""
    await screenshot(page, f"{name}-desktop")
    await page.set_viewport_size(PHONE)
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{name}: the page is {overflow}px wider than a phone"
    await screenshot(page, f"{name}-phone")
    await page.set_viewport_size(DESKTOP)


async def _toast(page: Any, text: str) -> None:
    await expect(page.locator("#toasts")).to_contain_text(text)


async def _invite_and_accept(
    page: Any, browser: Any, base: str, data_dir: Path, lang: str, w: dict[str, str]
) -> None:
    await page.locator("details.user-menu > summary").click()
    await expect(page.locator(".user-menu .menu-link")).to_have_count(4)  # an admin's links
    await screenshot(page, f"admin-user-menu-{lang}")
    await page.locator(".user-menu .menu-link", has_text=w["team"]).click()
    await expect(page).to_have_url(re.compile(r"/settings/team$"))
    invitee = unique_email(f"e2e-{lang.lower()}")
    await page.fill("#invite-email", invitee)
    await page.select_option("#invite-role", "sales")
    await page.get_by_role("button", name=w["send_invitation"]).click()
    await _toast(page, f"{w['invited']} {invitee}")
    await expect(page.locator("#invitations")).to_contain_text(invitee)
    await _shots(page, f"admin-team-{lang}")

    [link] = mailed_links(data_dir, invitee, "/invitations/accept")
    guest_context = await browser.new_context(viewport=PHONE, base_url=base, locale=lang)
    guest = await guest_context.new_page()
    await guest.goto(link)
    await expect(guest.locator("main")).to_contain_text(invitee)
    await guest.fill("#full_name", "Renata Alves")
    await guest.fill("#password", PASSWORD)
    await guest.locator("form[action='/invitations/accept'] button[type=submit]").click()
    await guest.wait_for_url(f"{base}/")
    await guest.locator("details.user-menu > summary").click()
    await expect(guest.locator("details.user-menu .menu-head")).to_contain_text(invitee)
    await guest_context.close()

    await page.reload()
    await expect(page.locator("#members")).to_contain_text(invitee)
    await expect(page.locator("#invitations")).to_contain_text(w["no_invitation"])


async def _create_key(page: Any, name: str, w: dict[str, str]) -> str:
    await page.fill("#key-name", name)
    await page.locator("input[name=scopes][value='leads:read']").check()
    await page.get_by_role("button", name=w["create_key"]).click()
    secret = page.locator("#new-key")
    await expect(secret).to_have_value(re.compile(r"^lcrm_[A-Za-z0-9]{8}_"))
    value: str = await secret.input_value()
    return value


async def _api_key_shown_once_then_revoked(
    page: Any, base: str, lang: str, w: dict[str, str]
) -> None:
    await page.locator("nav.tabs a", has_text=w["keys"]).click()
    await expect(page).to_have_url(re.compile(r"/settings/api-keys$"))
    secret = await _create_key(page, "Zapier", w)
    await expect(page.locator(".secret-once")).to_contain_text(w["shown_once"])
    await _shots(page, f"admin-api-keys-{lang}")
    async with httpx.AsyncClient(base_url=base) as api:
        key = {"Authorization": f"Bearer {secret}"}
        assert (await api.get("/api/v1/leads", headers=key)).status_code == 200

        await page.goto("/settings/api-keys")
        assert secret not in await page.content()
        row = page.locator("li.row-item", has_text="Zapier")
        await row.locator("details.confirm > summary", has_text=w["revoke"]).click()
        await row.get_by_role("button", name=w["revoke_key"]).click()
        await expect(page.locator("li.row-item", has_text="Zapier")).to_contain_text(w["revoked"])
        assert (await api.get("/api/v1/leads", headers=key)).status_code == 401
    await _create_key(page, "Webhooks", w)  # the next step's webhook belongs to a key


async def _webhook_test_and_redeliver(
    page: Any, receiver: Receiver, lang: str, w: dict[str, str]
) -> None:
    await page.locator("nav.tabs a", has_text="Webhooks").click()
    await expect(page).to_have_url(re.compile(r"/settings/webhooks$"))
    path = f"/hook/{lang}"
    await page.fill("#new-url", receiver.url + path)
    key = await page.locator("#new-key option", has_text="Webhooks").get_attribute("value")
    await page.select_option("#new-key", key)
    await page.get_by_role("button", name=w["add_webhook"]).click()
    await expect(page.locator("#hook-secret")).to_have_value(re.compile(r"^whsec_"))

    await page.get_by_role("button", name=w["send_test"]).click()
    deliveries = page.locator("#deliveries li.delivery")
    await expect(deliveries).to_have_count(1, timeout=LIVE)  # the log watches for it
    await expect(deliveries.first).to_contain_text(w["delivered"])
    await expect(deliveries.first).to_contain_text("webhook.test")
    await expect(deliveries.first).to_contain_text("HTTP 200")
    await _shots(page, f"admin-webhook-{lang}")

    await deliveries.first.get_by_role("button", name=re.compile(w["redeliver"])).click()
    await expect(page.locator("#deliveries li.delivery")).to_have_count(2, timeout=LIVE)
    await expect(page.locator("#deliveries li.delivery").first).to_contain_text(w["delivered"])
    first, second = receiver.requests_to(path, "POST")
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.json["type"] == "webhook.test"


async def _end_a_session_and_change_password(
    page: Any, base: str, email: str, lang: str, w: dict[str, str]
) -> None:
    other = await live_login(base, email)  # a script logged in with the password
    await _open_menu_link(page, w["account"])
    await expect(page).to_have_url(re.compile(r"/settings/profile$"))
    rows = page.locator("#sessions li.row-item")
    await expect(rows).to_have_count(2)
    await _shots(page, f"admin-account-{lang}")
    script = rows.filter(has_text="Python")
    await script.locator("details.confirm > summary", has_text=w["end"]).click()
    await script.get_by_role("button", name=w["end_session"]).click()
    await _toast(page, w["session_ended"])
    await expect(page.locator("#sessions li.row-item")).to_have_count(1)
    async with httpx.AsyncClient(base_url=base) as api:
        assert (await api.get("/api/v1/auth/me", headers=other)).status_code == 401

    await page.fill("#current_password", PASSWORD)
    await page.fill("#new_password", NEW_PASSWORD)
    await page.fill("#new_password_again", NEW_PASSWORD)
    await page.get_by_role("button", name=w["change_password"]).click()
    await _toast(page, w["password_changed"])

    await page.locator("details.user-menu > summary").click()
    await page.locator(".user-menu").get_by_role("button", name=w["log_out"]).click()
    await page.wait_for_url(re.compile(r"/login$"))
    await page.fill("#email", email)
    await page.fill("#password", NEW_PASSWORD)
    await page.locator("form[action='/login'] button[type=submit]").click()
    await page.wait_for_url(f"{base}/")


@pytest.mark.parametrize("lang", ["pt-BR", "en"])
async def test_admin_screens(
    browser: Any, live_server: str, live_data_dir: Path, receiver: Receiver, lang: str
) -> None:
    w = WORDS[lang]
    context = await browser.new_context(viewport=DESKTOP, base_url=live_server, locale=lang)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        account = await browser_signup(page)
        if lang == "en":  # a new organization speaks Portuguese: the person picks English
            await page.locator("details.user-menu > summary").click()
            await page.select_option("#lang-menu", "en")
            await expect(page.locator("html")).to_have_attribute("lang", "en")
        await _invite_and_accept(page, browser, live_server, live_data_dir, lang, w)
        await _api_key_shown_once_then_revoked(page, live_server, lang, w)
        await _webhook_test_and_redeliver(page, receiver, lang, w)
        await _end_a_session_and_change_password(page, live_server, account["email"], lang, w)
        assert errors == []
    finally:
        await context.close()
