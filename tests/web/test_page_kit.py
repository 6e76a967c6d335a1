"""The page kit's promises: a page that answers with an error leaves nothing behind, a call in
``attempt`` is undone on its own, and failures are pages (not problem+json)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from lovedcrm.app import create_app
from lovedcrm.config import Settings
from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import AppError, ValidationFailed
from lovedcrm.core.principal import Principal
from lovedcrm.db.engine import Database
from lovedcrm.organizations import service as organizations
from lovedcrm.web.kit import Member, PageError, attempt, page_router, render
from tests.factories import csrf_token, session_headers, web_signup

router = page_router()


async def _rename_then_fail(session: Any, principal: Principal, name: str) -> None:
    """A service call that writes, then refuses: the half-done case."""
    await organizations.update_organization(session, principal, name=name, settings=None)
    raise ValidationFailed("refused after writing", code="late_refusal")


@router.post("/_kit/form-error")
async def form_error(
    request: Request, frame: Member, session: SessionDep, name: Annotated[str, Form()]
) -> Response:
    """Writes through a service, then finds the form wrong and shows it again (422)."""
    await organizations.update_organization(session, frame.principal, name=name, settings=None)
    return render(request, "message.html", 422, title="Fix the form", message="Wrong value")


@router.post("/_kit/carry-on")
async def carry_on(
    request: Request, frame: Member, session: SessionDep, name: Annotated[str, Form()]
) -> Response:
    """One call fails inside ``attempt`` (undone); the page carries on with another write."""
    with contextlib.suppress(AppError):
        await attempt(session, _rename_then_fail(session, frame.principal, name + " (lost)"))
    await organizations.update_organization(session, frame.principal, name=name, settings=None)
    return RedirectResponse("/", status_code=303)


@router.post("/_kit/escaping-error")
async def escaping_error(
    request: Request, frame: Member, session: SessionDep, name: Annotated[str, Form()]
) -> Response:
    """A service error nobody catches: the kit's error page, and the write is undone."""
    await _rename_then_fail(session, frame.principal, name)
    return RedirectResponse("/", status_code=303)


@router.get("/_kit/missing")
async def missing(frame: Member) -> Response:
    raise PageError(404, "Lead not found", "This lead does not exist.", back_url="/leads")


@pytest.fixture
async def kit_client(settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, database=database)
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def _org_name(client: httpx.AsyncClient) -> str:
    r = await client.get("/api/v1/organizations/current", headers=await session_headers(client))
    assert r.status_code == 200, r.text
    return str(r.json()["name"])


async def test_a_page_that_fails_validation_after_a_write_leaves_nothing_behind(
    kit_client: httpx.AsyncClient,
) -> None:
    _, org_name, _ = await web_signup(kit_client)
    csrf = await csrf_token(kit_client)
    r = await kit_client.post("/_kit/form-error", data={"name": "Half done", "csrf_token": csrf})
    assert r.status_code == 422
    assert "Fix the form" in r.text
    assert await _org_name(kit_client) == org_name


async def test_attempt_undoes_only_the_failed_call(kit_client: httpx.AsyncClient) -> None:
    await web_signup(kit_client)
    csrf = await csrf_token(kit_client)
    r = await kit_client.post("/_kit/carry-on", data={"name": "Kept name", "csrf_token": csrf})
    assert r.status_code == 303
    assert await _org_name(kit_client) == "Kept name"


async def test_an_escaping_service_error_is_a_page_and_writes_nothing(
    kit_client: httpx.AsyncClient,
) -> None:
    _, org_name, _ = await web_signup(kit_client)
    csrf = await csrf_token(kit_client)
    r = await kit_client.post("/_kit/escaping-error", data={"name": "Lost", "csrf_token": csrf})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("text/html")
    assert "<html" in r.text.lower()
    assert await _org_name(kit_client) == org_name


async def test_load_or_404_and_sign_in_redirects(kit_client: httpx.AsyncClient) -> None:
    r = await kit_client.get("/_kit/missing")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    await web_signup(kit_client)
    r = await kit_client.get("/_kit/missing")
    assert r.status_code == 404
    assert 'href="/leads"' in r.text
    r = await kit_client.post("/_kit/form-error", data={"name": "x", "csrf_token": "forged"})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
