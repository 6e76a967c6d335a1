"""Settings → Webhooks over HTTP (cookie session, CSRF) against a real receiver on loopback:
add a subscription (its secret shown once), send a test, see the delivery in the log (with
its status and response code), redeliver it (same event id), a failing receiver, edit,
disable and enable, a new secret, delete; bad input named next to its field, refused URLs,
other organizations' webhooks and members without the permission."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle
from lovedcrm.web.i18n import LANG_COOKIE
from tests.factories import (
    csrf_token,
    session_headers,
    signup,
    web_accept_invitation,
    web_signup,
)
from tests.fakes import FakeServer, RecordedRequest, Reply

PAGE = "/settings/webhooks"
SECRET_RE = re.compile(r'value="(whsec_[A-Za-z0-9+/=]+)"')


class Receiver(FakeServer):
    """Answers each path with the status set for it (200 unless told)."""

    def __init__(self) -> None:
        super().__init__()
        self.status: dict[str, int] = {}

    def handle(self, request: RecordedRequest) -> Reply:
        return Reply(self.status.get(request.path, 200), b'{"ok": true}')


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as fake:
        yield fake


async def _deliver(database: Database, settings: Settings) -> int:
    return await run_until_idle(database, settings, types=["webhook.deliver"], timeout=30)


async def _key(client: httpx.AsyncClient, name: str = "Integração") -> dict[str, Any]:
    r = await client.post(
        "/api/v1/api-keys",
        headers=await session_headers(client),
        json={"name": name, "scopes": ["leads:read"]},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _hooks(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/webhooks")
    assert r.status_code == 200, r.text
    return list(r.json())


def _form(csrf: str, url: str, key_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "csrf_token": csrf,
        "url": url,
        "events": ["lead.created"],
        "api_key_id": key_id,
        "max_retries": "0",
        **fields,
    }


def _delivery_rows(page: str) -> list[str]:
    return re.findall(r'<li class="row-item delivery" id="delivery-[^"]+">(.*?)</li>', page, re.S)


async def test_add_test_see_the_delivery_and_redeliver(
    client: httpx.AsyncClient, database: Database, settings: Settings, receiver: Receiver
) -> None:
    await web_signup(client)
    page = await client.get(PAGE)
    assert page.status_code == 200 and 'href="/settings/webhooks" class="tab active"' in page.text
    assert "Crie uma chave de API antes" in page.text  # a webhook needs a key
    key = await _key(client)
    csrf = await csrf_token(client, PAGE)
    url = f"{receiver.url}/hook/{uuid.uuid4().hex}"

    # Nothing typed: each field says what it needs; nothing is made.
    r = await client.post(PAGE, data={"csrf_token": csrf, "max_retries": "11"})
    assert r.status_code == 422
    for words in (
        "Escreva o endereço (https://…) que recebe os eventos.",
        "Escolha pelo menos um evento.",
        "Escolha a chave de API dona deste webhook.",
        "Use um número de 0 a 10.",
    ):
        assert words in r.text
    # Refused by the service: a private address, a page that is not a URL, a revoked key.
    r = await client.post(PAGE, data=_form(csrf, "http://10.1.2.3/hook", key["id"]))
    assert r.status_code == 422 and "Este endereço está numa rede privada." in r.text
    assert 'value="http://10.1.2.3/hook"' in r.text  # kept for correction
    r = await client.post(PAGE, data=_form(csrf, "hooks.example.com", key["id"]))
    assert r.status_code == 422 and "Este não é um endereço web válido" in r.text
    revoked = await _key(client, "Revogada")
    await client.delete(f"/api/v1/api-keys/{revoked['id']}", headers=await session_headers(client))
    r = await client.post(PAGE, data=_form(csrf, url, revoked["id"]))
    assert r.status_code == 422 and "Esta chave de API foi revogada ou expirou." in r.text
    assert await _hooks(client) == []

    # Added: the signing secret is on this answer only.
    r = await client.post(PAGE, data=_form(csrf, url, key["id"], events=["*", "lead.lost"]))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    [secret] = SECRET_RE.findall(r.text)
    [hook] = await _hooks(client)
    assert hook["url"] == url and hook["events"] == ["*"] and hook["max_retries"] == 0
    detail = f"{PAGE}/{hook['id']}"
    page = await client.get(detail)
    assert secret not in page.text and "Nada enviado ainda." in page.text
    listing = await client.get(PAGE)
    assert url in listing.text and "Todos os eventos" in listing.text and "Ativo" in listing.text

    # Send a test: waiting (and the log watches for it), then delivered, signed.
    r = await client.post(f"{detail}/test", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == f"{detail}#deliveries"
    page = await client.get(detail)
    assert "1 entrega esperando envio." in page.text
    assert f'hx-get="{detail}/deliveries"' in page.text and 'hx-trigger="every 2s"' in page.text
    assert await _deliver(database, settings) == 1
    path = url.removeprefix(receiver.url)
    [hit] = receiver.requests_to(path)
    assert Webhook(secret).verify(hit.body, hit.headers)["type"] == "webhook.test"
    fragment = await client.get(f"{detail}/deliveries", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert "hx-trigger" not in fragment.text  # nothing left to wait for
    [row] = _delivery_rows(fragment.text)
    assert (
        "Entregue" in row and "webhook.test" in row and 'HTTP <span class="num">200</span>' in row
    )
    assert "tentativa 1" in row

    # Redeliver: the same message again, with the same webhook-id, logged as a new attempt.
    delivery_id = re.search(r'id="delivery-([0-9a-f-]{36})"', fragment.text)
    assert delivery_id
    r = await client.post(
        f"{detail}/deliveries/{delivery_id.group(1)}/redeliver", data={"csrf_token": csrf}
    )
    assert r.status_code == 303
    assert await _deliver(database, settings) == 1
    first, second = receiver.requests_to(path)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    page = await client.get(detail)
    assert len(_delivery_rows(page.text)) == 2
    r = await client.post(
        f"{detail}/deliveries/{uuid.uuid4()}/redeliver", data={"csrf_token": csrf}
    )
    assert r.status_code == 404 and "Esta entrega não está no histórico deste webhook." in r.text

    # A failing receiver: the log says so, with its answer.
    receiver.status[path] = 500
    await client.post(f"{detail}/test", data={"csrf_token": csrf})
    await _deliver(database, settings)
    rows = _delivery_rows((await client.get(detail)).text)
    assert "Não entregue" in rows[0] and 'HTTP <span class="num">500</span>' in rows[0]


async def test_edit_disable_enable_rotate_and_delete(
    client: httpx.AsyncClient, database: Database, settings: Settings, receiver: Receiver
) -> None:
    await web_signup(client)
    key = await _key(client)
    csrf = await csrf_token(client, PAGE)
    url = f"{receiver.url}/hook/{uuid.uuid4().hex}"
    r = await client.post(PAGE, data=_form(csrf, url, key["id"]))
    assert r.status_code == 200
    [old_secret] = SECRET_RE.findall(r.text)
    [hook] = await _hooks(client)
    detail = f"{PAGE}/{hook['id']}"

    # Edit: a bad change is refused and leaves the webhook as it was.
    r = await client.post(
        detail, data=_form(csrf, "http://10.9.9.9/x", key["id"], events=["lead.lost"])
    )
    assert r.status_code == 422 and "rede privada" in r.text
    assert 'value="http://10.9.9.9/x"' in r.text
    assert f'<h2 id="hook-h" class="break">{url}</h2>' in r.text
    assert (await _hooks(client))[0]["url"] == url
    new_url = url + "/v2"
    r = await client.post(
        detail,
        data=_form(
            csrf, new_url, key["id"], events=["lead.lost", "lead.converted"], max_retries="5"
        ),
    )
    assert r.status_code == 303
    [hook] = await _hooks(client)
    assert hook["url"] == new_url and hook["events"] == ["lead.lost", "lead.converted"]
    assert hook["max_retries"] == 5

    # Disabled: no test, no redelivery, until enabled again.
    r = await client.post(f"{detail}/active", data={"csrf_token": csrf, "active": "false"})
    assert r.status_code == 303 and (await _hooks(client))[0]["is_active"] is False
    page = await client.get(detail)
    assert "Desativado" in page.text and "Enviar um teste" not in page.text
    r = await client.post(f"{detail}/test", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert "Ative o webhook para enviar um teste." in (await client.get(detail)).text
    assert await _deliver(database, settings) == 0
    r = await client.post(f"{detail}/active", data={"csrf_token": csrf, "active": "true"})
    assert r.status_code == 303 and (await _hooks(client))[0]["is_active"] is True

    # A new secret, shown once; the next delivery is signed with it.
    r = await client.post(f"{detail}/rotate-secret", data={"csrf_token": csrf})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    [secret] = SECRET_RE.findall(r.text)
    assert secret != old_secret
    await client.post(f"{detail}/test", data={"csrf_token": csrf})
    await _deliver(database, settings)
    [hit] = receiver.requests_to(new_url.removeprefix(receiver.url))
    assert Webhook(secret).verify(hit.body, hit.headers)["type"] == "webhook.test"

    # Deleted, with its log.
    r = await client.post(f"{detail}/delete", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == PAGE
    assert await _hooks(client) == []
    assert (await client.get(detail)).status_code == 404


async def test_english_other_organizations_and_permissions(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await web_signup(client)
    key = await _key(client)
    csrf = await csrf_token(client, PAGE)
    r = await client.post(PAGE, data=_form(csrf, f"{receiver.url}/hook/x", key["id"]))
    assert r.status_code == 200
    [hook] = await _hooks(client)
    client.cookies.set(LANG_COOKIE, "en")
    page = await client.get(f"{PAGE}/{hook['id']}")
    assert "Send a test" in page.text and "Nothing sent yet." in page.text
    r = await client.post(f"{PAGE}/{hook['id']}/test")  # no CSRF token
    assert r.status_code == 403
    assert (await client.get(f"{PAGE}/{uuid.uuid4()}")).status_code == 404
    assert (await client.get(f"{PAGE}/not-an-id")).status_code in (404, 422)

    # Another organization's admin does not see it; a salesperson sees no webhooks at all.
    await web_signup(client)
    csrf = await csrf_token(client, PAGE)
    assert (await client.get(f"{PAGE}/{hook['id']}")).status_code == 404
    r = await client.post(f"{PAGE}/{hook['id']}/delete", data={"csrf_token": csrf})
    assert r.status_code == 404
    admin = await signup(client)
    await web_accept_invitation(client, admin["headers"], "sales")
    csrf = await csrf_token(client, "/settings/profile")
    assert (await client.get(PAGE)).status_code == 403
    r = await client.post(PAGE, data=_form(csrf, f"{receiver.url}/hook/y", key["id"]))
    assert r.status_code == 403
