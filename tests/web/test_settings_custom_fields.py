"""Settings → Campos personalizados (add, edit, reorder, remove through the page, validated by
the organization settings service), custom fields edited in place on the lead page, the lead
assignment settings page, permissions and escaping."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.factories import (
    create_lead,
    csrf_token,
    join,
    session_headers,
    set_custom_fields,
    signup,
    web_login,
    web_signup,
)

PAGE = "/settings/custom-fields"
HX = {"HX-Request": "true"}


async def _settings(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/api/v1/organizations/current")
    assert r.status_code == 200, r.text
    return dict(r.json()["settings"])


async def _add(client: httpx.AsyncClient, csrf: str, **form: str) -> httpx.Response:
    return await client.post(PAGE, data={"csrf_token": csrf, "type": "text", **form})


async def _patch_fields(client: httpx.AsyncClient, fields: list[dict[str, Any]]) -> None:
    await set_custom_fields(client, await session_headers(client), fields)


async def _signed_in_as(client: httpx.AsyncClient, role: str) -> dict[str, str]:
    """A new organization (its admin signed up through the API, with a text custom field
    ``segmento``) and a member with ``role`` signed in to the pages; the admin's headers."""
    client.cookies.clear()
    admin: dict[str, str] = (await signup(client, full_name="Admin"))["headers"]
    await set_custom_fields(
        client, admin, [{"key": "segmento", "label": "Segmento", "type": "text"}]
    )
    await web_login(client, await join(client, admin, role))
    return admin


# --- the settings page ------------------------------------------------------------------------


async def test_add_edit_reorder_and_remove_through_the_page(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    page = await client.get(PAGE)
    assert page.status_code == 200
    assert "Campos personalizados" in page.text and 'aria-current="page"' in page.text
    assert "Nenhum campo personalizado ainda." in page.text
    csrf = await csrf_token(client, PAGE)

    r = await _add(client, csrf, label="Segmento", type="select", options="Varejo\n B2B \n\n")
    assert r.status_code == 303 and r.headers["location"] == PAGE
    assert "Campo Segmento adicionado." in (await client.get(PAGE)).text
    r = await _add(client, csrf, label="Nº de funcionários", type="number", required="on")
    assert r.status_code == 303
    r = await _add(client, csrf, label="Data da visita", key="visita", type="date")
    assert r.status_code == 303
    assert (await _settings(client))["custom_fields"] == [
        {"key": "segmento", "label": "Segmento", "type": "select", "options": ["Varejo", "B2B"]},
        {
            "key": "no_de_funcionarios",
            "label": "Nº de funcionários",
            "type": "number",
            "required": True,
        },
        {"key": "visita", "label": "Data da visita", "type": "date"},
    ]

    # Mistakes come back under the field, in words, and nothing is saved.
    taken = await _add(client, csrf, label="Outro segmento", key="segmento")
    assert taken.status_code == 422
    assert 'id="new-key-error"' in taken.text and "Outro campo já usa esta chave" in taken.text
    assert 'value="Outro segmento"' in taken.text
    no_options = await _add(client, csrf, label="Porte", type="select", options=" \n")
    assert no_options.status_code == 422 and 'id="new-options-error"' in no_options.text
    bad_key = await _add(client, csrf, label="Porte", key="1 porte")
    assert bad_key.status_code == 422 and "começando com uma letra" in bad_key.text
    no_label = await _add(client, csrf, label="  ")
    assert no_label.status_code == 422 and 'id="new-label-error"' in no_label.text
    bad_type = await _add(client, csrf, label="Cor", type="color")
    assert bad_type.status_code == 422 and 'id="new-type-error"' in bad_type.text
    assert len((await _settings(client))["custom_fields"]) == 3

    # Edit the label, the options and the required flag (key and type stay).
    r = await client.post(
        f"{PAGE}/segmento",
        data={
            "csrf_token": csrf,
            "label": "Segmento de mercado",
            "options": "Varejo\nB2B\nGoverno",
            "required": "on",
        },
    )
    assert r.status_code == 303
    r = await client.post(
        f"{PAGE}/no_de_funcionarios", data={"csrf_token": csrf, "label": "Funcionários"}
    )
    assert r.status_code == 303
    dup = await client.post(
        f"{PAGE}/visita", data={"csrf_token": csrf, "label": "Visita", "options": "a\na"}
    )
    assert dup.status_code == 303  # options of a non-select field are ignored
    fields = (await _settings(client))["custom_fields"]
    assert fields[0] == {
        "key": "segmento",
        "label": "Segmento de mercado",
        "type": "select",
        "options": ["Varejo", "B2B", "Governo"],
        "required": True,
    }
    assert fields[1] == {"key": "no_de_funcionarios", "label": "Funcionários", "type": "number"}
    r = await client.post(
        f"{PAGE}/segmento", data={"csrf_token": csrf, "label": "S", "options": "x\nx"}
    )
    assert r.status_code == 422 and "uma só vez" in r.text

    # Reorder with the arrows.
    r = await client.post(f"{PAGE}/visita/move", data={"csrf_token": csrf, "direction": "up"})
    assert r.status_code == 303
    r = await client.post(f"{PAGE}/visita/move", data={"csrf_token": csrf, "direction": "up"})
    assert r.status_code == 303
    keys = [d["key"] for d in (await _settings(client))["custom_fields"]]
    assert keys == ["visita", "segmento", "no_de_funcionarios"]
    page = (await client.get(PAGE)).text
    assert page.index("Visita") < page.index("Segmento de mercado") < page.index("Funcionários")

    # Remove: the confirmation says the values stay; unknown keys are a 404 on the page.
    assert "Os valores já salvos nos leads são mantidos" in page
    r = await client.post(f"{PAGE}/visita/delete", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert [d["key"] for d in (await _settings(client))["custom_fields"]] == [
        "segmento",
        "no_de_funcionarios",
    ]
    gone = await client.post(f"{PAGE}/visita/delete", data={"csrf_token": csrf})
    assert gone.status_code == 404
    refused = await client.post(f"{PAGE}/segmento/delete", data={})
    assert refused.status_code == 403  # no CSRF token


async def test_the_api_validates_definitions_the_same_way(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    h = await session_headers(client)
    bad = [
        {"key": "ok", "label": "Ok", "type": "text"},
        {"key": "ok", "label": "Again", "type": "text"},
        {"key": "has space", "type": "text"},
        {"key": "kind", "type": "color"},
        {"key": "pick", "type": "select", "options": []},
        {"key": "flag", "type": "checkbox", "required": "yes"},
    ]
    r = await client.patch(
        "/api/v1/organizations/current", json={"settings": {"custom_fields": bad}}, headers=h
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [
        "custom_fields.1.key",
        "custom_fields.2.key",
        "custom_fields.3.type",
        "custom_fields.4.options",
        "custom_fields.5.required",
    ]
    r = await client.patch(
        "/api/v1/organizations/current", json={"settings": {"custom_fields": "x"}}, headers=h
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "custom_fields"


async def test_sales_viewer_and_manager_cannot_change_custom_fields(
    client: httpx.AsyncClient,
) -> None:
    for role in ("sales", "viewer", "manager"):
        await _signed_in_as(client, role)
        page = await client.get(PAGE)
        assert page.status_code == 200, role
        assert "Só administradores podem mudar os campos personalizados" in page.text
        assert 'action="/settings/custom-fields"' not in page.text  # no add form
        csrf = await csrf_token(client, PAGE)
        attempts = [
            await _add(client, csrf, label="Hack"),
            await client.post(f"{PAGE}/segmento", data={"csrf_token": csrf, "label": "Hack"}),
            await client.post(
                f"{PAGE}/segmento/move", data={"csrf_token": csrf, "direction": "down"}
            ),
            await client.post(f"{PAGE}/segmento/delete", data={"csrf_token": csrf}),
        ]
        assert [a.status_code for a in attempts] == [403] * 4, role
        r = await client.get("/api/v1/organizations/current")
        assert r.json()["settings"]["custom_fields"] == [
            {"key": "segmento", "label": "Segmento", "type": "text"}
        ], role


# --- the lead page ----------------------------------------------------------------------------

FIELDS = [
    {"key": "segment", "label": "Segmento", "type": "select", "options": ["varejo", "b2b"]},
    {"key": "employees", "label": "Funcionários", "type": "number"},
    {"key": "visit", "label": "Visita", "type": "date"},
    {"key": "vip", "label": "VIP", "type": "checkbox"},
    {"key": "cpf", "label": "CPF", "type": "text", "required": True},
]


async def test_custom_fields_edited_in_place(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    await _patch_fields(client, FIELDS)
    lead = await create_lead(client, full_name="Olga", custom_fields={"cpf": "123", "vip": True})
    url = f"/leads/{lead['id']}"
    api = f"/api/v1/leads/{lead['id']}"
    page = await client.get(url)
    assert page.status_code == 200
    assert "Campos personalizados" in page.text
    for label in ("Segmento", "Funcionários", "Visita", "VIP", "CPF"):
        assert f"{label}</dt>" in page.text
    assert 'id="field-cf-employees"' in page.text and ">Sim</span>" in page.text
    csrf = await csrf_token(client, url)
    hx = {**HX, "X-CSRF-Token": csrf}

    form = await client.get(f"{url}/edit?field=custom:segment", headers=hx)
    assert form.status_code == 200 and "<html" not in form.text
    assert '<select id="edit-cf-segment" name="value"' in form.text
    assert '<option value="b2b"' in form.text

    async def edit(name: str, value: str | None) -> httpx.Response:
        data = {"field": f"custom:{name}"}
        if value is not None:
            data["value"] = value
        return await client.post(f"{url}/edit", data=data, headers=hx)

    saved = await edit("employees", "1.500")
    assert saved.status_code == 200 and 'name="value"' not in saved.text
    assert "1.500" in saved.text
    assert (await edit("segment", "B2B")).status_code == 200
    visit = await edit("visit", "25/11/2026")
    assert visit.status_code == 200 and "25/11/2026" in visit.text
    unchecked = await edit("vip", None)
    assert unchecked.status_code == 200 and ">Não</span>" in unchecked.text
    assert (await client.get(api)).json()["custom_fields"] == {
        "cpf": "123",
        "employees": 1500,
        "segment": "b2b",
        "visit": "2026-11-25",
        "vip": False,
    }

    # Bad values: a clear message naming the field, shown under it; nothing saved.
    cases = {
        "employees": ("muitos", "Funcionários: use um número"),
        "visit": ("31/02/2026", "Visita: use uma data"),
        "segment": ("governo", "Segmento: escolha uma das opções: varejo, b2b."),
        "cpf": ("", "CPF: preencha, é obrigatório."),
    }
    for name, (value, message) in cases.items():
        bad = await edit(name, value)
        assert bad.status_code == 422, name
        assert message in bad.text and 'id="edit-error-cf-' in bad.text, bad.text
    assert (await client.get(api)).json()["custom_fields"]["employees"] == 1500

    # Without HTMX: a redirect when saved; the whole page with the error otherwise.
    plain = await client.post(
        f"{url}/edit", data={"csrf_token": csrf, "field": "custom:employees", "value": "12"}
    )
    assert plain.status_code == 303
    page = await client.post(
        f"{url}/edit", data={"csrf_token": csrf, "field": "custom:employees", "value": "x"}
    )
    assert page.status_code == 422 and "<html" in page.text and "use um número" in page.text
    no_js = await client.get(f"{url}/edit?field=custom:visit")
    assert no_js.status_code == 303 and no_js.headers["location"].endswith("#field-cf-visit")
    shown = await client.get(no_js.headers["location"].split("#")[0])
    assert 'id="edit-cf-visit"' in shown.text and 'type="date"' in shown.text
    # An unknown field is ignored.
    assert (await edit("nope", "1")).status_code == 303

    # A removed field's value stays in the lead, hidden, and does not block other edits.
    await _patch_fields(client, [d for d in FIELDS if d["key"] != "segment"])
    page = await client.get(url)
    assert "Segmento</dt>" not in page.text
    assert (await edit("employees", "7")).status_code == 200
    kept = (await client.get(api)).json()["custom_fields"]
    assert kept["segment"] == "b2b" and kept["employees"] == 7


async def test_viewer_sees_custom_fields_but_cannot_edit(client: httpx.AsyncClient) -> None:
    admin = await _signed_in_as(client, "viewer")
    r = await client.post(
        "/api/v1/leads",
        headers=admin,
        json={"full_name": "Rita", "custom_fields": {"segmento": "varejo"}},
    )
    assert r.status_code == 201, r.text
    url = f"/leads/{r.json()['id']}"
    page = await client.get(url)
    assert page.status_code == 200 and "Segmento</dt>" in page.text and "varejo" in page.text
    assert "edit?field=custom" not in page.text
    csrf = await csrf_token(client, url)
    refused = await client.post(
        f"{url}/edit",
        data={"field": "custom:segmento", "value": "x"},
        headers={**HX, "X-CSRF-Token": csrf},
    )
    assert refused.status_code == 422 and "Você não pode alterar este campo." in refused.text
    got = await client.get(f"/api/v1/leads/{r.json()['id']}", headers=admin)
    assert got.json()["custom_fields"] == {"segmento": "varejo"}


async def test_sales_edits_custom_fields_of_their_own_leads_only(
    client: httpx.AsyncClient,
) -> None:
    admin = await _signed_in_as(client, "sales")
    own = await create_lead(client, full_name="Minha")
    other = await client.post("/api/v1/leads", headers=admin, json={"full_name": "De outro"})
    csrf = await csrf_token(client, f"/leads/{own['id']}")
    hx = {**HX, "X-CSRF-Token": csrf}
    data = {"field": "custom:segmento", "value": "indústria"}
    r = await client.post(f"/leads/{own['id']}/edit", data=data, headers=hx)
    assert r.status_code == 200 and "indústria" in r.text
    r = await client.post(f"/leads/{other.json()['id']}/edit", data=data, headers=hx)
    assert r.status_code == 404


async def test_a_script_in_a_label_is_shown_as_text(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, PAGE)
    evil = "<script>alert(1)</script>"
    r = await _add(client, csrf, label=evil, key="evil", type="select", options=evil)
    assert r.status_code == 303, r.text
    lead = await create_lead(client, full_name="Pedro", custom_fields={"evil": evil})
    for path in (PAGE, "/leads/new", f"/leads/{lead['id']}"):
        page = await client.get(path)
        assert evil not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path


# --- the assignment settings page -------------------------------------------------------------


async def test_assignment_setting_page(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    page = await client.get("/settings/assignment")
    assert page.status_code == 200 and "Distribuição de leads" in page.text
    assert re.search(r'<option value="manual" selected>', page.text)
    assert "Nenhum membro ativo tem o papel de vendedor" in page.text
    csrf = await csrf_token(client, "/settings/assignment")
    r = await client.post(
        "/settings/assignment", data={"csrf_token": csrf, "assignment": "round_robin"}
    )
    assert r.status_code == 303 and r.headers["location"] == "/settings/assignment"
    assert (await _settings(client))["assignment"] == "round_robin"
    bad = await client.post("/settings/assignment", data={"csrf_token": csrf, "assignment": "x"})
    assert bad.status_code == 422 and "Escolha uma das opções da lista." in bad.text
    assert (await _settings(client))["assignment"] == "round_robin"

    # The new lead form offers "automatic"; nobody is still a choice.
    form = await client.get("/leads/new")
    assert re.search(r'<option value="" selected>Automático \(rodízio\)</option>', form.text)
    r = await client.post(
        "/leads", data={"csrf_token": csrf, "full_name": "Sem dono", "assigned_to": "none"}
    )
    assert r.status_code == 303
    r = await client.post(
        "/leads", data={"csrf_token": csrf, "full_name": "Auto", "assigned_to": ""}
    )
    assert r.status_code == 303
    leads = (await client.get("/api/v1/leads")).json()["items"]
    assert {x["full_name"]: x["assigned_to"] for x in leads} == {"Sem dono": None, "Auto": None}


async def test_assignment_setting_needs_settings_manage(client: httpx.AsyncClient) -> None:
    await _signed_in_as(client, "manager")
    page = await client.get("/settings/assignment")
    assert page.status_code == 200 and "Só administradores" in page.text
    csrf = await csrf_token(client, "/settings/assignment")
    r = await client.post(
        "/settings/assignment", data={"csrf_token": csrf, "assignment": "round_robin"}
    )
    assert r.status_code == 403
    assert (await client.get("/api/v1/organizations/current")).json()["settings"][
        "assignment"
    ] == "manual"


async def test_english_labels(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    csrf = await csrf_token(client, PAGE)
    await client.post("/preferences/language", data={"csrf_token": csrf, "language": "en"})
    page = await client.get(PAGE)
    assert "Custom fields" in page.text and "Add a field" in page.text
    assert "Lead assignment" in (await client.get("/settings/assignment")).text
