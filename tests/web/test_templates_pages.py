"""Settings → Message templates (HTML, cookie session, CSRF): the list by category with A/B
variants, create, variant B, edit with errors inline, the Meta mapping, who may change it,
and content shown escaped."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.factories import CSRF_INPUT, csrf_token, join, signup, web_login, web_signup

PAGE = "/settings/templates"


async def _templates(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/templates")
    assert r.status_code == 200, r.text
    return list(r.json())


def _form(**fields: str) -> dict[str, str]:
    return {
        "name": "Retomada",
        "category": "follow_up",
        "content": "Oi {{first_name}}, tudo bem na {{company|sua empresa}}?",
        "is_active": "on",
        **fields,
    }


async def _create(client: httpx.AsyncClient, csrf: str, **fields: str) -> dict[str, Any]:
    before = {t["id"] for t in await _templates(client)}
    r = await client.post(PAGE, data={"csrf_token": csrf, **_form(**fields)})
    assert r.status_code == 303, r.text
    new = [t for t in await _templates(client) if t["id"] not in before]
    assert len(new) == 1
    return new[0]


def _row(page: str, template_id: str) -> str:
    start = page.index(f'<tr id="template-{template_id}"')
    return page[start : page.index("</tr>", start)]


async def test_list_create_and_variant_b(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    page = (await client.get(PAGE)).text
    assert 'href="/settings/templates" class="tab active"' in page
    # The seeded templates, by category in the order of a sale.
    assert page.index("<h3") < page.index(">Saudação</h3>") < page.index(">Follow-up</h3>")
    assert page.index(">Follow-up</h3>") < page.index(">Fechamento</h3>")
    assert "Saudação Inicial" in page
    # The help line lists the lead's variables.
    assert "<code>{{first_name}}</code>" in page and "<code>{{assignee_name}}</code>" in page

    csrf = await csrf_token(client, PAGE)
    original = await _create(client, csrf, is_shared="on")
    assert original["category"] == "follow_up" and original["is_shared"] is True
    assert [v["name"] for v in original["variables"]] == ["first_name", "company"]
    page = (await client.get(PAGE)).text
    assert "Modelo Retomada criado." in page
    row = _row(page, original["id"])
    assert '<code class="var-name">first_name</code>, <code class="var-name">company</code>' in row
    assert "Ativo" in row and "Compartilhado" in row and "Não mapeado" in row
    assert ">0</td>" in row  # no uses yet
    assert f"?variant_of={original['id']}" in row and "Criar variante B" in row

    # "Create variant B" opens the form for a variant, pre-filled from the original.
    form = (await client.get(PAGE, params={"variant_of": original["id"]})).text
    assert "Nova variante de Retomada" in form
    assert f'name="parent_template_id" value="{original["id"]}"' in form
    assert "Oi {{first_name}}, tudo bem na {{company|sua empresa}}?</textarea>" in form
    variant = await _create(
        client,
        csrf,
        name="Retomada B",
        content="E aí {{first_name}}? Posso ajudar?",
        parent_template_id=original["id"],
    )
    assert variant["parent_template_id"] == original["id"] and variant["version"] == 2
    page = (await client.get(PAGE)).text
    assert "Variante B do modelo criada." in page
    # The variant right after its original, marked as such.
    assert page.index(f'id="template-{original["id"]}"') < page.index(
        f'id="template-{variant["id"]}"'
    )
    assert "Variante B" in _row(page, variant["id"])
    assert "Variante A" in _row(page, original["id"])
    assert "Criar variante C" in _row(page, original["id"])
    assert "Criar variante" not in _row(page, variant["id"])

    # A free-text category makes a group of its own.
    other = await _create(
        client, csrf, name="Pós-venda", category="_other", category_other="pos_venda"
    )
    assert other["category"] == "pos_venda"
    page = (await client.get(PAGE)).text
    assert ">pos_venda</h3>" in page and '<option value="pos_venda"' in page

    # The original cannot go while it has a variant.
    r = await client.post(f"{PAGE}/{original['id']}/delete", data={"csrf_token": csrf})
    assert r.status_code == 409 and "Este modelo tem 1 variante: exclua-a primeiro." in r.text
    r = await client.post(f"{PAGE}/{variant['id']}/delete", data={"csrf_token": csrf})
    assert r.status_code == 303
    r = await client.post(f"{PAGE}/{original['id']}/delete", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert original["id"] not in {t["id"] for t in await _templates(client)}


async def test_edit_with_errors_shown_inline(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, PAGE)
    tpl = await _create(client, csrf)
    form = (await client.get(PAGE, params={"edit": tpl["id"]})).text
    assert "Editar o modelo Retomada" in form
    assert f'action="{PAGE}/{tpl["id"]}"' in form and 'value="Retomada"' in form

    r = await client.post(
        f"{PAGE}/{tpl['id']}",
        data={
            "csrf_token": csrf,
            **_form(content="Oi {{nome}}, sobre o {{cupom|desconto}} e {{first_name}}"),
        },
    )
    assert r.status_code == 422
    error = re.search(r'<p class="field-error" id="tpl-content-error">([^<]*)</p>', r.text)
    assert error, r.text
    assert "{{nome}}" in error.group(1) and "{{cupom}}" in error.group(1)
    assert "{{first_name}}" not in error.group(1)
    # The form keeps what was typed, and nothing changed.
    assert "Oi {{nome}}, sobre o {{cupom|desconto}} e {{first_name}}</textarea>" in r.text
    assert "Editar o modelo Retomada" in r.text
    saved = next(t for t in await _templates(client) if t["id"] == tpl["id"])
    assert saved["content"] == tpl["content"]

    # Empty name and category.
    r = await client.post(
        f"{PAGE}/{tpl['id']}",
        data={"csrf_token": csrf, **_form(name="", category="_other", category_other="")},
    )
    assert r.status_code == 422
    assert 'id="tpl-name-error"' in r.text and 'id="tpl-category-error"' in r.text

    # A custom field is a known variable.
    admin_settings = {"custom_fields": [{"key": "plano", "label": "Plano", "type": "text"}]}
    r = await client.patch(
        "/api/v1/organizations/current",
        json={"settings": admin_settings},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 200, r.text
    page = (await client.get(PAGE)).text
    assert "<code>{{plano}}</code>" in page
    r = await client.post(
        f"{PAGE}/{tpl['id']}",
        data={"csrf_token": csrf, **_form(name="Retomada 2", content="Plano {{plano}}")},
    )
    assert r.status_code == 303, r.text
    saved = next(t for t in await _templates(client) if t["id"] == tpl["id"])
    assert saved["name"] == "Retomada 2" and saved["content"] == "Plano {{plano}}"
    # Unchecked boxes mean off.
    r = await client.post(
        f"{PAGE}/{tpl['id']}",
        data={"csrf_token": csrf, **{k: v for k, v in _form().items() if k != "is_active"}},
    )
    assert r.status_code == 303
    saved = next(t for t in await _templates(client) if t["id"] == tpl["id"])
    assert saved["is_active"] is False
    assert "Inativo" in _row((await client.get(PAGE)).text, tpl["id"])


async def test_meta_mapping(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, PAGE)
    r = await client.post(
        PAGE,
        data={"csrf_token": csrf, **_form(whatsapp_template_name="Retomada Contato")},
    )
    assert r.status_code == 422
    assert 'id="tpl-meta-name-error"' in r.text and 'id="tpl-meta-language-error"' in r.text
    assert "letras minúsculas" in r.text
    assert 'value="Retomada Contato"' in r.text

    tpl = await _create(
        client, csrf, whatsapp_template_name="retomada_contato", whatsapp_language="pt_BR"
    )
    assert tpl["whatsapp_template_name"] == "retomada_contato"
    assert tpl["whatsapp_language"] == "pt_BR"
    page = (await client.get(PAGE)).text
    assert "<code>retomada_contato</code> · pt_BR" in _row(page, tpl["id"])
    form = (await client.get(PAGE, params={"edit": tpl["id"]})).text
    assert 'value="retomada_contato"' in form and 'value="pt_BR"' in form

    r = await client.post(
        f"{PAGE}/{tpl['id']}",
        data={
            "csrf_token": csrf,
            **_form(whatsapp_template_name="retomada_contato", whatsapp_language="portugues"),
        },
    )
    assert r.status_code == 422 and 'id="tpl-meta-language-error"' in r.text
    assert "pt_BR, en_US, es" in r.text
    # Emptied: no mapping any more.
    r = await client.post(f"{PAGE}/{tpl['id']}", data={"csrf_token": csrf, **_form()})
    assert r.status_code == 303
    saved = next(t for t in await _templates(client) if t["id"] == tpl["id"])
    assert saved["whatsapp_template_name"] is None and saved["whatsapp_language"] is None


async def test_sales_can_view_but_not_edit(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    r = await client.post(
        "/api/v1/templates",
        headers=admin["headers"],
        json={"name": "Do time", "category": "greeting", "content": "Olá {{lead_name}}"},
    )
    tpl = r.json()
    await web_login(client, await join(client, admin["headers"], "sales"))
    page = await client.get(PAGE)
    assert page.status_code == 200
    assert "Do time" in page.text and "Somente gestores e administradores" in page.text
    assert 'id="template-form"' not in page.text and "?edit=" not in page.text
    assert f"{PAGE}/{tpl['id']}/delete" not in page.text
    # Asking for the form shows the list without it.
    page = await client.get(PAGE, params={"edit": tpl["id"]})
    assert page.status_code == 200 and 'id="template-form"' not in page.text
    csrf = CSRF_INPUT.search(page.text)
    assert csrf
    token = csrf.group(1)
    for path, data in [
        (PAGE, _form()),
        (f"{PAGE}/{tpl['id']}", _form(name="Hack")),
        (f"{PAGE}/{tpl['id']}/delete", {}),
    ]:
        r = await client.post(path, data={"csrf_token": token, **data})
        assert r.status_code == 403, path
        assert "Você não tem permissão para mudar os modelos de mensagem." in r.text
    names = [t["name"] for t in (await client.get("/api/v1/templates")).json()]
    assert "Do time" in names and "Hack" not in names and "Retomada" not in names


async def test_manager_can_edit(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    await web_login(client, await join(client, admin["headers"], "manager"))
    csrf = await csrf_token(client, PAGE)
    tpl = await _create(client, csrf)
    assert tpl["name"] == "Retomada"
    # ...but not the WhatsApp settings.
    assert 'href="/settings/whatsapp"' not in (await client.get(PAGE)).text


async def test_content_is_escaped(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, PAGE)
    evil = "<script>alert('x')</script> Oi {{first_name}}"
    tpl = await _create(client, csrf, name="<b>Nome</b>", content=evil)
    page = (await client.get(PAGE)).text
    assert "<script>alert(" not in page and "<b>Nome</b>" not in page
    assert "&lt;script&gt;alert(" in _row(page, tpl["id"])
    assert "&lt;b&gt;Nome&lt;/b&gt;" in page
    form = (await client.get(PAGE, params={"edit": tpl["id"]})).text
    assert "<script>alert(" not in form and "&lt;script&gt;alert(" in form
