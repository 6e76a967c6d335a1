"""Every /api/v1 route against every role and every single-scope API key.

The routes are read from the app itself (``app.routes``), and each route's requirement is
read from its dependency tree: ``Require("x:y")`` (a dependency named ``require_x_y``),
``CurrentPrincipal`` (a person, API keys refused), ``CurrentMember``/``AnyPrincipal`` (a
person or a key), or nothing (a public route, listed in ``PUBLIC``). A new route is checked
without touching this file; a route that cannot be classified fails
``test_every_api_route_is_classified``.

Only the route-level check is asserted: 403 naming the permission (``permission_denied`` for
a person, ``insufficient_scope`` for a key) exactly when the caller lacks it, anything but 403
or 5xx otherwise. Path parameters are random UUIDs and bodies are ``{}``, so a request that
gets past the check ends in 404/422 (or a harmless 200) and changes nothing shared.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from lovedcrm.app import create_app
from lovedcrm.auth.api_keys import SCOPES, key_permissions
from lovedcrm.auth.permissions import PERMISSIONS, ROLE_PERMISSIONS, Role
from lovedcrm.config import Settings
from lovedcrm.core import deps
from tests.factories import join, login, signup

API_PREFIX = "/api/v1/"
ROLES = [r.value for r in Role]

# Routes that need no credential at all (anything else without a principal dependency is a
# mistake, reported by test_every_api_route_is_classified).
PUBLIC: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/api/v1/auth/signup"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/refresh"),
        ("POST", "/api/v1/auth/verify-email"),
        ("POST", "/api/v1/auth/password-reset/request"),
        ("POST", "/api/v1/auth/password-reset/confirm"),
        ("POST", "/api/v1/invitations/accept"),
    }
)

# Person-only routes (CurrentPrincipal) whose permission is checked by the service rather
# than by a Require() dependency, so it is invisible in the dependency tree.
IN_HANDLER: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/api/v1/api-keys/scopes"): frozenset({"api_keys:manage"}),
    ("POST", "/api/v1/api-keys"): frozenset({"api_keys:manage"}),
    ("GET", "/api/v1/api-keys"): frozenset({"api_keys:manage"}),
    ("GET", "/api/v1/api-keys/{key_id}"): frozenset({"api_keys:manage"}),
    ("DELETE", "/api/v1/api-keys/{key_id}"): frozenset({"api_keys:manage"}),
}

# Bodies that pass validation, for routes whose service checks more than the route: with
# ``{}`` they would answer 422 before that check is reached. Nothing is created: members:manage
# is not a key scope (an admin gets 422 invalid_scope), and the lead ids are random (404).
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/api-keys"): {"name": "matrix", "scopes": ["members:manage"]},
    ("POST", "/api/v1/leads/{lead_id}/notes"): {"description": "matrix"},
    ("POST", "/api/v1/leads/{lead_id}/activities"): {"type": "call", "title": "matrix"},
}

# Routes that would end the caller's session or change its credentials: sent with a fresh
# login of the same person, so the shared tokens stay valid.
SESSION_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/auth/password"),
        ("POST", "/api/v1/auth/switch-organization"),
    }
)

# Routes that answer wrongly today, marked xfail(strict) so the bug stays visible. Empty: the
# "read first" cases are fixed by writing scopes implying the read they need
# (auth.api_keys.key_permissions).
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}

_REQUIRE_NAMES = {f"require_{p.replace(':', '_')}": p for p in PERMISSIONS}

Kind = Literal["public", "person", "org"]


@dataclass(frozen=True)
class Requirement:
    """``public``: no credential; ``person``: a signed-in person (API keys refused);
    ``org``: a member or an API key. Plus the permissions the caller must hold."""

    kind: Kind
    permissions: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    requirement: Requirement

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


# --- reading the app ----------------------------------------------------------------------


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def classify(method: str, path: str, dependant: Dependant) -> Requirement | str:
    """The route's requirement, or why it cannot be classified."""
    calls = list(_calls(dependant))
    permissions: set[str] = set()
    for call in calls:
        name = getattr(call, "__name__", "")
        if name.startswith("require_"):
            if name not in _REQUIRE_NAMES:
                return f"{name}: no such permission"
            permissions.add(_REQUIRE_NAMES[name])
    permissions |= IN_HANDLER.get((method, path), frozenset())
    person = any(c is deps.get_principal for c in calls)
    org = any(c is deps.authenticate or c is deps.get_member for c in calls)
    if person:
        return Requirement("person", frozenset(permissions))
    if org:
        return Requirement("org", frozenset(permissions))
    if permissions:
        return f"needs {sorted(permissions)} but no principal dependency"
    if (method, path) in PUBLIC:
        return Requirement("public")
    return "no principal dependency and not listed in PUBLIC"


def api_routes(app: FastAPI) -> Iterator[tuple[str, str, Dependant]]:
    """(method, path, dependant) for every FastAPI route under /api/v1 (routers included)."""
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if not isinstance(route, APIRoute) or not str(ctx.path).startswith(API_PREFIX):
            continue
        dependant = ctx.dependant
        assert dependant is not None
        for method in sorted(ctx.methods or ()):
            yield method, str(ctx.path), dependant


def _collection_app() -> FastAPI:
    """The app built as in production, only to list its routes at collection time (no
    database is touched); the session ``app`` is checked to have the same routes."""
    settings = Settings(
        env="test",
        database_url="postgresql+psycopg://collect@localhost/unused",
        embedded_worker=False,
        log_json=False,
        log_level="WARNING",
        secret_key="test-secret-key-0123456789abcdefghijklmnopqrstuv",
    )
    return create_app(settings)


_ROUTES = list(api_routes(_collection_app()))
UNCLASSIFIED = {f"{m} {p}": r for m, p, d in _ROUTES if isinstance(r := classify(m, p, d), str)}
ENDPOINTS = [
    Endpoint(m, p, r) for m, p, d in _ROUTES if isinstance(r := classify(m, p, d), Requirement)
]
PROTECTED = [e for e in ENDPOINTS if e.requirement.kind != "public"]


def _params(endpoints: list[Endpoint], callers: list[str]) -> list[Any]:
    params = []
    for e in endpoints:
        for caller in callers:
            marks = []
            reason = KNOWN_BUGS.get((e.method, e.path, caller))
            if reason:
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
            params.append(pytest.param(e, caller, id=f"{e.id} [{caller}]", marks=marks))
    return params


# --- the table itself -----------------------------------------------------------------------


def test_every_api_route_is_classified(app: FastAPI) -> None:
    assert _ROUTES, "no /api/v1 route found: is the route listing broken?"
    assert UNCLASSIFIED == {}
    listed = {(m, p) for m, p, _ in _ROUTES}
    assert {(m, p) for m, p, _ in api_routes(app)} == listed, "the test app has other routes"
    assert len(listed) == len(_ROUTES), "a (method, path) is routed twice"
    assert listed >= PUBLIC, f"stale PUBLIC entries: {sorted(PUBLIC - listed)}"
    assert listed >= SESSION_ROUTES, f"stale SESSION_ROUTES: {sorted(SESSION_ROUTES - listed)}"
    assert set(BODIES) <= listed, f"stale BODIES: {sorted(set(BODIES) - listed)}"
    by_key = {e.key: e for e in ENDPOINTS}
    for key in IN_HANDLER:
        assert key in by_key, f"stale IN_HANDLER entry: {key}"
        assert by_key[key].requirement.kind == "person", key
    for method, path, caller in KNOWN_BUGS:
        assert (method, path) in by_key and caller in [*ROLES, *SCOPES], (method, path, caller)


def test_the_table_reads_what_the_code_says() -> None:
    """Spot checks, so a broken dependency walk cannot pass silently."""
    by_key = {e.key: e.requirement for e in ENDPOINTS}
    assert by_key[("GET", "/api/v1/leads")] == Requirement("org", frozenset({"leads:read"}))
    assert by_key[("DELETE", "/api/v1/leads/{lead_id}")] == Requirement(
        "org", frozenset({"leads:delete"})
    )
    assert by_key[("PATCH", "/api/v1/organizations/current")] == Requirement(
        "org", frozenset({"settings:manage"})
    )
    assert by_key[("GET", "/api/v1/organizations/current")] == Requirement("org")
    assert by_key[("GET", "/api/v1/auth/me")] == Requirement("person")
    assert by_key[("POST", "/api/v1/api-keys")] == Requirement(
        "person", frozenset({"api_keys:manage"})
    )
    assert by_key[("POST", "/api/v1/auth/login")] == Requirement("public")
    used = set().union(*(r.permissions for r in by_key.values()))
    assert used <= set(PERMISSIONS)


# --- one organization: a member per role, a key per scope -----------------------------------


@dataclass
class World:
    client: httpx.AsyncClient
    streams: httpx.AsyncClient  # for event streams (see _StreamStart)
    emails: dict[str, str]
    headers: dict[str, dict[str, str]]  # role -> Authorization
    keys: dict[str, dict[str, str]]  # scope -> Authorization


@pytest.fixture(scope="module")
async def world(app: FastAPI) -> AsyncIterator[World]:
    # raise_app_exceptions=False: a crash is a 500 to assert on, not an exception.
    transport = httpx.ASGITransport(
        app=app, client=("203.0.113.9", 1234), raise_app_exceptions=False
    )
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as c,
        httpx.AsyncClient(
            transport=_StreamStart(app, client=("203.0.113.9", 1234)), base_url="http://testserver"
        ) as streams,
    ):
        admin = await signup(c, full_name="Matrix Admin")
        emails = {"admin": admin["email"]}
        headers = {"admin": admin["headers"]}
        for role in ROLES:
            if role != "admin":
                emails[role] = await join(c, admin["headers"], role)
                headers[role] = await login(c, emails[role])
        for role in ROLES:
            r = await c.get("/api/v1/auth/me", headers=headers[role])
            assert r.status_code == 200 and r.json()["role"] == role, r.text
        keys = {}
        for scope in SCOPES:
            r = await c.post(
                "/api/v1/api-keys",
                headers=admin["headers"],
                json={"name": f"only {scope}", "scopes": [scope], "rate_limit_per_hour": 100_000},
            )
            assert r.status_code == 201, r.text
            assert r.json()["scopes"] == [scope]
            keys[scope] = {"Authorization": f"Bearer {r.json()['key']}"}
        yield World(client=c, streams=streams, emails=emails, headers=headers, keys=keys)


# A safety net: an answer (its status and headers) that has not started by then never will.
ANSWER_TIMEOUT = 60.0


class _StreamStart(httpx.AsyncBaseTransport):
    """The ASGI app in-process, like ``httpx.ASGITransport`` (app errors become 500s), but
    an event stream is answered as soon as it starts: its status and headers (and what was
    sent so far), and then the client hangs up. ``ASGITransport`` waits for the end of the
    body, which a stream never reaches. Other responses are read whole."""

    def __init__(self, app: Any, client: tuple[str, int]) -> None:
        self.app = app
        self.client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "server": (request.url.host, request.url.port),
            "client": self.client,
            "root_path": "",
        }
        body = await request.aread()
        started: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        chunks: list[bytes] = []
        hang_up = asyncio.Event()  # the response ended, or the client left a stream
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": body, "more_body": False}
            await hang_up.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.set_result(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    hang_up.set()

        task = asyncio.ensure_future(self.app(scope, receive, send))
        await asyncio.wait(
            {task, started}, timeout=ANSWER_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if not started.done():
            if not task.done():
                task.cancel()
                raise AssertionError(f"{request.method} {request.url}: no answer")
            return httpx.Response(500, text=repr(task.exception()))
        start = started.result()
        headers = [(bytes(k), bytes(v)) for k, v in start.get("headers", [])]
        if dict(headers).get(b"content-type", b"").startswith(b"text/event-stream"):
            hang_up.set()  # the stream has started: its answer is known
        done, _ = await asyncio.wait({task}, timeout=ANSWER_TIMEOUT)
        if not done:
            task.cancel()
            raise AssertionError(f"{request.method} {request.url}: did not end")
        if not task.cancelled():
            task.exception()  # an error after the start keeps its status (as ASGITransport)
        return httpx.Response(start["status"], headers=headers, content=b"".join(chunks))


async def _send(world: World, e: Endpoint, headers: dict[str, str]) -> httpx.Response:
    path = e.path
    for name in [seg[1:-1] for seg in e.path.split("/") if seg.startswith("{")]:
        path = path.replace(f"{{{name}}}", str(uuid.uuid4()))
    body = BODIES.get(e.key, {}) if e.method in ("POST", "PUT", "PATCH") else None
    if e.key in STREAMS:
        # Allowed or refused is decided by the answer's status: a granted stream answers 200
        # with text/event-stream and stays open, a refusal is an ordinary problem response.
        r = await world.streams.request(e.method, path, headers=headers)
        if r.status_code == 200:
            assert r.headers["content-type"].startswith("text/event-stream"), r.headers
        return r
    return await world.client.request(e.method, path, headers=headers, json=body)


# Server-Sent Events: never-ending responses (see _send).
STREAMS = {("GET", "/api/v1/events/stream")}


def _problem(r: httpx.Response) -> dict[str, Any]:
    try:
        data = r.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _assert_allowed(r: httpx.Response, who: str) -> None:
    assert r.status_code < 500, f"{who}: server error {r.status_code}: {r.text}"
    assert r.status_code != 403, f"{who} should pass the access check: {r.text}"
    assert r.status_code != 401, f"{who}'s credential was refused: {r.text}"


# --- the matrix -----------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", [pytest.param(e, id=e.id) for e in PROTECTED])
async def test_without_credentials_is_401(world: World, endpoint: Endpoint) -> None:
    r = await _send(world, endpoint, {})
    assert r.status_code == 401, r.text
    assert _problem(r).get("code") == "not_authenticated", r.text


@pytest.mark.parametrize(("endpoint", "role"), _params(ENDPOINTS, ROLES))
async def test_role(world: World, endpoint: Endpoint, role: str) -> None:
    headers = world.headers[role]
    if endpoint.key in SESSION_ROUTES:
        headers = await login(world.client, world.emails[role])
    r = await _send(world, endpoint, headers)
    missing = endpoint.requirement.permissions - ROLE_PERMISSIONS[Role(role)]
    if missing:
        assert r.status_code == 403, f"{role} lacks {sorted(missing)}: {r.status_code} {r.text}"
        problem = _problem(r)
        assert problem.get("code") == "permission_denied", r.text
        assert problem.get("permission") in missing, r.text
    else:
        _assert_allowed(r, role)


@pytest.mark.parametrize(("endpoint", "scope"), _params(PROTECTED, list(SCOPES)))
async def test_api_key(world: World, endpoint: Endpoint, scope: str) -> None:
    r = await _send(world, endpoint, world.keys[scope])
    req = endpoint.requirement
    problem = _problem(r)
    if req.kind == "person":
        assert r.status_code == 403, f"a key must not use account routes: {r.text}"
        assert problem.get("code") == "api_keys_require_user", r.text
        return
    missing = req.permissions - key_permissions(frozenset({scope}))
    if missing:
        assert r.status_code == 403, f"{scope} key lacks {sorted(missing)}: {r.text}"
        assert problem.get("code") == "insufficient_scope", r.text
        assert problem.get("scope") in missing, r.text
        assert f'scope="{problem.get("scope")}"' in r.headers.get("www-authenticate", "")
    else:
        _assert_allowed(r, f"a {scope} key")
