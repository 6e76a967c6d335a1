"""The main pages rendered in pt-BR carry no English: every piece of visible text (and the
texts people hear or hover: aria-label, title, placeholder, alt) is checked against the
catalog (an English message whose translation differs is a string that missed ``_()`` or the
catalog) and against a list of common English words."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from lovedcrm.auth import service as auth_service
from tests.english import english_in, english_messages, texts_of
from tests.factories import csrf_token, web_signup

# The pages a team opens; {lead} is a lead of the organization.
PAGES = (
    "/",
    "/pipeline",
    "/leads",
    "/leads/new",
    "/leads/{lead}",
    "/leads/{lead}/timeline",
    "/leads/{lead}/merge",
    "/leads/{lead}/delete",
    "/leads/import",
    "/inbox",
    "/reports",
    "/reports/pipeline",
    "/reports/team",
    "/reports/channels",
    "/reports/forecast",
    "/reports/costs",
    "/settings/pipeline",
    "/settings/assignment",
    "/settings/branding",
    "/settings/custom-fields",
    "/settings/templates",
    "/settings/whatsapp",
    "/settings/telephony",
    "/settings/telephony/switching",
    "/settings/jobs",
    "/settings/team",
    "/settings/api-keys",
    "/settings/webhooks",
    "/settings/profile",
    "/settings/ai",
    "/agenda",
    "/agenda?view=list",
    "/leads/{lead}/meetings-panel",
    "/agenda/new?lead_id={lead}",
    "/settings/audit",
    "/settings/audit?security=1",
    "/settings/privacy",
    "/leads/{lead}/privacy-panel",
    "/notifications",
    "/settings/notifications",
    "/settings/system",
    "/settings/billing",
    "/billing/sandbox/checkout?plan=enterprise&cycle=yearly",
    "/marketing",
    "/marketing/campaigns/new",
    "/marketing/integrations",
    "/marketing/ad-leads",
    "/marketing/roi",
)
SIGNED_OUT = ("/login", "/signup", "/forgot-password")


def test_the_checker_finds_english() -> None:
    html = (
        '<main><h1>Funil</h1><p>Save changes</p><button aria-label="Close the menu">×</button>'
        "<script>var the = 1;</script><p>Nenhum lead ainda</p><p>Leads</p></main>"
    )
    assert english_in(texts_of(html), {"Leads list"}) == ["Save changes", "Close the menu"]
    assert english_in(["Configurações"], {"Settings"}) == []
    assert english_in(["Settings"], {"Settings"}) == ["Settings"]


@pytest.fixture
async def signed_in(client: httpx.AsyncClient) -> dict[str, Any]:
    await web_signup(client)
    csrf = await csrf_token(client, "/leads/new")
    r = await client.post(
        "/api/v1/leads",
        json={
            "full_name": "Roberta Teles",
            "company": "Teles Doces",
            "phone": "+5511987650001",
            "estimated_value": "1500.50",
        },
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 201, r.text
    return {"lead": r.json()["id"]}


async def test_main_pages_in_portuguese_have_no_english(
    client: httpx.AsyncClient, signed_in: dict[str, Any]
) -> None:
    messages = english_messages()
    found: dict[str, list[str]] = {}
    for template in PAGES:
        path = template.format(**signed_in)
        r = await client.get(path, headers={"Accept-Language": "pt-BR"})
        assert r.status_code == 200, (path, r.status_code)
        texts = texts_of(r.text)
        assert len(texts) >= 10, (path, texts)  # the page was read, not an empty shell
        english = english_in(texts, messages)
        if english:
            found[path] = english
    assert found == {}


async def test_signed_out_pages_in_portuguese_have_no_english(client: httpx.AsyncClient) -> None:
    messages = english_messages()
    found: dict[str, list[str]] = {}
    for path in SIGNED_OUT:
        r = await client.get(path, headers={"Accept-Language": "pt-BR"})
        assert r.status_code == 200, (path, r.status_code)
        texts = texts_of(r.text)
        assert len(texts) >= 10, (path, texts)  # the page was read, not an empty shell
        english = english_in(texts, messages)
        if english:
            found[path] = english
    assert found == {}


async def test_sign_up_errors_in_portuguese(client: httpx.AsyncClient) -> None:
    """The password rules and a bad e-mail, as the sign-up form shows them in pt-BR."""
    form = {"full_name": "Ana", "organization_name": "Loja", "email": "ana@example.com"}
    r = await client.post(
        "/signup", data={**form, "password": "curta"}, headers={"Accept-Language": "pt-BR"}
    )
    assert r.status_code == 422
    assert "A senha precisa ter: pelo menos 10 caracteres, pelo menos um número ou símbolo." in (
        r.text
    )
    r = await client.post(
        "/signup",
        data={**form, "email": "ana@", "password": "senha-boa-123"},
        headers={"Accept-Language": "pt-BR"},
    )
    assert r.status_code == 422 and "O endereço de e-mail não é válido." in r.text
    assert english_in(texts_of(r.text), english_messages()) == []


def test_the_length_rule_names_the_minimum() -> None:
    assert str(auth_service.PASSWORD_MIN) in auth_service.PASSWORD_RULES["length"]
