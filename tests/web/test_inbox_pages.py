"""The inbox pages (HTML, cookie session, CSRF): the conversation list with unread counts and
filters, the chat's bubbles, ticks and attachments, the composer (text, templates, errors),
the Cloud API's 24-hour window, the sandbox's simulate form, permissions and escaping."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import sqlalchemy as sa

from lovedcrm.config import Settings
from lovedcrm.core.clock import ManualClock
from lovedcrm.db.engine import Database
from tests.factories import (
    CSRF_META,
    activate_sandbox,
    create_template,
    csrf_token,
    join,
    login,
    owner_sql,
    run_wa_jobs,
    session_headers,
    web_login,
    web_signup,
)

HX = {"HX-Request": "true"}
INJECT = "/api/v1/whatsapp/sandbox/inbound"


# --- helpers ---------------------------------------------------------------------------------


async def _inject(
    client: httpx.AsyncClient,
    h: dict[str, str],
    database: Database,
    settings: Settings,
    phone: str,
    content: str,
    name: str | None = None,
) -> None:
    body = {"from_number": phone, "content": content, "contact_name": name}
    r = await client.post(INJECT, headers=h, json=body)
    assert r.status_code == 202, r.text
    await run_wa_jobs(database, settings)


async def _conversations(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/conversations")
    assert r.status_code == 200, r.text
    return list(r.json())


async def _lead_id(client: httpx.AsyncClient, name: str) -> str:
    found = [c for c in await _conversations(client) if c["lead_name"] == name]
    assert found, name
    return str(found[0]["lead_id"])


async def _org_with_sandbox(client: httpx.AsyncClient) -> dict[str, str]:
    await web_signup(client)
    h = await session_headers(client)
    await activate_sandbox(client, h)
    return h


def _conv(page: str, lead_id: str) -> str:
    start = page.index(f'data-key="{lead_id}"')
    return page[start : page.find("</li>", start)]


def _bubble(page: str, message_id: str) -> str:
    start = page.rindex("<li", 0, page.index(f'id="msg-{message_id}"'))
    end = page.find("</li>", start)
    return page[start:end]


# --- the list -------------------------------------------------------------------------------


async def test_list_newest_first_with_unread_counts_and_filters(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    h = await _org_with_sandbox(client)
    await _inject(client, h, database, settings, "11 98765-4321", "Oi, tudo bem?", "Ana Cliente")
    await _inject(client, h, database, settings, "11 98765-4321", "Tem desconto?")
    await _inject(client, h, database, settings, "21 99876-5432", "Quero um orçamento", "Bruno")
    ana, bruno = await _lead_id(client, "Ana Cliente"), await _lead_id(client, "Bruno")

    page = await client.get("/inbox")
    assert page.status_code == 200, page.text
    html = page.text
    assert 'href="/inbox" class="nav-item active"' in html  # the menu's item is real now
    assert "/static/inbox.js" in html and "/static/inbox.css" in html
    assert html.index("Bruno") < html.index("Ana Cliente")  # newest first
    assert re.search(rf'data-key="{ana}".*?<span aria-hidden="true">2</span>', html, re.S)
    assert re.search(rf'data-key="{bruno}".*?<span aria-hidden="true">1</span>', html, re.S)
    assert "2 mensagens não lidas" in html
    assert "Tem desconto?" in html and "Quero um orçamento" in html
    assert "Escolha uma conversa" in html
    assert "Simular mensagem recebida" in html  # the sandbox is active

    # The menu's badge and the list fragment the live script re-reads.
    badge = await client.get("/inbox/unread")
    assert badge.status_code == 200 and 'data-count="3"' in badge.text and ">3<" in badge.text
    fragment = await client.get("/inbox/list", headers=HX)
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert fragment.headers["X-Unread-Total"] == "3"
    assert fragment.text.count('<li class="conv') == 2

    # Filters: mine / unassigned / all.
    me_id = (await client.get("/api/v1/auth/me")).json()["user"]["id"]
    r = await client.patch(f"/api/v1/leads/{ana}", headers=h, json={"assigned_to": me_id})
    assert r.status_code == 200, r.text
    mine = (await client.get("/inbox", params={"filter": "mine"})).text
    assert "Ana Cliente" in mine and "Bruno" not in mine
    assert 'class="inbox-filter active" href="/inbox?filter=mine"' in mine
    unassigned = (await client.get("/inbox/list", params={"filter": "unassigned"})).text
    assert "Bruno" in unassigned and "Ana Cliente" not in unassigned
    everything = (await client.get("/inbox", params={"filter": "nonsense"})).text
    assert "Bruno" in everything and "Ana Cliente" in everything

    # Opening a conversation reads it.
    chat = await client.get(f"/inbox/{ana}")
    assert chat.status_code == 200
    assert 'class="conv active"' in chat.text
    fragment = await client.get("/inbox/list", params={"active": ana})
    assert fragment.headers["X-Unread-Total"] == "1"
    assert "unread-count" not in _conv(fragment.text, ana)
    assert "unread-count" in _conv(fragment.text, bruno)
    assert [c["unread"] for c in await _conversations(client) if c["lead_id"] == ana] == [0]


async def test_empty_inbox_without_a_provider_points_to_settings(
    client: httpx.AsyncClient,
) -> None:
    await web_signup(client)
    page = await client.get("/inbox")
    assert page.status_code == 200
    assert "Nenhuma conversa ainda" in page.text
    assert 'href="/settings/whatsapp"' in page.text
    assert "O WhatsApp ainda não está configurado" in page.text
    assert "Simular mensagem recebida" not in page.text
    client.cookies.clear()
    r = await client.get("/inbox")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert (await client.get("/inbox/list")).status_code == 401


# --- the chat -------------------------------------------------------------------------------


async def test_chat_bubbles_ticks_errors_and_attachments(
    client: httpx.AsyncClient, database: Database, settings: Settings, owner: sa.Engine
) -> None:
    h = await _org_with_sandbox(client)
    await _inject(client, h, database, settings, "11 91234-5678", "Bom dia!", "Carla Reis")
    lead = await _lead_id(client, "Carla Reis")
    sent = []
    for body in ("primeira", "segunda", "terceira", "quarta", "quinta"):
        r = await client.post(f"/api/v1/leads/{lead}/messages", headers=h, json={"content": body})
        assert r.status_code == 202, r.text
        sent.append(r.json()["id"])
    pending, sent_, delivered, read, failed = sent
    for mid, status in ((sent_, "sent"), (delivered, "delivered"), (read, "read")):
        owner_sql(owner, "UPDATE messages SET status = :s WHERE id = :i", s=status, i=mid)
    owner_sql(
        owner,
        "UPDATE messages SET status = 'failed', failed_reason = :r WHERE id = :i",
        r="[131026] Número sem WhatsApp",
        i=failed,
    )
    owner_sql(
        owner,
        "UPDATE messages SET metadata = metadata || CAST(:m AS jsonb) WHERE id = :i",
        m='{"last_error": "[timeout] o provedor não respondeu"}',
        i=pending,
    )

    page = await client.get(f"/inbox/{lead}")
    assert page.status_code == 200
    html = page.text
    assert 'class="msg msg-inbound"' in html and "Bom dia!" in html
    thread = html[html.index('id="thread"') :]
    assert thread.index("Bom dia!") < thread.index("primeira") < thread.index("quinta")
    assert 'data-status="pending"' in _bubble(html, pending)
    assert "ticks-pending" in _bubble(html, pending)
    assert "tentando de novo: [timeout] o provedor não respondeu" in _bubble(html, pending)
    assert "ticks-sent" in _bubble(html, sent_) and 'title="Enviada"' in _bubble(html, sent_)
    assert "ticks-delivered" in _bubble(html, delivered)
    assert "ticks-read" in _bubble(html, read) and 'title="Lida"' in _bubble(html, read)
    failed_html = _bubble(html, failed)
    assert "msg-failed" in failed_html and "tick-failed" in failed_html
    assert "Não enviada: [131026] Número sem WhatsApp" in failed_html
    assert 'href="/leads/' + lead + '"' in html  # the link to the lead page
    # The day separator ("Ontem" if the page rendered after midnight, the messages before).
    assert re.search(r'class="day-sep"[^>]*><span>(Hoje|Ontem)</span>', html)

    # Attachments: an image previewed, a document as a link, a refused one with its reason.
    inbound = (await client.get(f"/api/v1/leads/{lead}/messages")).json()[0]["id"]
    image, pdf = uuid.uuid4(), uuid.uuid4()
    org = (await client.get("/api/v1/organizations/current")).json()["id"]
    for att, name, mime, size in (
        (image, "foto.png", "image/png", 2048),
        (pdf, "proposta.pdf", "application/pdf", 12_800),
    ):
        owner_sql(
            owner,
            "INSERT INTO message_attachments (id, organization_id, message_id, file_name,"
            " file_type, file_size, file_url) VALUES (:id, :org, :m, :n, :t, :s, :u)",
            id=att,
            org=org,
            m=inbound,
            n=name,
            t=mime,
            s=size,
            u=f"{org}/attachments/{att}",
        )
    owner_sql(
        owner,
        "UPDATE messages SET metadata = metadata || CAST(:m AS jsonb) WHERE id = :i",
        m='{"attachment_status": "stored"}',
        i=inbound,
    )
    owner_sql(
        owner,
        "UPDATE messages SET message_type = 'document', metadata = metadata || CAST(:m AS jsonb)"
        " WHERE id = :i",
        m='{"attachment_status": "refused", "attachment_error": "File type x/exe is not allowed."}',
        i=sent_,
    )
    html = (await client.get(f"/inbox/{lead}")).text
    first = _bubble(html, inbound)
    assert f'<img src="/api/v1/attachments/{image}" alt="foto.png"' in first
    assert f'href="/api/v1/attachments/{pdf}"' in first and "proposta.pdf" in first
    assert "13 KB" in first
    assert "Anexo recusado: File type x/exe is not allowed." in _bubble(html, sent_)


async def test_load_older_messages(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    h = await _org_with_sandbox(client)
    await _inject(client, h, database, settings, "11 93333-0000", "msg 00", "Dora")
    lead = await _lead_id(client, "Dora")
    for i in range(1, 45):
        r = await client.post(
            f"/api/v1/leads/{lead}/messages", headers=h, json={"content": f"msg {i:02d}"}
        )
        assert r.status_code == 202
    html = (await client.get(f"/inbox/{lead}")).text
    assert html.count('class="msg msg-') == 40
    assert "msg 44" in html and "msg 04" not in html and ">msg 05<" in html
    more = re.search(r'hx-get="(/inbox/[^"]+/older\?before=[^"]+)"', html)
    assert more and "Carregar mensagens anteriores" in html
    older = await client.get(more.group(1).replace("&amp;", "&"), headers=HX)
    assert older.status_code == 200 and "<html" not in older.text
    assert older.text.count('class="msg msg-') == 5 and ">msg 00<" in older.text
    assert "/older?" not in older.text  # nothing older
    # Without JavaScript the link asks the page for more.
    r = await client.get(f"/inbox/{lead}", params={"limit": "80"})
    assert r.text.count('class="msg msg-') == 45
    assert (await client.get(f"/inbox/{lead}/older", params={"before": "x"})).status_code == 400


# --- the composer ---------------------------------------------------------------------------


async def test_send_text_and_template_from_the_composer(
    client: httpx.AsyncClient, database: Database, settings: Settings, manual_clock: ManualClock
) -> None:
    h = await _org_with_sandbox(client)
    await _inject(client, h, database, settings, "11 94444-1111", "Oi!", "Elisa Prado")
    lead = await _lead_id(client, "Elisa Prado")
    tpl = await create_template(client, h, "Boas-vindas", "Olá {{first_name}}, tudo bem?")
    page = await client.get(f"/inbox/{lead}")
    html = page.text
    assert 'name="content"' in html and "data-composer-text" in html
    assert f'<option value="{tpl["id"]}" data-preview="Olá Elisa, tudo bem?">Boas-vindas' in html
    assert 'action="/inbox/' + lead + '/send"' in html
    csrf = CSRF_META.search(html)
    assert csrf
    token = csrf.group(1)
    url = f"/inbox/{lead}/send"

    refused = await client.post(url, data={"content": "sem token"}, headers=HX)
    assert refused.status_code == 403
    empty = await client.post(url, data={"csrf_token": token, "content": "  "}, headers=HX)
    assert empty.status_code == 422 and "Escreva uma mensagem ou escolha um modelo." in empty.text

    r = await client.post(url, data={"csrf_token": token, "content": "Temos sim!"}, headers=HX)
    assert r.status_code == 200, r.text
    assert "<html" not in r.text and 'id="chat-body"' in r.text
    msgs = (await client.get(f"/api/v1/leads/{lead}/messages")).json()
    assert msgs[-1]["content"] == "Temos sim!" and msgs[-1]["status"] == "pending"
    bubble = _bubble(r.text, msgs[-1]["id"])
    assert "msg-outbound" in bubble and "ticks-pending" in bubble
    assert re.search(r"<textarea[^>]*>\s*</textarea>", r.text)  # the box is empty again

    r = await client.post(url, data={"csrf_token": token, "template_id": tpl["id"]}, headers=HX)
    assert r.status_code == 200, r.text
    last = (await client.get(f"/api/v1/leads/{lead}/messages")).json()[-1]
    assert last["content"] == "Olá Elisa, tudo bem?" and last["message_type"] == "template"
    assert "Modelo: Boas-vindas" in _bubble(r.text, last["id"])

    # The jobs run: the ticks move on. The sandbox's receipts wait for the clock.
    await run_wa_jobs(database, settings)
    thread = await client.get(f"/inbox/{lead}/thread", headers=HX)
    assert thread.status_code == 200 and "<html" not in thread.text
    assert "ticks-sent" in _bubble(thread.text, last["id"])
    await run_wa_jobs(database, settings, due_now=True)
    thread = await client.get(f"/inbox/{lead}/thread", headers=HX)
    assert "ticks-read" in _bubble(thread.text, last["id"])

    # Without JavaScript: back to the page; an error renders the page with the text kept.
    r = await client.post(url, data={"csrf_token": token, "content": "Sem JS"})
    assert r.status_code == 303 and r.headers["location"] == f"/inbox/{lead}#composer"
    r = await client.post(url, data={"csrf_token": token, "template_id": str(uuid.uuid4())})
    assert r.status_code == 404 and "Esse modelo não existe mais" in r.text
    r = await client.post(url, data={"csrf_token": token, "template_id": "nope"}, headers=HX)
    assert r.status_code == 422


async def test_composer_explains_a_missing_provider_and_a_missing_phone(
    client: httpx.AsyncClient,
) -> None:
    await web_signup(client)
    h = await session_headers(client)
    r = await client.post(
        "/api/v1/leads", headers=h, json={"full_name": "Fabio Nunes", "phone": "11 95555-2222"}
    )
    assert r.status_code == 201, r.text
    lead = r.json()["id"]
    page = await client.get(f"/inbox/{lead}")
    assert page.status_code == 200
    assert "O WhatsApp ainda não está configurado" in page.text
    assert 'href="/settings/whatsapp"' in page.text
    assert 'data-state="provider"' in page.text and "data-composer-text" not in page.text
    token = CSRF_META.search(page.text)
    assert token
    r = await client.post(
        f"/inbox/{lead}/send", data={"csrf_token": token.group(1), "content": "oi"}, headers=HX
    )
    assert r.status_code == 409
    assert "O WhatsApp ainda não está configurado: ative um provedor" in r.text

    await activate_sandbox(client, h)
    r = await client.post("/api/v1/leads", headers=h, json={"full_name": "Gil Sem Fone"})
    no_phone = r.json()["id"]
    page = await client.get(f"/inbox/{no_phone}")
    assert "Este lead não tem telefone" in page.text and 'data-state="phone"' in page.text
    assert "Sem telefone" in page.text


async def test_outside_the_24_hour_window_only_approved_templates(
    client: httpx.AsyncClient, owner: sa.Engine
) -> None:
    await web_signup(client)
    h = await session_headers(client)
    r = await client.post(
        "/api/v1/whatsapp/configs",
        headers=h,
        json={
            "provider_type": "business_api",
            "business_phone_id": "1234567890",
            "access_token": "fake-token",
            "app_secret": "fake-secret",
        },
    )
    assert r.status_code == 201, r.text
    # Activation asks Meta; here the flag is set directly.
    owner_sql(owner, "UPDATE whatsapp_configs SET is_active = true WHERE id = :i", i=r.json()["id"])
    r = await client.post(
        "/api/v1/leads", headers=h, json={"full_name": "Helena Costa", "phone": "11 96666-3333"}
    )
    lead = r.json()["id"]
    approved = await create_template(client, h, "Retomar contato", "Oi {{first_name}}!")
    plain = await create_template(client, h, "Texto livre", "Oi, tudo bem?")
    owner_sql(
        owner,
        "UPDATE message_templates SET whatsapp_template_name = 'retomar_contato',"
        " whatsapp_language = 'pt_BR' WHERE id = :i",
        i=approved["id"],
    )

    page = await client.get(f"/inbox/{lead}")
    html = page.text
    assert "Fora da janela de 24 horas: só modelos aprovados podem ser enviados" in html
    assert "O cliente ainda não escreveu para você." in html
    assert re.search(r'<textarea id="composer-text"[^>]* disabled', html)
    assert 'data-state="templates"' in html
    assert approved["id"] in html and plain["id"] not in html
    assert "WhatsApp Cloud API" in html

    token = CSRF_META.search(html)
    assert token
    url = f"/inbox/{lead}/send"
    r = await client.post(url, data={"csrf_token": token.group(1), "content": "oi"}, headers=HX)
    assert r.status_code == 422
    assert "Fora da janela de 24 horas" in r.text and 'role="alert"' in r.text
    r = await client.post(
        url, data={"csrf_token": token.group(1), "template_id": plain["id"]}, headers=HX
    )
    assert r.status_code == 422  # not mapped to a Meta template
    r = await client.post(
        url, data={"csrf_token": token.group(1), "template_id": approved["id"]}, headers=HX
    )
    assert r.status_code == 200, r.text
    msgs = (await client.get(f"/api/v1/leads/{lead}/messages")).json()
    assert [m["content"] for m in msgs] == ["Oi Helena!"]

    # The English page says the same.
    client.cookies.set("lovedcrm_lang", "en")
    html = (await client.get(f"/inbox/{lead}")).text
    assert "Outside the 24-hour window: only approved templates can be sent." in html


# --- the sandbox's simulate form -------------------------------------------------------------


async def test_simulate_a_received_message(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    await _org_with_sandbox(client)
    token = await csrf_token(client, "/inbox")
    form = {
        "csrf_token": token,
        "from_number": "(11) 97777-4444",
        "contact_name": "Igor Lima",
        "content": "Vocês entregam?",
    }
    r = await client.post("/inbox/simulate", data=form, headers=HX)
    assert r.status_code == 202, r.text
    assert "Mensagem simulada" in r.text and "<html" not in r.text
    assert 'value="(11) 97777-4444"' in r.text  # the phone stays for the next one
    await run_wa_jobs(database, settings)
    page = (await client.get("/inbox")).text
    assert "Igor Lima" in page and "Vocês entregam?" in page

    bad = await client.post("/inbox/simulate", data={**form, "from_number": "abc"}, headers=HX)
    assert bad.status_code == 422 and 'role="alert"' in bad.text
    r = await client.post("/inbox/simulate", data={**form, "next": "https://evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == "/inbox"
    assert (
        await client.post("/inbox/simulate", data=form | {"csrf_token": "x"})
    ).status_code == 403


# --- permissions and escaping ----------------------------------------------------------------


async def test_a_viewer_reads_but_cannot_send(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    email, _, _ = await web_signup(client)
    h = await session_headers(client)
    await activate_sandbox(client, h)
    await _inject(client, h, database, settings, "11 98888-5555", "Olá", "Julia")
    lead = await _lead_id(client, "Julia")
    admin = await login(client, email)
    await web_login(client, await join(client, admin, "viewer"))

    page = await client.get(f"/inbox/{lead}")
    assert page.status_code == 200
    assert "Você pode ler esta conversa, mas não pode enviar mensagens" in page.text
    assert "data-composer-text" not in page.text
    assert "Simular mensagem recebida" not in page.text
    token = CSRF_META.search(page.text)
    assert token
    r = await client.post(
        f"/inbox/{lead}/send", data={"csrf_token": token.group(1), "content": "oi"}, headers=HX
    )
    assert r.status_code == 403 and "Você não pode enviar mensagens para este lead." in r.text
    r = await client.post(
        "/inbox/simulate",
        data={"csrf_token": token.group(1), "from_number": "11 98888-5555", "content": "x"},
        headers=HX,
    )
    assert r.status_code == 403
    msgs = (await client.get(f"/api/v1/leads/{lead}/messages")).json()
    assert [m["content"] for m in msgs] == ["Olá"]


async def test_another_organizations_lead_is_not_found(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    h = await _org_with_sandbox(client)
    await _inject(client, h, database, settings, "11 92222-6666", "segredo", "Kátia")
    theirs = await _lead_id(client, "Kátia")
    client.cookies.clear()
    await _org_with_sandbox(client)
    token = await csrf_token(client, "/inbox")
    page = await client.get(f"/inbox/{theirs}")
    assert page.status_code == 404 and "segredo" not in page.text
    assert "Conversa não encontrada" in page.text
    assert (await client.get(f"/inbox/{theirs}/thread")).status_code == 404
    older = await client.get(f"/inbox/{theirs}/older", params={"before": "2030-01-01T00:00:00"})
    assert older.status_code == 404
    r = await client.post(
        f"/inbox/{theirs}/send", data={"csrf_token": token, "content": "oi"}, headers=HX
    )
    assert r.status_code == 404
    assert (await client.get("/inbox/not-a-uuid")).status_code == 404
    assert "Kátia" not in (await client.get("/inbox")).text


async def test_user_text_is_escaped(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    h = await _org_with_sandbox(client)
    evil_name = "<img src=x onerror=alert(1)>"
    evil_text = "<script>alert('oi')</script>"
    await _inject(client, h, database, settings, "11 91111-7777", evil_text, evil_name)
    lead = await _lead_id(client, evil_name)
    for path in ("/inbox", f"/inbox/{lead}", f"/inbox/{lead}/thread", "/inbox/list"):
        html = (await client.get(path)).text
        assert evil_text not in html and evil_name not in html, path
    html = (await client.get(f"/inbox/{lead}")).text
    assert "&lt;script&gt;alert(&#39;oi&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
