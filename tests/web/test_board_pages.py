"""The pipeline board page and the stages settings page (HTML, cookie session, CSRF)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import sqlalchemy as sa

from tests.factories import (
    CSRF_INPUT,
    create_lead,
    csrf_token,
    signup,
    web_accept_invitation,
    web_signup,
)

DEFAULT_STAGES = ["Lead", "Contato", "Proposta", "Negociação", "Fechado"]  # pt-BR sign-up


async def _stages(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/pipeline/stages")
    assert r.status_code == 200, r.text
    return list(r.json())


async def _lead(client: httpx.AsyncClient, csrf: str, **body: Any) -> dict[str, Any]:
    """A new lead (through the JSON API, with the cookie session) as its board card."""
    lead = await create_lead(client, {"X-CSRF-Token": csrf}, **body)
    card = await client.get(f"/api/v1/board/cards/{lead['id']}")
    assert card.status_code == 200, card.text
    return dict(card.json())


def _column_html(page: str, stage_id: str) -> str:
    start = page.index(f'data-column="{stage_id}"')
    end = page.find("data-column=", start + 20)
    return page[start : end if end > 0 else len(page)]


def _count(page: str, stage_id: str) -> int:
    found = re.search(
        rf'data-stats-for="{stage_id}">\s*<span class="count-badge num" data-count="(\d+)"', page
    )
    assert found, f"no count for {stage_id}"
    return int(found.group(1))


async def test_board_shows_the_default_stages_in_order_with_counts_and_sums(
    client: httpx.AsyncClient,
) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, "/pipeline")
    stages = await _stages(client)
    await _lead(client, csrf, full_name="Bia Lima", company="Padaria Sol", estimated_value="48500")
    await _lead(client, csrf, full_name="Caio Reis", estimated_value="1500")
    await _lead(client, csrf, full_name="Duda Melo", stage_id=stages[2]["id"])
    r = await client.get("/pipeline")
    assert r.status_code == 200
    page = r.text
    positions = [page.index(f'<h2 id="col-{s["id"]}">{s["name"]}</h2>') for s in stages]
    assert [s["name"] for s in stages] == DEFAULT_STAGES
    assert positions == sorted(positions)
    assert _count(page, stages[0]["id"]) == 2
    assert _count(page, stages[2]["id"]) == 1
    assert _count(page, stages[1]["id"]) == 0
    assert "R$\xa050.000" in _column_html(page, stages[0]["id"])  # 48.500 + 1.500
    first = _column_html(page, stages[0]["id"])
    assert "Padaria Sol" in first and "Bia Lima" in first and "Duda Melo" not in first
    assert "Arraste leads para cá" in _column_html(page, stages[1]["id"])
    assert "Mover para…" in page
    assert '<meta name="csrf-token"' in page
    assert "/static/board.js" in page and "/static/live.js" in page


async def test_board_without_a_session_goes_to_login(client: httpx.AsyncClient) -> None:
    r = await client.get("/pipeline")
    assert r.status_code == 303 and r.headers["location"] == "/login"


async def test_lead_names_are_escaped(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, "/pipeline")
    evil = "<img src=x onerror=alert(1)>"
    lead = await _lead(client, csrf, full_name=evil, company="<b>ACME</b>")
    page = (await client.get("/pipeline")).text
    assert evil not in page and "<b>ACME</b>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    card = await client.get(f"/pipeline/cards/{lead['id']}")
    assert card.status_code == 200
    assert evil not in card.text and "&lt;img" in card.text


async def test_cards_fragment_and_load_more(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, "/pipeline")
    stage = (await _stages(client))[0]["id"]
    names = [f"Lead {i:02d}" for i in range(54)] + ["Zuleica Fontes"]
    for name in names:
        await _lead(client, csrf, full_name=name)
    page = (await client.get("/pipeline")).text
    column = _column_html(page, stage)
    assert column.count('class="lead-card"') == 50
    assert _count(page, stage) == 55
    more = re.search(r'hx-get="([^"]+)"', column)
    assert more, "no load-more button"
    url = more.group(1).replace("&amp;", "&")
    assert url.startswith(f"/pipeline/stages/{stage}/cards?after=")
    fragment = await client.get(url)
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert fragment.text.count('class="lead-card"') == 5
    assert "hx-get" not in fragment.text  # nothing more to load
    shown = re.findall(r'class="card-name" href="/leads/[^"]+">([^<]+)<', column + fragment.text)
    assert sorted(shown) == sorted(names)  # every lead once, none twice
    # The same fragment respects the filters.
    filtered = await client.get(f"/pipeline/stages/{stage}/cards", params={"q": "Zuleica"})
    assert filtered.text.count('class="lead-card"') == 1 and "Zuleica Fontes" in filtered.text
    bad = await client.get(f"/pipeline/stages/{stage}/cards", params={"after": "nonsense"})
    assert bad.status_code == 400
    missing = await client.get(f"/pipeline/cards/{uuid.uuid4()}")
    assert missing.status_code == 404


async def test_move_to_form_without_javascript(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, "/pipeline")
    stages = await _stages(client)
    lead = await _lead(client, csrf, full_name="Elisa Prado", estimated_value="300")
    target = stages[3]["id"]
    form = {"stage_id": target, "expected_version": str(lead["version"]), "next": "/pipeline"}
    refused = await client.post(f"/pipeline/leads/{lead['id']}/move", data=form)
    assert refused.status_code == 403
    page = (await client.get("/pipeline")).text
    token = CSRF_INPUT.search(page)
    assert token
    r = await client.post(
        f"/pipeline/leads/{lead['id']}/move", data={**form, "csrf_token": token.group(1)}
    )
    assert r.status_code == 303 and r.headers["location"] == "/pipeline"
    page = (await client.get("/pipeline")).text
    assert "Elisa Prado" in _column_html(page, target)
    assert _count(page, target) == 1 and _count(page, stages[0]["id"]) == 0
    assert "Movido para Negociação." in page  # the flash toast
    # The same form with the old version: refused, nothing moves, the toast says why.
    r = await client.post(
        f"/pipeline/leads/{lead['id']}/move",
        data={**form, "stage_id": stages[1]["id"], "csrf_token": token.group(1)},
    )
    assert r.status_code == 303
    page = (await client.get("/pipeline")).text
    assert "Elisa Prado" in _column_html(page, target)
    assert "Alguém mudou este lead" in page
    # A foreign "next" is not followed.
    fresh = await client.get(f"/pipeline/cards/{lead['id']}")
    version = re.search(r'data-version="(\d+)"', fresh.text)
    assert version
    r = await client.post(
        f"/pipeline/leads/{lead['id']}/move",
        data={
            "stage_id": stages[0]["id"],
            "expected_version": version.group(1),
            "next": "//evil.example/",
            "csrf_token": token.group(1),
        },
    )
    assert r.headers["location"] == "/pipeline"


async def test_stale_version_via_the_api_leaves_the_board_unchanged(
    client: httpx.AsyncClient,
) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, "/pipeline")
    stages = await _stages(client)
    lead = await _lead(client, csrf, full_name="Fabio Nunes")
    headers = {"X-CSRF-Token": csrf}
    ok = await client.post(
        f"/api/v1/leads/{lead['id']}/move",
        json={"stage_id": stages[1]["id"], "expected_version": lead["version"]},
        headers=headers,
    )
    assert ok.status_code == 200, ok.text
    before = (await client.get("/pipeline")).text
    stale = await client.post(
        f"/api/v1/leads/{lead['id']}/move",
        json={"stage_id": stages[4]["id"], "expected_version": lead["version"]},
        headers=headers,
    )
    assert stale.status_code == 409
    body = stale.json()
    assert body["code"] == "stale_version" and body["lead"]["stage_id"] == stages[1]["id"]
    after = (await client.get("/pipeline")).text
    for stage in stages:
        assert _count(after, stage["id"]) == _count(before, stage["id"])
    assert "Fabio Nunes" in _column_html(after, stages[1]["id"])
    assert "Fabio Nunes" not in _column_html(after, stages[4]["id"])
    # The board's toast has the words for the refusal, in the page's language.
    words = re.search(r'<script type="application/json" id="board-messages">(.*?)</script>', after)
    assert words and json.loads(words.group(1))["stale_version"].startswith("Alguém mudou")
    # Without the CSRF header the cookie session may not move anything.
    no_csrf = await client.post(
        f"/api/v1/leads/{lead['id']}/move",
        json={"stage_id": stages[4]["id"], "expected_version": ok.json()["version"]},
    )
    assert no_csrf.status_code == 403


async def test_totals_fragment_follows_filters(client: httpx.AsyncClient, owner: sa.Engine) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, "/pipeline")
    stage = (await _stages(client))[0]["id"]
    gil = await _lead(client, csrf, full_name="Gil Alto", source="instagram")
    await _lead(client, csrf, full_name="Hugo Baixo", source="site")
    r = await client.get("/pipeline/totals")
    assert _count(r.text, stage) == 2 and "<html" not in r.text
    r = await client.get("/pipeline/totals", params={"source": "instagram"})
    assert _count(r.text, stage) == 1
    r = await client.get("/pipeline/totals", params={"score_min": "50"})
    assert _count(r.text, stage) == 0  # no score yet counts as 0
    page = (await client.get("/pipeline", params={"source": "instagram"})).text
    assert "Gil Alto" in page and "Hugo Baixo" not in page
    assert 'class="score' not in page  # no badge before a score was calculated
    with owner.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE leads SET lead_score = 12, score_last_calculated_at = now() WHERE id = :id"
            ),
            {"id": gil["id"]},
        )
    page = (await client.get("/pipeline", params={"source": "instagram"})).text
    assert "score-low" in page
    # A live re-read of a card the filters hide is a 404 (the script removes it).
    hidden = await client.get(f"/pipeline/cards/{gil['id']}", params={"source": "site"})
    assert hidden.status_code == 404
    bad = await client.get("/pipeline", params={"score_min": "abc"})
    assert bad.status_code == 200 and "Use um número inteiro de 0 a 100." in bad.text


async def test_stages_page_renames_recolors_and_refuses_a_bad_color(
    client: httpx.AsyncClient,
) -> None:
    await web_signup(client)
    page = await client.get("/settings/pipeline")
    assert page.status_code == 200
    assert 'href="/settings/pipeline"' in page.text
    token = CSRF_INPUT.search(page.text)
    assert token
    csrf = token.group(1)
    stage = (await _stages(client))[1]
    url = f"/settings/pipeline/stages/{stage['id']}"
    r = await client.post(
        url, data={"name": "Contato feito", "color": "#0ea5e9", "is_active": "on"}
    )
    assert r.status_code == 403  # no CSRF token
    r = await client.post(
        url,
        data={"name": "Contato feito", "color": "#0EA5E9", "is_active": "on", "csrf_token": csrf},
    )
    assert r.status_code == 303
    updated = (await _stages(client))[1]
    assert updated["name"] == "Contato feito" and updated["color"] == "#0ea5e9"
    assert updated["is_active"] is True
    r = await client.post(
        url, data={"name": "Outro nome", "color": "azul", "is_active": "on", "csrf_token": csrf}
    )
    assert r.status_code == 422
    assert "Use uma cor no formato #RRGGBB" in r.text
    assert f'id="color-{stage["id"]}-error"' in r.text
    assert 'value="azul"' in r.text  # what was typed stays in the field
    assert (await _stages(client))[1]["name"] == "Contato feito"
    # Add a stage, then remove one that holds a lead: asked where the leads go first.
    r = await client.post(
        "/settings/pipeline/stages", data={"name": "Demo", "color": "#22c55e", "csrf_token": csrf}
    )
    assert r.status_code == 303
    stages = await _stages(client)
    assert stages[-1]["name"] == "Demo"
    lead = await _lead(client, csrf, full_name="Iara Luz", stage_id=stages[-1]["id"])
    delete = f"/settings/pipeline/stages/{stages[-1]['id']}/delete"
    r = await client.post(delete, data={"csrf_token": csrf})
    assert r.status_code == 409 and "Escolha para onde" in r.text
    r = await client.post(delete, data={"csrf_token": csrf, "move_to": stages[0]["id"]})
    assert r.status_code == 303
    assert [s["name"] for s in await _stages(client)][-1] == "Fechado"
    card = await client.get(f"/pipeline/cards/{lead['id']}")
    assert f'data-stage-id="{stages[0]["id"]}"' in card.text
    # Reorder with the arrows (the keyboard's way).
    first = stages[0]["id"]
    r = await client.post(
        f"/settings/pipeline/stages/{first}/move", data={"direction": "down", "csrf_token": csrf}
    )
    assert r.status_code == 303
    assert [s["id"] for s in await _stages(client)][1] == first
    # An inactive stage leaves the board.
    r = await client.post(
        f"/settings/pipeline/stages/{stages[4]['id']}",
        data={"name": "Fechado", "color": "#6366f1", "csrf_token": csrf},
    )
    assert r.status_code == 303
    assert f'data-column="{stages[4]["id"]}"' not in (await client.get("/pipeline")).text


async def test_stages_page_is_read_only_without_the_permission(
    client: httpx.AsyncClient,
) -> None:
    admin = await signup(client)
    await web_accept_invitation(client, admin["headers"], "sales")
    page = await client.get("/settings/pipeline")
    assert page.status_code == 200
    assert "pipeline:manage" in page.text and "<fieldset disabled>" in page.text
    assert '/settings/pipeline/stages"' not in page.text  # no add form
    csrf = CSRF_INPUT.search(page.text)
    assert csrf
    stage = (await _stages(client))[0]
    r = await client.post(
        f"/settings/pipeline/stages/{stage['id']}",
        data={"name": "Hack", "color": "#000000", "csrf_token": csrf.group(1)},
    )
    assert r.status_code == 403 and "pipeline:manage" in r.text
    assert (await _stages(client))[0]["name"] == "Lead"
    # The board is there for them, without the "Edit stages" button.
    board = await client.get("/pipeline")
    assert (
        board.status_code == 200
        and '/settings/pipeline"' not in board.text.split("board-filters")[0].split("title-row")[1]
    )


async def test_english_labels(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, "/pipeline")
    await _lead(client, csrf, full_name="Joana Dark")
    en = {"Accept-Language": "en-US,en;q=0.9"}
    # The organization's language (pt-BR) beats the browser's; the person's choice beats both.
    assert "Mover para…" in (await client.get("/pipeline", headers=en)).text
    pt = (await client.get("/settings/pipeline")).text
    assert "Etapas do funil" in pt and "Adicionar etapa" in pt
    r = await client.post(
        "/preferences/language", data={"language": "en", "next": "/pipeline", "csrf_token": csrf}
    )
    assert r.status_code == 303 and r.headers["location"] == "/pipeline"
    page = (await client.get("/pipeline", headers=en)).text
    assert '<html lang="en">' in page
    assert "Move to…" in page and "Drag leads here" in page and "Load more" not in page
    assert "Mover para…" not in page and "Arraste leads para cá" not in page
    settings_page = (await client.get("/settings/pipeline", headers=en)).text
    assert "Pipeline stages" in settings_page and "Add a stage" in settings_page
