"""The main pages rendered in pt-BR carry no English: every piece of visible text (and the
texts people hear or hover: aria-label, title, placeholder, alt) is checked against the
catalog (an English message whose translation differs is a string that missed ``_()`` or the
catalog) and against a list of common English words."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from babel.messages.pofile import read_po

from lovedcrm.auth import service as auth_service
from lovedcrm.web.i18n import LOCALE_DIR
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
    "/settings/pipeline",
    "/settings/assignment",
    "/settings/branding",
    "/settings/custom-fields",
    "/settings/templates",
    "/settings/whatsapp",
    "/settings/jobs",
    "/settings/team",
    "/settings/api-keys",
    "/settings/webhooks",
    "/settings/profile",
)
SIGNED_OUT = ("/login", "/signup", "/forgot-password")

# Words that are English and not Portuguese (nor names the product keeps: WhatsApp, API,
# webhook, sandbox, lead, e-mail, CSV, Meta…).
ENGLISH = re.compile(
    r"\b(the|your|with|and|you|this|that|from|have|has|will|are|is|of|to|for|not|yet|"
    r"save|cancel|delete|edit|add|search|settings|name|company|stage|value|owner|"
    r"created|updated|today|yesterday|ago|select|apply|back|next|previous|loading|"
    r"close|open|new|import|export|filter|filters|sort|show|hide|more|less|page)\b",
    re.IGNORECASE,
)
# What the page shows from the data, not from the product (the lead and the organization).
DATA = ("Carla Dias", "Loja Web", "Roberta Teles", "Teles Doces")
ATTRIBUTES = ("aria-label", "title", "placeholder", "alt")


class _Texts(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "code", "pre", "template"):
            self._skip += 1
        for name, value in attrs:
            if name in ATTRIBUTES and value:
                self.texts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "code", "pre", "template") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.texts.append(data)


def texts_of(html: str) -> list[str]:
    parser = _Texts()
    parser.feed(html)
    found = []
    for text in parser.texts:
        for name in DATA:
            text = text.replace(name, " ")
        text = " ".join(text.split())
        if text:
            found.append(text)
    return found


def _english_messages() -> set[str]:
    """The catalog's English messages whose Portuguese differs (placeholders aside)."""
    po = LOCALE_DIR / "pt_BR" / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as handle:
        catalog = read_po(handle)
    messages: set[str] = set()
    for message in catalog:
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for msgid, text in zip(ids, strings, strict=False):
            if (
                isinstance(msgid, str)
                and text
                and text != msgid
                and "%(" not in msgid
                and len(msgid) > 3
            ):
                messages.add(msgid)
    return messages


def english_in(texts: list[str], messages: set[str]) -> list[str]:
    return [t for t in texts if t in messages or ENGLISH.search(t)]


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
    messages = _english_messages()
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
    messages = _english_messages()
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
    assert english_in(texts_of(r.text), _english_messages()) == []


def test_the_length_rule_names_the_minimum() -> None:
    assert str(auth_service.PASSWORD_MIN) in auth_service.PASSWORD_RULES["length"]
