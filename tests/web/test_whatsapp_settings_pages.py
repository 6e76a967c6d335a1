"""Settings → WhatsApp (HTML, cookie session, CSRF): add each provider, inline errors, test
the connection against the fake Graph API, connect WhatsApp Web by QR code against the fake
WAHA, switch the active provider and undo it; secrets never shown in full; admins only."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.factories import CSRF_INPUT, csrf_token, join, signup, web_login, web_signup
from tests.fakes.graph_api import ACCESS_TOKEN, PHONE_NUMBER_ID, FakeGraphApi
from tests.fakes.waha import API_KEY, QR_PNG, FakeWaha

PAGE = "/settings/whatsapp"
APP_SECRET = "meta-app-secret-0123456789"
QR_DATA = base64.b64encode(QR_PNG).decode()


@pytest.fixture
def graph() -> Iterator[FakeGraphApi]:
    with FakeGraphApi() as fake:
        yield fake


@pytest.fixture
def waha() -> Iterator[FakeWaha]:
    with FakeWaha(api_key=API_KEY) as fake:
        yield fake


async def _configs(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/whatsapp/configs")
    assert r.status_code == 200, r.text
    return list(r.json())


async def _add(client: httpx.AsyncClient, csrf: str, **fields: str) -> httpx.Response:
    return await client.post(PAGE, data={"csrf_token": csrf, **fields})


async def _added(client: httpx.AsyncClient, csrf: str, **fields: str) -> dict[str, Any]:
    before = {c["id"] for c in await _configs(client)}
    r = await _add(client, csrf, **fields)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == PAGE
    new = [c for c in await _configs(client) if c["id"] not in before]
    assert len(new) == 1
    return new[0]


def _business(graph: FakeGraphApi, **extra: str) -> dict[str, str]:
    return {
        "provider_type": "business_api",
        "label": "Oficial",
        "business_phone_id": PHONE_NUMBER_ID,
        "access_token": ACCESS_TOKEN,
        "app_secret": APP_SECRET,
        "graph_base_url": graph.url,
        **extra,
    }


def _card(page: str, config_id: str) -> str:
    start = page.index(f'id="config-{config_id}"')
    end = page.find('<li class="stage-row', start + 10)
    return page[start : end if end > 0 else page.index("wa-add-h")]


async def test_sandbox_through_the_page(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    page = await client.get(PAGE)
    assert page.status_code == 200
    assert "Nenhum provedor de WhatsApp ainda" in page.text
    assert 'href="/settings/whatsapp" class="tab active"' in page.text
    csrf = await csrf_token(client, PAGE)
    config = await _added(client, csrf, provider_type="sandbox", label="Testes")
    assert config["provider_type"] == "sandbox" and config["label"] == "Testes"
    assert not config["is_active"]
    page = await client.get(PAGE)
    card = _card(page.text, config["id"])
    assert "Sandbox · Testes" in card and "Conectado" in card
    assert "Ativar" in card and "Testar conexão" in card and "Conectar" not in card
    assert "Sandbox adicionado" in page.text  # the flash
    # Testing the sandbox's connection answers at once.
    r = await client.post(f"{PAGE}/{config['id']}/check", data={"csrf_token": csrf})
    assert r.status_code == 200
    assert 'data-check="ok"' in _card(r.text, config["id"]) and "Conexão OK" in r.text
    # Without the CSRF token nothing happens.
    r = await client.post(PAGE, data={"provider_type": "sandbox"})
    assert r.status_code == 403
    assert len(await _configs(client)) == 1


async def test_business_api_missing_fields_are_named_inline(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, PAGE)
    typed = "EAAG-typed-but-not-kept-987654"
    r = await _add(client, csrf, provider_type="business_api", label="Oficial", access_token=typed)
    assert r.status_code == 422
    page = r.text
    assert '<details class="add-provider" id="add-business_api" open>' in page
    for name in ("business_phone_id", "app_secret"):
        assert f'id="new-business_api-{name}-error"' in page, name
    assert 'id="new-business_api-access_token-error"' not in page
    assert "Obrigatório para este provedor." in page
    alert = re.search(r'<p class="alert" role="alert">([^<]*)</p>', page)
    assert alert and "ID do número de telefone" in alert.group(1) and "App secret" in alert.group(1)
    # What was typed comes back, except the secret, which must be typed again.
    assert 'value="Oficial"' in page
    assert typed not in page
    assert "Digite de novo" in page
    # A bad version (the format, checked first), then a bad address (the service's rule).
    fields = {
        "provider_type": "business_api",
        "business_phone_id": "123",
        "access_token": typed,
        "app_secret": "s3cr3t-s3cr3t",
    }
    r = await _add(client, csrf, **fields, api_version="21")
    assert r.status_code == 422
    assert 'id="new-business_api-api_version-error"' in r.text and "v21.0" in r.text
    assert typed not in r.text and "s3cr3t-s3cr3t" not in r.text
    r = await _add(client, csrf, **fields, graph_base_url="ftp://graph.example")
    assert r.status_code == 422
    assert 'id="new-business_api-graph_base_url-error"' in r.text
    assert "http:// ou https://" in r.text
    assert typed not in r.text and "s3cr3t-s3cr3t" not in r.text
    assert await _configs(client) == []


async def test_business_api_against_the_fake_graph_api(
    client: httpx.AsyncClient, graph: FakeGraphApi
) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, PAGE)
    config = await _added(client, csrf, **_business(graph))
    assert config["graph_base_url"] == graph.url
    page = (await client.get(PAGE)).text
    card = _card(page, config["id"])
    # The webhook address and verify token to paste into Meta's console, with copy buttons.
    assert config["webhook_url"] and config["webhook_url"].endswith(config["id"])
    assert f'value="{config["webhook_url"]}"' in card
    assert f'value="{config["webhook_verify_token"]}"' in card
    assert card.count("data-copy=") == 2
    # Secrets only masked.
    assert ACCESS_TOKEN not in page and APP_SECRET not in page
    assert config["access_token"] in card and config["app_secret"] in card
    assert "deixe em branco para manter" in card

    r = await client.post(f"{PAGE}/{config['id']}/check", data={"csrf_token": csrf})
    assert r.status_code == 200
    card = _card(r.text, config["id"])
    assert 'data-check="ok"' in card and "Loved CRM" in card  # the number's verified name
    assert graph.requests_to(f"/v21.0/{PHONE_NUMBER_ID}", "GET")
    assert (await _configs(client))[0]["connection_status"] == "connected"

    # Editing with the secrets left empty keeps them: the connection still works.
    r = await client.post(
        f"{PAGE}/{config['id']}",
        data={
            "csrf_token": csrf,
            "label": "Oficial 2",
            "business_phone_id": PHONE_NUMBER_ID,
            "access_token": "",
            "app_secret": "",
            "graph_base_url": graph.url,
            "messages_per_second": "20",
        },
    )
    assert r.status_code == 303, r.text
    saved = (await _configs(client))[0]
    assert saved["label"] == "Oficial 2" and saved["access_token"] == config["access_token"]
    assert saved["rate_limits"] == {"messages_per_second": 20}
    r = await client.post(f"{PAGE}/{config['id']}/check", data={"csrf_token": csrf})
    assert 'data-check="ok"' in _card(r.text, config["id"])

    # A wrong token: the check says so.
    r = await client.post(
        f"{PAGE}/{config['id']}",
        data={"csrf_token": csrf, **_business(graph, access_token="EAAG-wrong-token-000")},
    )
    assert r.status_code == 303
    r = await client.post(f"{PAGE}/{config['id']}/check", data={"csrf_token": csrf})
    card = _card(r.text, config["id"])
    assert 'data-check="failed"' in card and "A conexão falhou" in card
    assert "EAAG-wrong-token-000" not in r.text

    # An error on edit shows inline and does not echo the typed secret.
    r = await client.post(
        f"{PAGE}/{config['id']}",
        data={
            "csrf_token": csrf,
            **_business(graph, graph_base_url="ftp://nope", app_secret="another-secret-42"),
        },
    )
    assert r.status_code == 422
    card = _card(r.text, config["id"])
    assert f'id="edit-{config["id"]}-graph_base_url-error"' in card
    assert "http:// ou https://" in card
    assert "another-secret-42" not in r.text and ACCESS_TOKEN not in r.text


async def test_web_unofficial_shows_the_qr_code_from_the_bridge(
    client: httpx.AsyncClient, waha: FakeWaha
) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, PAGE)
    r = await _add(client, csrf, provider_type="web_unofficial", bridge_url=waha.url)
    assert r.status_code == 422 and 'id="new-web_unofficial-session_id-error"' in r.text
    r = await _add(
        client, csrf, provider_type="web_unofficial", session_id="loja 1", bridge_url=waha.url
    )
    assert r.status_code == 422 and "Use só letras sem acento" in r.text
    config = await _added(
        client,
        csrf,
        provider_type="web_unofficial",
        label="Loja",
        session_id="loja",
        bridge_url=waha.url,
        bridge_api_key=API_KEY,
    )
    page = (await client.get(PAGE)).text
    card = _card(page, config["id"])
    assert API_KEY not in page and config["bridge_api_key"] in card
    assert "Desconectado" in card and "Conectar" in card
    assert "data-copy" not in card  # no verify token for the bridge

    # Connect: the bridge starts the session with our webhook, and its QR code shows up.
    r = await client.post(f"{PAGE}/{config['id']}/connect", data={"csrf_token": csrf})
    assert r.status_code == 200, r.text
    assert waha.sessions["loja"].config["webhooks"][0]["url"] == config["webhook_url"]
    card = _card(r.text, config["id"])
    assert f'src="data:image/png;base64,{QR_DATA}"' in card
    assert f'hx-get="{PAGE}/{config["id"]}/qr" hx-trigger="every 3s"' in card
    assert "Aguardando a leitura do QR code" in card

    # The page itself loads the panel while the stored status is "qr".
    page = (await client.get(PAGE)).text
    assert f'hx-get="{PAGE}/{config["id"]}/qr" hx-trigger="load"' in _card(page, config["id"])
    # The panel alone for HTMX, polling while it waits...
    fragment = await client.get(f"{PAGE}/{config['id']}/qr", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert QR_DATA in fragment.text and 'hx-trigger="every 3s"' in fragment.text
    # ...and the whole page with the panel without JavaScript.
    full = await client.get(f"{PAGE}/{config['id']}/qr")
    assert "<html" in full.text and QR_DATA in _card(full.text, config["id"])

    # Scanned: connected, the polling stops, and it can be activated.
    waha.set_status("loja", "WORKING")
    fragment = await client.get(f"{PAGE}/{config['id']}/qr", headers={"HX-Request": "true"})
    assert "Conectado" in fragment.text and "hx-trigger" not in fragment.text
    assert QR_DATA not in fragment.text
    r = await client.post(f"{PAGE}/{config['id']}/activate", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert (await _configs(client))[0]["is_active"] is True


async def test_activate_switch_rollback_and_delete(
    client: httpx.AsyncClient, graph: FakeGraphApi, waha: FakeWaha
) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, PAGE)
    sandbox = await _added(client, csrf, provider_type="sandbox")
    cloud = await _added(client, csrf, **_business(graph))
    bridge = await _added(
        client, csrf, provider_type="web_unofficial", session_id="s1", bridge_url=waha.url,
        bridge_api_key=API_KEY,
    )  # fmt: skip

    r = await client.post(f"{PAGE}/{sandbox['id']}/activate", data={"csrf_token": csrf})
    assert r.status_code == 303
    page = (await client.get(PAGE)).text
    assert "Sandbox agora é o provedor ativo." in page
    card = _card(page, sandbox["id"])
    assert '<span class="badge">Ativo</span>' in card
    assert "Ativar" not in card and "Excluir" not in card  # the active one stays
    assert page.index(f'id="config-{sandbox["id"]}"') < page.index(f'id="config-{cloud["id"]}"')
    history = page[page.index("wa-history-h") :]
    assert "Nenhum → Sandbox" in history and "Concluída" in history
    assert "Desfazer" not in history  # nothing before it to go back to

    # Switching to a bridge that does not answer fails, and nothing changes.
    r = await client.post(f"{PAGE}/{bridge['id']}/activate", data={"csrf_token": csrf})
    assert r.status_code == 200
    assert "Não foi possível trocar para WhatsApp Web (WAHA)." in r.text
    assert "Nada foi alterado." in r.text
    assert [c["id"] for c in await _configs(client) if c["is_active"]] == [sandbox["id"]]

    # The Cloud API answers: the switch completes.
    r = await client.post(f"{PAGE}/{cloud['id']}/activate", data={"csrf_token": csrf})
    assert r.status_code == 303
    page = (await client.get(PAGE)).text
    assert '<span class="badge">Ativo</span>' in _card(page, cloud["id"])
    history = page[page.index("wa-history-h") :]
    rows = re.findall(r'<tr id="migration-([^"]+)">', history)
    assert len(rows) == 3
    newest = history[history.index(f'id="migration-{rows[0]}"') :]
    newest = newest[: newest.index("</tr>")]
    assert "Sandbox → WhatsApp Cloud API" in newest and "Concluída" in newest
    assert "Troca solicitada" in newest and "Verificando o novo provedor" in newest
    failed = history[history.index(f'id="migration-{rows[1]}"') :]
    failed = failed[: failed.index("</tr>")]
    assert '<span class="tag danger">Falhou</span>' in failed and "Desfazer" not in failed
    assert f'action="{PAGE}/migrations/{rows[0]}/rollback"' in newest

    # The active one cannot be removed.
    r = await client.post(f"{PAGE}/{cloud['id']}/delete", data={"csrf_token": csrf})
    assert r.status_code == 409 and "Este é o provedor ativo" in r.text
    # Already active.
    r = await client.post(f"{PAGE}/{cloud['id']}/activate", data={"csrf_token": csrf})
    assert r.status_code == 409 and "já é o ativo" in r.text

    # Undo: the sandbox is active again, and the undo is in the history.
    r = await client.post(f"{PAGE}/migrations/{rows[0]}/rollback", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert [c["id"] for c in await _configs(client) if c["is_active"]] == [sandbox["id"]]
    page = (await client.get(PAGE)).text
    history = page[page.index("wa-history-h") :]
    top = history[history.index("<tbody>") :]
    top = top[: top.index("</tr>")]
    assert "WhatsApp Cloud API → Sandbox" in top and '<span class="badge">desfazer</span>' in top

    # An inactive one can be removed.
    r = await client.post(f"{PAGE}/{bridge['id']}/delete", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert bridge["id"] not in {c["id"] for c in await _configs(client)}


@pytest.mark.parametrize("role", ["manager", "sales"])
async def test_only_admins(client: httpx.AsyncClient, role: str) -> None:
    admin = await signup(client)
    r = await client.post(
        "/api/v1/whatsapp/configs", headers=admin["headers"], json={"provider_type": "sandbox"}
    )
    config_id = r.json()["id"]
    await web_login(client, await join(client, admin["headers"], role))
    page = await client.get(PAGE)
    assert page.status_code == 403
    assert "settings:manage" in page.text and "Somente administradores" in page.text
    assert "Sandbox" not in page.text.split("</nav>", 2)[-1]
    branding = await client.get("/settings/branding")
    assert f'href="{PAGE}"' not in branding.text
    assert 'href="/settings/templates"' in branding.text
    csrf = CSRF_INPUT.search(branding.text)
    assert csrf
    token = csrf.group(1)
    for path, data in [
        (PAGE, {"provider_type": "sandbox"}),
        (f"{PAGE}/{config_id}", {"label": "x"}),
        (f"{PAGE}/{config_id}/activate", {}),
        (f"{PAGE}/{config_id}/check", {}),
        (f"{PAGE}/{config_id}/delete", {}),
    ]:
        r = await client.post(path, data={"csrf_token": token, **data})
        assert r.status_code == 403, path
    r = await client.get(f"{PAGE}/{config_id}/qr", headers={"HX-Request": "true"})
    assert r.status_code == 403
    configs = (await client.get("/api/v1/whatsapp/configs", headers=admin["headers"])).json()
    assert [c["id"] for c in configs] == [config_id] and not configs[0]["is_active"]
    assert configs[0]["label"] is None
