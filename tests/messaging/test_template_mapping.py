"""A library template's mapping to a Meta-approved WhatsApp template (name + language) over
the templates API: stored, validated with clear errors, audited, returned."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import set_tenant
from lovedcrm.messaging import templates
from tests.factories import signup

URL = "/api/v1/templates"
BODY = {"name": "Retomada", "category": "follow_up", "content": "Oi {{first_name}}!"}


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> dict[str, Any]:
    return await signup(client, full_name="Admin Mapping")


async def _create(client: httpx.AsyncClient, h: dict[str, str], **extra: Any) -> httpx.Response:
    return await client.post(URL, headers=h, json={**BODY, **extra})


def _fields(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    return {e["field"]: e["message"] for e in body.get("errors", [])}


async def test_mapping_is_stored_and_returned(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    h = admin["headers"]
    r = await _create(
        client, h, whatsapp_template_name=" retomada_contato_2 ", whatsapp_language="pt_BR"
    )
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["whatsapp_template_name"] == "retomada_contato_2"
    assert t["whatsapp_language"] == "pt_BR"
    got = (await client.get(f"{URL}/{t['id']}", headers=h)).json()
    assert (got["whatsapp_template_name"], got["whatsapp_language"]) == (
        "retomada_contato_2",
        "pt_BR",
    )
    listed = {x["id"]: x for x in (await client.get(URL, headers=h)).json()}
    assert listed[t["id"]]["whatsapp_language"] == "pt_BR"
    # Without a mapping both are null (the seeded templates too).
    plain = (await _create(client, h)).json()
    assert plain["whatsapp_template_name"] is None and plain["whatsapp_language"] is None
    assert all("whatsapp_template_name" in x for x in listed.values())


@pytest.mark.parametrize("language", ["pt_BR", "en_US", "es", "fil", "zh_HK"])
async def test_meta_language_codes_accepted(
    client: httpx.AsyncClient, admin: dict[str, Any], language: str
) -> None:
    r = await _create(
        client, admin["headers"], whatsapp_template_name="boas_vindas", whatsapp_language=language
    )
    assert r.status_code == 201, r.text
    assert r.json()["whatsapp_language"] == language


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ({"whatsapp_template_name": "Boas_Vindas", "whatsapp_language": "pt_BR"},
         "whatsapp_template_name", templates.MAP_BAD_NAME),
        ({"whatsapp_template_name": "boas vindas", "whatsapp_language": "pt_BR"},
         "whatsapp_template_name", templates.MAP_BAD_NAME),
        ({"whatsapp_template_name": "boas-vindas", "whatsapp_language": "pt_BR"},
         "whatsapp_template_name", templates.MAP_BAD_NAME),
        ({"whatsapp_template_name": "boas_vindas"},
         "whatsapp_language", templates.MAP_NEEDS_LANGUAGE),
        ({"whatsapp_template_name": "boas_vindas", "whatsapp_language": ""},
         "whatsapp_language", templates.MAP_NEEDS_LANGUAGE),
        ({"whatsapp_template_name": "boas_vindas", "whatsapp_language": "pt-BR"},
         "whatsapp_language", templates.MAP_BAD_LANGUAGE),
        ({"whatsapp_template_name": "boas_vindas", "whatsapp_language": "portuguese"},
         "whatsapp_language", templates.MAP_BAD_LANGUAGE),
        ({"whatsapp_template_name": "boas_vindas", "whatsapp_language": "PT_br"},
         "whatsapp_language", templates.MAP_BAD_LANGUAGE),
        ({"whatsapp_language": "pt_BR"}, "whatsapp_template_name", templates.MAP_NEEDS_NAME),
    ],
)  # fmt: skip
async def test_invalid_mappings_are_refused_naming_the_field(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    extra: dict[str, str],
    field: str,
    message: str,
) -> None:
    r = await _create(client, admin["headers"], **extra)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_whatsapp_template"
    assert _fields(r) == {field: message}
    assert field in r.json()["detail"]


async def test_name_longer_than_meta_allows(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    h = admin["headers"]
    r = await _create(client, h, whatsapp_template_name="a" * 512, whatsapp_language="es")
    assert r.status_code == 201, r.text
    r = await _create(client, h, whatsapp_template_name="a" * 513, whatsapp_language="es")
    assert r.status_code == 422


async def test_both_errors_at_once(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    r = await _create(
        client, admin["headers"], whatsapp_template_name="Oi!", whatsapp_language="xx-YY"
    )
    assert r.status_code == 422
    assert _fields(r) == {
        "whatsapp_template_name": templates.MAP_BAD_NAME,
        "whatsapp_language": templates.MAP_BAD_LANGUAGE,
    }


async def test_update_sets_changes_and_clears_the_mapping(
    client: httpx.AsyncClient, admin: dict[str, Any], database: Database
) -> None:
    h = admin["headers"]
    t = (await _create(client, h)).json()
    url = f"{URL}/{t['id']}"

    # A name alone needs a language.
    r = await client.patch(url, headers=h, json={"whatsapp_template_name": "retomada"})
    assert r.status_code == 422 and _fields(r) == {
        "whatsapp_language": templates.MAP_NEEDS_LANGUAGE
    }
    r = await client.patch(
        url, headers=h, json={"whatsapp_template_name": "retomada", "whatsapp_language": "pt_BR"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["whatsapp_template_name"], r.json()["whatsapp_language"]) == (
        "retomada",
        "pt_BR",
    )
    # Other changes keep the mapping.
    r = await client.patch(url, headers=h, json={"name": "Retomada 2"})
    assert r.json()["whatsapp_template_name"] == "retomada"
    # The language alone changes, the name alone changes (keeping the language).
    r = await client.patch(url, headers=h, json={"whatsapp_language": "en_US"})
    assert (r.json()["whatsapp_template_name"], r.json()["whatsapp_language"]) == (
        "retomada",
        "en_US",
    )
    r = await client.patch(url, headers=h, json={"whatsapp_template_name": "retomada_v2"})
    assert (r.json()["whatsapp_template_name"], r.json()["whatsapp_language"]) == (
        "retomada_v2",
        "en_US",
    )
    # A bad change changes nothing, the content included.
    r = await client.patch(
        url, headers=h, json={"content": "Olá {{lead_name}}", "whatsapp_language": "english"}
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_whatsapp_template"
    after = (await client.get(url, headers=h)).json()
    assert after["content"] == BODY["content"] and after["whatsapp_language"] == "en_US"
    # Removing the language alone is refused; removing the name removes both.
    r = await client.patch(url, headers=h, json={"whatsapp_language": None})
    assert r.status_code == 422 and "whatsapp_language" in _fields(r)
    r = await client.patch(url, headers=h, json={"whatsapp_template_name": None})
    assert r.status_code == 200, r.text
    assert r.json()["whatsapp_template_name"] is None and r.json()["whatsapp_language"] is None
    r = await client.patch(
        url, headers=h, json={"whatsapp_template_name": "", "whatsapp_language": ""}
    )
    assert r.status_code == 200 and r.json()["whatsapp_template_name"] is None

    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, uuid.UUID(admin["organization_id"]), None)
        rows = await s.execute(
            text(
                "SELECT action, changes FROM audit_logs WHERE resource_type = 'message_template'"
                " AND resource_id = :id ORDER BY created_at, id"
            ),
            {"id": t["id"]},
        )
        audited = [(row.action, row.changes) for row in rows]
    assert audited[0][0] == "create"
    updates = [c for a, c in audited if a == "update"]
    assert {"whatsapp_template_name": "retomada", "whatsapp_language": "pt_BR"}.items() <= (
        updates[0]["after"].items()
    )
    assert any(
        c["before"].get("whatsapp_language") == "pt_BR"
        and c["after"].get("whatsapp_language") == "en_US"
        for c in updates
    )
    assert any(
        c["before"].get("whatsapp_template_name") == "retomada_v2"
        and c["after"] == {"whatsapp_template_name": None, "whatsapp_language": None}
        for c in updates
    )


async def test_mapping_is_audited_on_create(
    client: httpx.AsyncClient, admin: dict[str, Any], database: Database
) -> None:
    h = admin["headers"]
    t = (await _create(client, h, whatsapp_template_name="oferta", whatsapp_language="es")).json()
    async with database.sessionmaker() as s, s.begin():
        await set_tenant(s, uuid.UUID(admin["organization_id"]), None)
        row = (
            await s.execute(
                text(
                    "SELECT changes FROM audit_logs WHERE resource_type = 'message_template'"
                    " AND resource_id = :id AND action = 'create'"
                ),
                {"id": t["id"]},
            )
        ).one()
    assert row.changes["after"]["whatsapp_template_name"] == "oferta"
    assert row.changes["after"]["whatsapp_language"] == "es"


async def test_variants_have_their_own_mapping(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    h = admin["headers"]
    a = (
        await _create(client, h, whatsapp_template_name="retomada_a", whatsapp_language="pt_BR")
    ).json()
    r = await _create(
        client,
        h,
        parent_template_id=a["id"],
        whatsapp_template_name="retomada_b",
        whatsapp_language="pt_BR",
    )
    assert r.status_code == 201, r.text
    b = r.json()
    assert b["parent_template_id"] == a["id"] and b["whatsapp_template_name"] == "retomada_b"
    assert (await client.get(f"{URL}/{a['id']}", headers=h)).json()[
        "whatsapp_template_name"
    ] == "retomada_a"
