"""Refresh tokens and log-ins under attack: parallel refreshes with one token (exactly one
wins), reuse of a rotated token (the whole session family is revoked and audited), parallel
wrong passwords (never more password checks than the throttle allows), and log-in or sign-up
forms posted from another site (refused)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from lovedcrm.config import Settings
from lovedcrm.core.deps import SESSION_COOKIE
from tests.factories import PASSWORD, bearer, owner_sql, signup, unique_email

REFRESH = "/api/v1/auth/refresh"


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(REFRESH, json={"refresh_token": token})


# --- refresh-token rotation -------------------------------------------------------------------


async def test_parallel_refreshes_with_one_token_have_one_winner(
    client: httpx.AsyncClient, owner: sa.Engine
) -> None:
    data = await signup(client)
    old = data["tokens"]["refresh_token"]
    answers = await asyncio.gather(*(_refresh(client, old) for _ in range(10)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [401] * 9, [r.text for r in answers]
    losers = [r.json()["code"] for r in answers if r.status_code == 401]
    assert set(losers) <= {"invalid_token", "refresh_token_reused"}
    [winner] = [r.json() for r in answers if r.status_code == 200]
    assert winner["refresh_token"] != old
    [(live,)] = owner_sql(
        owner,
        "SELECT count(*) FROM user_sessions WHERE user_id = CAST(:u AS uuid)"
        " AND kind = 'api' AND revoked_at IS NULL",
        u=data["user"]["id"],
    )
    assert live <= 1  # one live successor at most (none if a late twin counted as reuse)

    # The old token once more, after the race: a reuse. The winner's tokens die with it.
    r = await _refresh(client, old)
    assert r.status_code == 401 and r.json()["code"] == "refresh_token_reused", r.text
    r = await client.get("/api/v1/auth/me", headers=bearer(winner["access_token"]))
    assert r.status_code == 401, r.text
    assert (await _refresh(client, winner["refresh_token"])).status_code == 401
    rows = owner_sql(
        owner,
        "SELECT 1 FROM audit_logs WHERE action = 'refresh_token_reused'"
        " AND user_id = CAST(:u AS uuid)",
        u=data["user"]["id"],
    )
    assert rows


async def test_reusing_a_rotated_token_revokes_the_whole_family_and_is_audited(
    client: httpx.AsyncClient, owner: sa.Engine
) -> None:
    data = await signup(client)
    first = data["tokens"]["refresh_token"]
    r = await _refresh(client, first)
    assert r.status_code == 200, r.text
    second = r.json()
    r = await _refresh(client, second["refresh_token"])
    assert r.status_code == 200, r.text
    third = r.json()
    assert (await client.get("/api/v1/auth/me", headers=bearer(third["access_token"]))).is_success

    # The first token, rotated long ago, comes back: someone else holds a copy.
    r = await _refresh(client, first)
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "refresh_token_reused"
    reuse_request = r.headers["x-request-id"]

    # The live end of the chain is dead too: its access token and its refresh token.
    r = await client.get("/api/v1/auth/me", headers=bearer(third["access_token"]))
    assert r.status_code == 401 and r.json()["code"] == "session_revoked", r.text
    r = await _refresh(client, third["refresh_token"])
    assert r.status_code == 401, r.text

    [(action, success, user_id, changes)] = owner_sql(
        owner,
        "SELECT action, success, user_id, changes FROM audit_logs"
        " WHERE request_id = CAST(:rid AS uuid)",
        rid=reuse_request,
    )
    assert (action, success) == ("refresh_token_reused", False)
    assert str(user_id) == data["user"]["id"]
    assert changes["revoked_sessions"] == 1  # the third one; the others were already rotated
    # Every session of the family is revoked; another log-in of the same person is not.
    other = await client.post(
        "/api/v1/auth/login", json={"email": data["email"], "password": PASSWORD}
    )
    assert other.status_code == 200, other.text
    rows = owner_sql(
        owner,
        "SELECT family_id, revoked_at IS NOT NULL FROM user_sessions"
        " WHERE user_id = CAST(:u AS uuid) AND kind = 'api' ORDER BY created_at",
        u=data["user"]["id"],
    )
    assert len(rows) == 4
    assert len({row[0] for row in rows[:3]}) == 1 and rows[3][0] != rows[0][0]
    assert [row[1] for row in rows] == [True, True, True, False]


async def test_refresh_after_logout_is_refused_without_alarm(
    client: httpx.AsyncClient, owner: sa.Engine
) -> None:
    """A token revoked by a log-out (not rotated) is simply invalid: no theft recorded."""
    data = await signup(client)
    r = await client.post("/api/v1/auth/logout", headers=data["headers"])
    assert r.status_code == 200, r.text
    r = await _refresh(client, data["tokens"]["refresh_token"])
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"
    rows = owner_sql(
        owner,
        "SELECT 1 FROM audit_logs WHERE request_id = CAST(:rid AS uuid)",
        rid=r.headers["x-request-id"],
    )
    assert rows == []


# --- log-in throttle ---------------------------------------------------------------------------


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every argon2 verification the server makes (whatever thread it runs in)."""
    seen: list[str] = []
    lock = threading.Lock()
    real = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        with lock:
            seen.append(str(password))
        return real(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    yield seen


async def test_parallel_wrong_passwords_are_checked_at_most_the_limit(
    client: httpx.AsyncClient, settings: Settings, password_checks: list[str]
) -> None:
    data = await signup(client)
    tries = [f"senha-errada-{i:03d}" for i in range(40)]
    answers = await asyncio.gather(
        *(
            client.post("/api/v1/auth/login", json={"email": data["email"], "password": p})
            for p in tries
        )
    )
    checked = [p for p in password_checks if p in tries]
    assert len(checked) <= settings.login_max_failures, len(checked)
    statuses = [r.status_code for r in answers]
    assert statuses.count(401) == len(checked)
    assert statuses.count(429) == 40 - len(checked)
    assert all(r.json()["code"] == "login_throttled" for r in answers if r.status_code == 429)
    # The right password now waits too, and is not even checked.
    before = len(password_checks)
    r = await client.post("/api/v1/auth/login", json={"email": data["email"], "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert len(password_checks) == before


async def test_successful_log_ins_do_not_use_up_the_budget(client: httpx.AsyncClient) -> None:
    data = await signup(client)
    for _ in range(12):
        r = await client.post(
            "/api/v1/auth/login", json={"email": data["email"], "password": PASSWORD}
        )
        assert r.status_code == 200, r.text


# --- log-in CSRF --------------------------------------------------------------------------------

EVIL = "https://evil.example"


def _signup_form() -> dict[str, str]:
    return {
        "full_name": "Eva",
        "email": unique_email("csrf"),
        "password": PASSWORD,
        "organization_name": f"Org {uuid.uuid4().hex[:6]}",
    }


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://other.testserver"},
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Referer": "http://testserver/login"},
    ],
)
async def test_log_in_and_sign_up_forms_from_another_site_are_refused(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    account = await signup(client)
    client.cookies.clear()
    r = await client.post(
        "/login", data={"email": account["email"], "password": PASSWORD}, headers=headers
    )
    assert r.status_code == 403, r.text
    assert SESSION_COOKIE not in r.cookies
    assert "outro site" in r.text  # pt-BR, the default language

    form = _signup_form()
    r = await client.post("/signup", data=form, headers=headers)
    assert r.status_code == 403, r.text
    assert SESSION_COOKIE not in r.cookies
    # No account was made.
    r = await client.post("/api/v1/auth/login", json={"email": form["email"], "password": PASSWORD})
    assert r.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {},  # not a browser (curl, scripts): nothing to forge
        {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "http://127.0.0.1:8000"},  # the configured base URL (behind a proxy)
        {"Sec-Fetch-Site": "none"},  # typed or bookmarked by the person
    ],
)
async def test_log_in_and_sign_up_forms_from_the_app_itself_work(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    account = await signup(client)
    client.cookies.clear()
    r = await client.post(
        "/login", data={"email": account["email"], "password": PASSWORD}, headers=headers
    )
    assert r.status_code == 303, r.text
    assert client.cookies.get(SESSION_COOKIE)
    client.cookies.clear()
    r = await client.post("/signup", data=_signup_form(), headers=headers)
    assert r.status_code == 303, r.text


async def test_other_pre_session_forms_refuse_another_site(client: httpx.AsyncClient) -> None:
    cross: dict[str, Any] = {"headers": {"Origin": EVIL}}
    r = await client.post("/forgot-password", data={"email": unique_email()}, **cross)
    assert r.status_code == 403
    r = await client.post(
        "/reset-password", data={"token": "x" * 20, "new_password": PASSWORD}, **cross
    )
    assert r.status_code == 403
    r = await client.post(
        "/invitations/accept",
        data={"token": "x" * 20, "full_name": "Eva", "password": PASSWORD},
        **cross,
    )
    assert r.status_code == 403
