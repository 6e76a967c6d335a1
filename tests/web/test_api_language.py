"""The API answers in the caller's language: ``Accept-Language: pt-BR`` gets Portuguese problem
details (title, detail, each field's message); without it, English as before. Every message a
service raises has its translation."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from lovedcrm.core import errors
from lovedcrm.web.i18n import translations
from tests.factories import signup

SRC = Path(errors.__file__).resolve().parents[1]
PT = {"Accept-Language": "pt-BR,pt;q=0.9,en;q=0.5"}


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> dict[str, Any]:
    return await signup(client, full_name="Admin Idioma")


async def test_an_invalid_request_in_portuguese(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    body = {"full_name": "x" * 300, "estimated_value": "muito", "campo": 1}
    r = await client.post("/api/v1/leads", json=body, headers={**admin["headers"], **PT})
    assert r.status_code == 422
    problem = r.json()
    assert problem["title"] == "Validação falhou"
    assert problem["detail"].startswith("A requisição tem campos inválidos: ")
    messages = {e["field"]: e["message"] for e in problem["errors"]}
    assert messages["full_name"] == "Longo demais: use no máximo 255 caracteres."
    assert messages["estimated_value"] == "Não é um número."
    assert messages["campo"] == "Campo desconhecido."
    assert problem["code"] == "validation_error"  # codes never change with the language


async def test_service_errors_in_portuguese_and_english_by_default(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    missing = f"/api/v1/leads/{uuid.uuid4()}"
    r = await client.get(missing, headers={**admin["headers"], **PT})
    assert r.status_code == 404
    assert (r.json()["title"], r.json()["detail"]) == (
        "Não encontrado",
        "Este lead não existe ou você não tem acesso a ele.",
    )
    english = await client.get(missing, headers=admin["headers"])
    assert english.json()["detail"] == "No lead with that id."
    asked = await client.get(missing, headers={**admin["headers"], "Accept-Language": "en-US"})
    assert asked.json()["detail"] == "No lead with that id."
    # A detail that ends with values: the sentence is translated, the values kept.
    r = await client.get(
        "/api/v1/leads", params={"sort": "nope"}, headers={**admin["headers"], **PT}
    )
    assert r.status_code == 422
    assert "inválidos" in r.json()["detail"] or "desconhecida" in r.json()["detail"]


async def test_an_unauthenticated_call_in_portuguese(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/leads", headers=PT)
    assert r.status_code == 401
    assert r.json()["title"] == "Não autenticado"
    assert "Authorization" in r.json()["detail"] and "Autenticação" in r.json()["detail"]


def _raised_messages() -> set[str]:
    names = {"AppError", "NotFound", "Conflict", "Unauthorized", "Forbidden"}
    names |= {"ValidationFailed", "TooManyRequests"}
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in names
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value)
    return found


def test_every_message_a_service_raises_is_translated() -> None:
    messages = _raised_messages()
    assert len(messages) > 50  # the walk found the services' errors
    catalog = translations("pt_BR")
    untranslated = sorted(m for m in messages if catalog.gettext(m) == m)
    assert untranslated == []
