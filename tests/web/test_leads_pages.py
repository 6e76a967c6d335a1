"""The leads pages: list (sort, filters, bulk), create form (errors, duplicates), the lead page
(timeline, notes, edit in place, lost), the import wizard, escaping and English labels."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle
from lovedcrm.leads.importing import JOB_TYPE
from tests.factories import create_lead, csrf_token, session_headers, web_signup


async def _stages(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/pipeline/stages")
    assert r.status_code == 200, r.text
    body = r.json()
    items: list[dict[str, Any]] = body["items"] if isinstance(body, dict) else body
    return items


def _rows(html: str) -> list[str]:
    """The lead names of the list, in order."""
    return re.findall(r'<a href="/leads/[0-9a-f-]{36}"><strong>([^<]*)</strong>', html)


async def test_list_sorts_filters_and_paginates(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    empty = await client.get("/leads")
    assert empty.status_code == 200
    assert "Nenhum lead ainda" in empty.text and 'href="/leads/new"' in empty.text
    await create_lead(client, full_name="Bruna Alves", company="Zeta", estimated_value="300.00")
    await create_lead(
        client, full_name="Carlos Lima", company="Alfa", estimated_value="100.00", source="site"
    )
    await create_lead(client, full_name="Ana Costa", company="Meio", estimated_value="200.00")

    by_name = await client.get("/leads?sort=name")
    assert _rows(by_name.text) == ["Ana Costa", "Bruna Alves", "Carlos Lima"]
    assert 'aria-sort="ascending"' in by_name.text
    assert _rows((await client.get("/leads?sort=-name")).text)[0] == "Carlos Lima"
    assert _rows((await client.get("/leads?sort=company")).text)[0] == "Carlos Lima"
    assert _rows((await client.get("/leads?sort=-value")).text)[0] == "Bruna Alves"
    for key in ("stage", "assignee", "activity", "created", "score"):
        assert (await client.get(f"/leads?sort={key}")).status_code == 200

    filtered = await client.get("/leads?source=site")
    assert _rows(filtered.text) == ["Carlos Lima"]
    assert "export.csv?source=site" in filtered.text
    searched = await client.get("/leads?q=bruna")
    assert _rows(searched.text) == ["Bruna Alves"]
    none = await client.get("/leads?q=ninguem-aqui")
    assert "Nenhum lead corresponde" in none.text
    # The export link works with the cookie session.
    export = await client.get("/api/v1/leads/export.csv?source=site")
    assert export.status_code == 200 and "Carlos Lima" in export.text

    # Keyset pages of 50: the next page link carries the cursor.
    for i in range(50):
        await create_lead(client, full_name=f"Lote {i:02d}")
    first = await client.get("/leads?sort=name")
    assert len(_rows(first.text)) == 50
    link = re.search(r'href="(/leads\?[^"]*cursor=[^"]+)"', first.text)
    assert link and "Próxima página" in first.text
    second = await client.get(link.group(1).replace("&amp;", "&"))
    assert len(_rows(second.text)) == 3
    assert set(_rows(second.text)).isdisjoint(_rows(first.text))


async def test_create_form_shows_errors_and_duplicates(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, "/leads/new")
    bad = await client.post(
        "/leads", data={"csrf_token": csrf, "full_name": "Dora", "email": "nao-e-email"}
    )
    assert bad.status_code == 422
    assert 'id="e-email"' in bad.text and "e-mail válido" in bad.text
    assert (await client.get("/api/v1/leads")).json()["items"] == []

    ok = await client.post(
        "/leads",
        data={
            "csrf_token": csrf,
            "full_name": "Dora Mendes",
            "email": "dora@example.com",
            "estimated_value": "1.500,50",
        },
    )
    assert ok.status_code == 303
    lead_id = ok.headers["location"].rsplit("/", 1)[1]
    lead = (await client.get(f"/api/v1/leads/{lead_id}")).json()
    assert lead["estimated_value"] == "1500.50"

    dup = await client.post(
        "/leads", data={"csrf_token": csrf, "full_name": "D. Mendes", "email": "DORA@example.com"}
    )
    assert dup.status_code == 409
    assert f'href="/leads/{lead_id}"' in dup.text and 'name="allow_duplicate"' in dup.text
    assert len((await client.get("/api/v1/leads")).json()["items"]) == 1
    forced = await client.post(
        "/leads",
        data={
            "csrf_token": csrf,
            "full_name": "D. Mendes",
            "email": "dora@example.com",
            "allow_duplicate": "1",
        },
    )
    assert forced.status_code == 303
    assert len((await client.get("/api/v1/leads")).json()["items"]) == 2


async def test_lead_page_timeline_note_stage_edit_and_lost(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    lead = await create_lead(client, full_name="Elisa Prado", company="Padaria")
    stages = await _stages(client)
    url = f"/leads/{lead['id']}"
    csrf = await csrf_token(client, url)

    # Notes need the CSRF token.
    refused = await client.post(f"{url}/notes", data={"description": "sem token"})
    assert refused.status_code == 403
    r = await client.post(
        f"{url}/notes", data={"csrf_token": csrf, "description": "Pediu proposta"}
    )
    assert r.status_code == 303
    r = await client.post(f"{url}/stage", data={"csrf_token": csrf, "stage_id": stages[1]["id"]})
    assert r.status_code == 303
    r = await client.post(
        f"{url}/tasks",
        data={"csrf_token": csrf, "title": "Ligar de volta", "due_at": "2030-01-31T14:00"},
    )
    assert r.status_code == 303
    page = await client.get(url)
    assert page.status_code == 200
    text = page.text
    assert "Pediu proposta" in text and "Ligar de volta" in text
    assert f"{stages[0]['name']} → {stages[1]['name']}" in text
    # Newest first: the task, then the stage change, then the note.
    assert text.index("Ligar de volta") < text.index(stages[1]["name"] + "</strong>") or (
        text.index("Ligar de volta") < text.index("Pediu proposta")
    )
    assert text.index("Ligar de volta") < text.index("Pediu proposta")

    # Edit in place (HTMX): the form, then the saved fragment; a bad value shows an error.
    hx = {"HX-Request": "true", "X-CSRF-Token": csrf}
    form = await client.get(f"{url}/edit?field=company", headers=hx)
    assert form.status_code == 200 and 'name="value"' in form.text and "<html" not in form.text
    saved = await client.post(
        f"{url}/edit", data={"field": "company", "value": "Mercado"}, headers=hx
    )
    assert saved.status_code == 200 and "Mercado" in saved.text and 'name="value"' not in saved.text
    bad = await client.post(f"{url}/edit", data={"field": "email", "value": "x@"}, headers=hx)
    assert bad.status_code == 422 and "field-error" in bad.text
    assert (await client.get(f"/api/v1/leads/{lead['id']}")).json()["company"] == "Mercado"

    # Lost needs a reason.
    lost = await client.post(f"{url}/lost", data={"csrf_token": csrf, "lost_reason": " "})
    assert lost.status_code == 422 and 'id="lost-error"' in lost.text
    assert (await client.get(f"/api/v1/leads/{lead['id']}")).json()["status"] == "active"
    lost = await client.post(f"{url}/lost", data={"csrf_token": csrf, "lost_reason": "Preço"})
    assert lost.status_code == 303
    after = (await client.get(f"/api/v1/leads/{lead['id']}")).json()
    assert after["status"] == "lost" and after["lost_reason"] == "Preço"

    # Another organization's lead (and nonsense ids) are a 404 page.
    client.cookies.clear()
    await web_signup(client)
    other = await client.get(url)
    assert other.status_code == 404 and "Lead não encontrado" in other.text
    assert (await client.get("/leads/not-a-uuid")).status_code == 404


async def test_timeline_loads_more(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    lead = await create_lead(client, full_name="Fábio Reis")
    for i in range(25):
        r = await client.post(
            f"/api/v1/leads/{lead['id']}/activities",
            json={"type": "note", "description": f"n{i}"},
            headers=await session_headers(client),
        )
        assert r.status_code == 201, r.text
    page = await client.get(f"/leads/{lead['id']}")
    more = re.search(r'hx-get="(/leads/[^"]+/timeline\?cursor=[^"]+)"', page.text)
    assert more and "Carregar mais" in page.text
    fragment = await client.get(more.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert fragment.text.count('class="tl-item') == 5


async def test_bulk_move_assign_and_delete(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    a = await create_lead(client, full_name="Gil")
    b = await create_lead(client, full_name="Hugo")
    c = await create_lead(client, full_name="Iara")
    stages = await _stages(client)
    csrf = await csrf_token(client, "/leads")
    r = await client.post(
        "/leads/bulk",
        data={
            "csrf_token": csrf,
            "action": "stage",
            "stage_id": stages[2]["id"],
            "ids": [a["id"], b["id"], str(uuid.uuid4())],
            "back": "sort=name",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/leads?sort=name"
    listing = await client.get("/leads")
    assert "2 de 3 leads atualizados" in listing.text
    for lead, stage in ((a, stages[2]), (b, stages[2]), (c, stages[0])):
        got = (await client.get(f"/api/v1/leads/{lead['id']}")).json()
        assert got["stage_id"] == stage["id"]
    refused = await client.post("/leads/bulk", data={"action": "delete", "ids": [c["id"]]})
    assert refused.status_code == 403
    r = await client.post(
        "/leads/bulk", data={"csrf_token": csrf, "action": "delete", "ids": [c["id"]]}
    )
    assert r.status_code == 303
    assert (await client.get(f"/api/v1/leads/{c['id']}")).status_code == 404


async def test_import_flow_through_the_pages(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    await web_signup(client)
    await create_lead(client, full_name="Já Existe", email="ja@example.com")
    csrf = await csrf_token(client, "/leads/import")
    upload_page = await client.get("/leads/import")
    assert "20 MB" in upload_page.text
    wrong = await client.post(
        "/leads/import",
        data={"csrf_token": csrf},
        files={"file": ("leads.pdf", b"%PDF", "application/pdf")},
    )
    assert wrong.status_code == 422 and "import-error" in wrong.text
    body = (
        b"Nome;E-mail;Telefone;Cor favorita\n"
        b"Joana Dark;joana@example.com;(11) 98765-4321;azul\n"
        b"Sem Email;email-ruim;;verde\n"
        b"Outra;ja@example.com;;roxo\n"
    )
    mapping = await client.post(
        "/leads/import",
        data={"csrf_token": csrf},
        files={"file": ("leads.csv", body, "text/csv")},
    )
    assert mapping.status_code == 200, mapping.text
    assert "Joana Dark" in mapping.text  # the preview
    upload_id = re.search(r'name="upload_id" value="([0-9a-f]{32})"', mapping.text)
    assert upload_id
    columns = ["Nome", "E-mail", "Telefone", "Cor favorita"]
    # The suggested mapping is preselected; "Cor favorita" is ignored.
    assert re.search(r'value="full_name" selected', mapping.text)
    no_name = await client.post(
        "/leads/import/start",
        data={
            "csrf_token": csrf,
            "upload_id": upload_id.group(1),
            "columns": columns,
            "targets": ["ignore", "email", "phone", "ignore"],
            "duplicate_policy": "skip",
        },
    )
    assert no_name.status_code == 422 and "Nome" in no_name.text and "Joana Dark" in no_name.text
    started = await client.post(
        "/leads/import/start",
        data={
            "csrf_token": csrf,
            "upload_id": upload_id.group(1),
            "columns": columns,
            "targets": ["full_name", "email", "phone", "ignore"],
            "duplicate_policy": "skip",
        },
    )
    assert started.status_code == 303
    progress_url = started.headers["location"]
    pending = await client.get(progress_url)
    assert pending.status_code == 200 and 'hx-trigger="every 1s"' in pending.text
    assert JOB_TYPE == "leads.import"
    await run_until_idle(database, settings, types=[JOB_TYPE])
    done = await client.get(progress_url, headers={"HX-Request": "true"})
    assert done.status_code == 200 and "<html" not in done.text
    assert "every 1s" not in done.text
    assert 'data-stat="created">1<' in done.text
    assert 'data-stat="skipped">1<' in done.text
    assert 'data-stat="errors">1<' in done.text
    errors_link = re.search(r'href="(/api/v1/imports/[^"]+/errors\.csv)"', done.text)
    assert errors_link
    errors_csv = await client.get(errors_link.group(1))
    assert errors_csv.status_code == 200 and "email-ruim" in errors_csv.text
    assert "Joana Dark" in (await client.get("/leads")).text


async def test_script_in_a_name_is_shown_as_text(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    evil = "<script>alert(1)</script>"
    lead = await create_lead(client, full_name=evil, company='"><img src=x onerror=alert(2)>')
    csrf = await csrf_token(client, "/leads")
    await client.post(f"/leads/{lead['id']}/notes", data={"csrf_token": csrf, "description": evil})
    for path in ("/leads", f"/leads/{lead['id']}", f"/leads/{lead['id']}/delete"):
        page = await client.get(path)
        assert evil not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


async def test_english_labels(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    lead = await create_lead(client, full_name="Jonas")
    en = {"Accept-Language": "en"}
    # The organization's language (pt-BR) beats the browser's; the person's choice beats both.
    assert "Última atividade" in (await client.get("/leads", headers=en)).text
    csrf = await csrf_token(client, "/leads")
    r = await client.post("/preferences/language", data={"csrf_token": csrf, "language": "en"})
    assert r.status_code == 303
    listing = await client.get("/leads", headers=en)
    assert "Next page" not in listing.text  # one page only
    assert "Last activity" in listing.text and "Export CSV" in listing.text
    assert "Última atividade" not in listing.text
    page = await client.get(f"/leads/{lead['id']}", headers=en)
    assert "Add a note" in page.text and "Mark as lost" in page.text
    form = await client.get("/leads/new", headers=en)
    assert "Estimated value" in form.text
    client.cookies.delete("lovedcrm_lang")
    pt = await client.get("/leads")
    assert "Última atividade" in pt.text and "Exportar CSV" in pt.text
