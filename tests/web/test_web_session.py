"""HTML pages: sign-up, log-in and log-out with a cookie session and CSRF tokens."""

from __future__ import annotations

import re

import httpx

from lovedcrm.config import Settings
from lovedcrm.core import security
from lovedcrm.core.deps import SESSION_COOKIE
from tests.factories import CSRF_INPUT, PASSWORD, signup, unique_email, web_signup


async def test_login_page_is_html(client: httpx.AsyncClient) -> None:
    r = await client.get("/login")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert 'name="password"' in r.text
    assert (await client.get("/signup")).status_code == 200


async def test_home_without_session_redirects_to_login(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 303
    assert r.headers["location"] == "/login"


async def test_signup_sets_a_safe_cookie_and_shows_the_org(client: httpx.AsyncClient) -> None:
    addr, org_name, _ = await web_signup(client)
    # The Set-Cookie of the sign-up response.
    client.cookies.clear()
    r = await client.post(
        "/signup",
        data={
            "full_name": "Davi",
            "email": unique_email("web"),
            "password": PASSWORD,
            "organization_name": org_name,
        },
    )
    assert r.status_code == 303
    set_cookie = r.headers["set-cookie"]
    assert set_cookie.startswith(f"{SESSION_COOKIE}=")
    assert "httponly" in set_cookie.lower()
    assert "samesite=lax" in set_cookie.lower()
    assert "path=/" in set_cookie.lower()

    r = await client.get("/")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert org_name in r.text
    assert "Davi" in r.text
    assert addr not in r.text  # the other account's data is not here


async def test_signup_form_errors_render_the_page(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/signup",
        data={
            "full_name": "Eva",
            "email": unique_email("web"),
            "password": "fraca",
            "organization_name": "Org",
        },
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("text/html")
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    taken = await signup(client)
    r = await client.post(
        "/signup",
        data={
            "full_name": "Eva",
            "email": taken["email"],
            "password": PASSWORD,
            "organization_name": "Org",
        },
    )
    assert r.status_code == 409


async def test_logout_without_csrf_is_refused(client: httpx.AsyncClient) -> None:
    _, _, cookie = await web_signup(client)
    r = await client.post("/logout")
    assert r.status_code == 403, (r.status_code, r.text)
    assert "csrf_failed" in r.text
    client.cookies.set(SESSION_COOKIE, cookie)
    assert (await client.get("/")).status_code == 200


async def test_logout_with_csrf_ends_the_session(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    _, org_name, cookie = await web_signup(client)
    home = await client.get("/")
    assert home.status_code == 200 and org_name in home.text
    tokens = CSRF_INPUT.findall(home.text)
    assert tokens, "home page has no csrf_token input"
    csrf = tokens[0]
    assert csrf == security.csrf_token(settings, security.token_hash(cookie))

    # A wrong token does not end the session.
    r = await client.post("/logout", data={"csrf_token": "0" * 64})
    client.cookies.set(SESSION_COOKIE, cookie)
    assert (await client.get("/")).status_code == 200

    r = await client.post("/logout", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert r.headers["location"] == "/login"
    assert SESSION_COOKIE in r.headers["set-cookie"]  # deleted
    # Replaying the old cookie does not work any more.
    client.cookies.set(SESSION_COOKIE, cookie)
    r = await client.get("/")
    assert r.status_code == 303
    assert r.headers["location"] == "/login"


async def test_login_form(client: httpx.AsyncClient) -> None:
    addr, org_name, _ = await web_signup(client)
    client.cookies.clear()
    r = await client.post("/login", data={"email": addr, "password": PASSWORD})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/"
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie
    r = await client.get("/")
    assert r.status_code == 200 and org_name in r.text


async def test_login_form_wrong_password_does_not_reveal_the_account(
    client: httpx.AsyncClient,
) -> None:
    addr, _, _ = await web_signup(client)
    client.cookies.clear()
    ghost = unique_email("web")
    known = await client.post("/login", data={"email": addr, "password": "senha-errada-1"})
    unknown = await client.post("/login", data={"email": ghost, "password": "senha-errada-1"})
    assert known.status_code == unknown.status_code == 401
    assert known.headers["content-type"].startswith("text/html")
    assert SESSION_COOKIE not in known.headers.get("set-cookie", "")

    def scrub(page: str, addr_: str) -> str:
        page = page.replace(addr_, "EMAIL")
        return re.sub(r'name="csrf_token"\s+value="[^"]*"', "", page)

    assert scrub(known.text, addr) == scrub(unknown.text, ghost)


async def test_signup_form_refuses_a_bad_email_with_a_clear_message(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post(
        "/signup",
        data={
            "full_name": "Zé",
            "email": "not-an-email",
            "password": PASSWORD,
            "organization_name": "Zé Ltda",
        },
    )
    assert r.status_code == 422
    assert "email" in r.text.lower() and "lovedcrm_session" not in r.headers.get("set-cookie", "")
