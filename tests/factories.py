"""Small async factories shared by the tests: they build data through the API (or the pages,
or the services) the way a person or an integration would, and assert each step worked.

Tests import these from here, never from another test file (`tests/test_test_suite_shape.py`
checks that). Fixtures live in the `conftest.py` files; a factory is a plain function so a
test can call it as often as it needs, with the client it has."""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import sqlalchemy as sa

from lovedcrm.config import Settings
from lovedcrm.core import clock
from lovedcrm.core.clock import ManualClock
from lovedcrm.core.deps import SESSION_COOKIE
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle
from lovedcrm.leads import importing

PASSWORD = "s3nha-forte-demais"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


# --- accounts and members (JSON API) ---------------------------------------------------------


async def signup(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    """A new account and organization; the sign-up answer plus ``email`` and ``headers``
    (the admin's Authorization)."""
    body = {
        "email": unique_email(),
        "password": PASSWORD,
        "full_name": "Ana Souza",
        "organization_name": f"Org {uuid.uuid4().hex[:6]}",
        **overrides,
    }
    r = await client.post("/api/v1/auth/signup", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    data["email"] = body["email"]
    data["headers"] = bearer(data["tokens"]["access_token"])
    return data


async def invite(
    client: httpx.AsyncClient, admin_headers: dict[str, str], role: str
) -> tuple[str, str]:
    """Invite a new address with ``role``; (the address, the invitation's token)."""
    email = unique_email(role)
    r = await client.post(
        "/api/v1/invitations", headers=admin_headers, json={"email": email, "role": role}
    )
    assert r.status_code == 201, r.text
    return email, parse_qs(urlparse(r.json()["accept_url"]).query)["token"][0]


async def join(client: httpx.AsyncClient, admin_headers: dict[str, str], role: str) -> str:
    """A new member with ``role`` (invited by the admin, accepted over the API); their email."""
    email, token = await invite(client, admin_headers, role)
    r = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token, "full_name": f"Member {role}", "password": PASSWORD},
    )
    assert r.status_code == 200, r.text
    assert r.json()["role"] == role
    return email


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    """Log in over the API; the Authorization headers."""
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return bearer(r.json()["access_token"])


async def join_and_login(
    client: httpx.AsyncClient, admin_headers: dict[str, str], role: str
) -> dict[str, str]:
    """A new member with ``role``, logged in; their Authorization headers."""
    return await login(client, await join(client, admin_headers, role))


# --- the pages (cookie session) --------------------------------------------------------------

CSRF_INPUT = re.compile(r'name="csrf_token"\s+value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


async def web_signup(client: httpx.AsyncClient) -> tuple[str, str, str]:
    """Sign up through the form; returns (email, organization name, session cookie)."""
    addr, org_name = unique_email("web"), f"Loja Web {uuid.uuid4().hex[:6]}"
    r = await client.post(
        "/signup",
        data={
            "full_name": "Carla Dias",
            "email": addr,
            "password": PASSWORD,
            "organization_name": org_name,
        },
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/"
    cookie = client.cookies.get(SESSION_COOKIE)
    assert cookie
    return addr, org_name, cookie


async def web_login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> None:
    """Sign in through the form, as nobody else: the client's cookies are cleared first."""
    client.cookies.clear()
    r = await client.post("/login", data={"email": email, "password": password})
    assert r.status_code == 303, r.text


async def web_accept_invitation(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    role: str = "sales",
    full_name: str = "Vera",
) -> str:
    """A new member with ``role`` who accepts the invitation through the page and so is signed
    in to the pages (the client's cookies are cleared first); their email."""
    email, token = await invite(client, admin_headers, role)
    client.cookies.clear()
    r = await client.post(
        "/invitations/accept", data={"token": token, "full_name": full_name, "password": PASSWORD}
    )
    assert r.status_code == 303, r.text
    return email


async def csrf_token(client: httpx.AsyncClient, path: str = "/") -> str:
    """The signed-in session's CSRF token, read from the page at ``path``."""
    page = await client.get(path)
    found = CSRF_META.search(page.text) or CSRF_INPUT.search(page.text)
    assert found, f"no CSRF token on {path} ({page.status_code}): {page.text[:300]}"
    return found.group(1)


async def session_headers(client: httpx.AsyncClient) -> dict[str, str]:
    """The cookie session on the JSON API: writes carry the CSRF token as a header."""
    return {"X-CSRF-Token": await csrf_token(client)}


# --- organization settings, leads and message templates ------------------------------------


async def set_custom_fields(
    client: httpx.AsyncClient, headers: dict[str, str], fields: list[dict[str, Any]]
) -> None:
    """Replace the organization's custom field definitions."""
    r = await client.patch(
        "/api/v1/organizations/current",
        headers=headers,
        json={"settings": {"custom_fields": fields}},
    )
    assert r.status_code == 200, r.text


async def create_lead(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    """A new lead over the API (a random name unless ``full_name`` is given), as ``headers``
    say or, without them, as the client's cookie session (with its CSRF token)."""
    fields.setdefault("full_name", f"Lead {uuid.uuid4().hex[:8]}")
    if headers is None:
        headers = await session_headers(client)
    r = await client.post("/api/v1/leads", headers=headers, json=fields)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def create_template(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    name: str = "Retomada",
    content: str = "Oi {{first_name}}!",
    **fields: Any,
) -> dict[str, Any]:
    """A new message template over the API (category ``follow_up`` unless given)."""
    body = {"name": name, "content": content, "category": "follow_up", **fields}
    r = await client.post("/api/v1/templates", headers=headers, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


# --- lead imports ----------------------------------------------------------------------------

CSV_MIME = "text/csv"


async def upload_import(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    name: str,
    content: bytes,
    mime: str = CSV_MIME,
) -> dict[str, Any]:
    """Upload a file to import; the analysis (columns, suggested mapping, ``upload_id``)."""
    r = await client.post("/api/v1/imports", headers=headers, files={"file": (name, content, mime)})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def run_import(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    database: Database,
    settings: Settings,
    analysis: dict[str, Any],
    policy: str = "skip",
    mapping: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """Start the import of an uploaded file, run its job, and return the finished import."""
    r = await client.post(
        "/api/v1/imports/start",
        headers=headers,
        json={
            "upload_id": analysis["upload_id"],
            "mapping": mapping or analysis["suggested_mapping"],
            "duplicate_policy": policy,
        },
    )
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending"
    await run_until_idle(database, settings, types=[importing.JOB_TYPE])
    r = await client.get(f"/api/v1/imports/{r.json()['id']}", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


# --- WhatsApp --------------------------------------------------------------------------------

WA_JOBS = ["whatsapp.inbound", "whatsapp.send", "whatsapp.media"]


async def activate_sandbox(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    """An active sandbox WhatsApp provider; its config id."""
    r = await client.post(
        "/api/v1/whatsapp/configs", headers=headers, json={"provider_type": "sandbox"}
    )
    assert r.status_code == 201, r.text
    config_id: str = r.json()["id"]
    r = await client.post(f"/api/v1/whatsapp/configs/{config_id}/activate", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed", r.json()
    return config_id


async def run_wa_jobs(database: Database, settings: Settings, *, due_now: bool = False) -> int:
    """Run the WhatsApp jobs until none is ready; ``due_now`` first makes the delayed ones
    (sandbox receipts, deferred sends, retries) due (``make_due``)."""
    if due_now:
        make_due(database)
    return await run_until_idle(database, settings, types=WA_JOBS, timeout=30)


def make_due(database: Database) -> None:
    """Make the pending and retrying WhatsApp jobs due. Under a manual clock (the
    ``manual_clock`` fixture) the clock is advanced to the last of them (the job engine claims
    as of a manual clock's time); without one, their time is brought forward to now."""
    engine = sa.create_engine(database.owner_url)
    try:
        with engine.begin() as conn:
            manual = clock.current()
            if isinstance(manual, ManualClock):
                latest = conn.execute(
                    sa.text(
                        "SELECT max(scheduled_for) FROM background_jobs "
                        "WHERE job_type LIKE 'whatsapp.%' AND status IN ('pending', 'retrying')"
                    )
                ).scalar_one()
                if latest is not None and latest > manual.now():
                    manual.advance(
                        microseconds=(latest - manual.now()) // timedelta(microseconds=1)
                    )
                return
            conn.execute(
                sa.text(
                    "UPDATE background_jobs SET scheduled_for = now() "
                    "WHERE job_type LIKE 'whatsapp.%' AND status IN ('pending', 'retrying')"
                )
            )
    finally:
        engine.dispose()


def catch_up_with_database(database: Database) -> None:
    """Under a manual clock, advance it to the database's time if it is behind, so that jobs
    the database stamped with its own ``now()`` are due: the inbound webhooks stored by
    ``lovedcrm_store_webhook`` (the webhook intake does not read the injectable clock). What
    the product schedules later afterwards (sandbox receipts) is still in the future."""
    manual = clock.current()
    if not isinstance(manual, ManualClock):
        return
    engine = sa.create_engine(database.owner_url)
    try:
        with engine.connect() as conn:
            db_now = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
    finally:
        engine.dispose()
    if db_now > manual.now():
        manual.advance(microseconds=(db_now - manual.now()) // timedelta(microseconds=1))


# --- the database as its owner ---------------------------------------------------------------


def owner_sql(engine: sa.Engine, sql: str, **params: Any) -> list[Any]:
    """Run SQL as the database owner (no row-level security) and commit; the rows, if any."""
    with engine.begin() as conn:
        result = conn.execute(sa.text(sql), params)
        return list(result.all()) if result.returns_rows else []


# --- a live server (browser tests) -----------------------------------------------------------


async def browser_signup(page: Any, org_name: str | None = None) -> dict[str, str]:
    """Sign up through the form in a Playwright ``page``; the email and organization name."""
    email = unique_email("e2e")
    org = org_name or f"Loja {uuid.uuid4().hex[:6]}"
    await page.goto("/signup")
    await page.fill("#full_name", "Beatriz Ramos")
    await page.fill("#organization_name", org)
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("form button[type=submit]")
    await page.wait_for_url("**/")
    return {"email": email, "org": org}


async def live_login(base: str, email: str) -> dict[str, str]:
    """Log in over the API of the server at ``base``; the Authorization headers."""
    async with httpx.AsyncClient(base_url=base) as client:
        return await login(client, email)


async def live_lead(base: str, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    """A new lead (duplicates allowed) on the server at ``base``."""
    async with httpx.AsyncClient(base_url=base) as client:
        return await create_lead(client, headers, **{"allow_duplicate": True, **fields})


# --- mail ----------------------------------------------------------------------------------


def mailed_links(data_dir: Any, address: str, path: str) -> list[str]:
    """The links to ``path`` (e.g. ``/invitations/accept``) in the mail sent to ``address``
    through the file mailer under ``data_dir`` (``core.mail.FileMailer``), oldest first."""
    folder = Path(data_dir) / "mail"
    messages = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime)
    ]
    links: list[str] = []
    for msg in messages:
        if msg["To"] != address:
            continue
        part = msg.get_body(preferencelist=("plain",))
        text = part.get_content() if part is not None else ""
        links += [u for u in re.findall(r"https?://\S+", text) if urlparse(u).path == path]
    return list(dict.fromkeys(links))
