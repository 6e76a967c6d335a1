"""The admin screens over HTTP (cookie session, CSRF): Settings → Team (invite, accept from
the mailed link, change a role, deactivate, remove, revoke; the last admin kept), Settings →
API keys (the secret shown once, revoke), Settings → My account (profile, password, sessions)
and its JSON twin (/api/v1/auth/me/profile, /api/v1/auth/sessions); bad input named, who
may see what, and what is audited."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy as sa

from lovedcrm.config import Settings
from lovedcrm.core.deps import SESSION_COOKIE
from lovedcrm.web.i18n import LANG_COOKIE
from tests.factories import (
    PASSWORD,
    bearer,
    csrf_token,
    login,
    mailed_links,
    owner_sql,
    session_headers,
    signup,
    unique_email,
    web_accept_invitation,
    web_login,
    web_signup,
)

TEAM = "/settings/team"
KEYS = "/settings/api-keys"
PROFILE = "/settings/profile"
SAO_PAULO = ZoneInfo("America/Sao_Paulo")
KEY_RE = re.compile(r"lcrm_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}")


def _flash_of(page: str) -> list[str]:
    return re.findall(r'<div class="toast [^"]*" data-toast>\s*<span>([^<]*)</span>', page)


async def _members(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    r = await client.get("/api/v1/members")
    assert r.status_code == 200, r.text
    return {m["email"]: m for m in r.json()}


async def _invitations(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/invitations")
    assert r.status_code == 200, r.text
    return list(r.json())


def _audited(owner: sa.Engine, user_email: str, action: str) -> int:
    rows = owner_sql(
        owner,
        "SELECT count(*) FROM audit_logs a JOIN users u ON u.id = a.user_id"
        " WHERE u.email = :e AND a.action = :a",
        e=user_email,
        a=action,
    )
    return int(rows[0][0])


# --- Team -------------------------------------------------------------------------------------


async def test_invite_accept_from_the_mail_change_role_deactivate_and_remove(
    client: httpx.AsyncClient, settings: Settings, app: Any
) -> None:
    admin_email, _org, _cookie = await web_signup(client)
    page = await client.get(TEAM)
    assert page.status_code == 200
    assert 'href="/settings/team" class="tab active"' in page.text
    assert admin_email in page.text and "Convidar alguém" in page.text
    csrf = await csrf_token(client, TEAM)

    # Bad input is named next to its field, and nothing is invited.
    r = await client.post(
        TEAM + "/invitations", data={"csrf_token": csrf, "email": "not-an-email", "role": "sales"}
    )
    assert r.status_code == 422
    assert "Este endereço de e-mail não é válido." in r.text
    assert 'value="not-an-email"' in r.text
    r = await client.post(
        TEAM + "/invitations", data={"csrf_token": csrf, "email": unique_email(), "role": "owner"}
    )
    assert r.status_code == 422 and "Escolha um dos papéis da lista." in r.text
    r = await client.post(
        TEAM + "/invitations", data={"csrf_token": csrf, "email": admin_email, "role": "sales"}
    )
    assert r.status_code == 409 and "já é membro da organização" in r.text
    assert await _invitations(client) == []

    # The invitation: listed as pending, and mailed with its link.
    invitee = unique_email("convidada")
    r = await client.post(
        TEAM + "/invitations", data={"csrf_token": csrf, "email": invitee, "role": "manager"}
    )
    assert r.status_code == 303 and r.headers["location"] == TEAM
    page = await client.get(TEAM)
    assert f"Convite enviado para {invitee}" in _flash_of(page.text)[0]
    pending = page.text[page.text.index('id="invitations"') :]
    assert invitee in pending and "Gerente" in pending
    [link] = mailed_links(settings.data_dir, invitee, "/invitations/accept")
    assert link.startswith(settings.base_url)

    # The link, opened by the invitee (no session): the account is made and signed in.
    transport = httpx.ASGITransport(app=app, client=("203.0.113.8", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as guest:
        path = link.removeprefix(settings.base_url)
        shown = await guest.get(path)
        assert shown.status_code == 200 and invitee in shown.text
        assert "<strong>Gerente</strong>" in shown.text  # the role in words
        token = path.split("token=")[1]
        r = await guest.post(
            "/invitations/accept",
            data={"token": token, "full_name": "Marina Costa", "password": PASSWORD},
        )
        assert r.status_code == 303 and guest.cookies.get(SESSION_COOKIE)
        assert "Marina Costa" in (await guest.get("/")).text

    page = await client.get(TEAM)
    assert "Nenhum convite esperando resposta." in page.text
    members = await _members(client)
    assert members[invitee]["role"] == "manager" and members[invitee]["is_active"] is True
    member_id = members[invitee]["id"]

    # Role: a role not in the list is refused; a real one is saved.
    r = await client.post(
        f"{TEAM}/members/{member_id}/role", data={"csrf_token": csrf, "role": "x"}
    )
    assert r.status_code == 422
    r = await client.post(
        f"{TEAM}/members/{member_id}/role", data={"csrf_token": csrf, "role": "viewer"}
    )
    assert r.status_code == 303
    assert "Papel alterado para Leitor." in _flash_of((await client.get(TEAM)).text)
    assert (await _members(client))[invitee]["role"] == "viewer"

    # Deactivate, reactivate.
    r = await client.post(f"{TEAM}/members/{member_id}/active", data={"csrf_token": csrf})
    assert r.status_code == 303 and (await _members(client))[invitee]["is_active"] is False
    assert "Desativado" in (await client.get(TEAM)).text
    r = await client.post(
        f"{TEAM}/members/{member_id}/active", data={"csrf_token": csrf, "active": "true"}
    )
    assert r.status_code == 303 and (await _members(client))[invitee]["is_active"] is True

    # The last admin cannot step down or leave: the page says why, nothing changes.
    me = (await _members(client))[admin_email]["id"]
    r = await client.post(f"{TEAM}/members/{me}/role", data={"csrf_token": csrf, "role": "sales"})
    assert r.status_code == 409
    assert "pelo menos um administrador ativo" in r.text
    r = await client.post(f"{TEAM}/members/{me}/remove", data={"csrf_token": csrf})
    assert r.status_code == 409
    assert (await _members(client))[admin_email]["role"] == "admin"

    # Remove.
    r = await client.post(f"{TEAM}/members/{member_id}/remove", data={"csrf_token": csrf})
    assert r.status_code == 303 and invitee not in await _members(client)
    r = await client.post(f"{TEAM}/members/{member_id}/remove", data={"csrf_token": csrf})
    assert r.status_code == 404

    # A revoked invitation's link no longer works.
    other = unique_email("revogada")
    r = await client.post(
        TEAM + "/invitations", data={"csrf_token": csrf, "email": other, "role": "sales"}
    )
    assert r.status_code == 303
    [invitation] = await _invitations(client)
    r = await client.post(
        f"{TEAM}/invitations/{invitation['id']}/revoke", data={"csrf_token": csrf}
    )
    assert r.status_code == 303 and await _invitations(client) == []
    [link] = mailed_links(settings.data_dir, other, "/invitations/accept")
    assert (await client.get(link.removeprefix(settings.base_url))).status_code == 401


async def test_team_page_in_english_and_without_csrf(client: httpx.AsyncClient) -> None:
    await web_signup(client)
    client.cookies.set(LANG_COOKIE, "en")
    page = await client.get(TEAM)
    assert "Invite someone" in page.text and "Pending invitations" in page.text
    assert "Salesperson" in page.text and "Convidar" not in page.text
    for path, label in (
        ("/settings/profile", "My account"),
        (TEAM, "Team"),
        (KEYS, "API keys"),
        ("/settings/webhooks", "Webhooks"),
    ):  # the user menu leads to each admin screen
        assert f'<a class="menu-link" href="{path}">{label}</a>' in page.text
    assert "· Admin</span>" in page.text  # the role, in words
    r = await client.post(TEAM + "/invitations", data={"email": unique_email(), "role": "sales"})
    assert r.status_code == 403
    assert await _invitations(client) == []


async def test_admin_screens_are_refused_to_members_without_the_permission(
    client: httpx.AsyncClient,
) -> None:
    admin = await signup(client)
    for role in ("manager", "sales"):
        await web_accept_invitation(client, admin["headers"], role)
        csrf = await csrf_token(client, PROFILE)
        profile = await client.get(PROFILE)
        assert profile.status_code == 200
        for path in (TEAM, KEYS, "/settings/webhooks"):
            assert f'href="{path}"' not in profile.text  # no tab, no menu link
            r = await client.get(path)
            assert r.status_code == 403, path
            assert "Sem acesso" in r.text
        r = await client.post(
            TEAM + "/invitations",
            data={"csrf_token": csrf, "email": unique_email(), "role": "admin"},
        )
        assert r.status_code == 403
        r = await client.post(
            KEYS, data={"csrf_token": csrf, "name": "x", "scopes": ["leads:read"]}
        )
        assert r.status_code == 403
    r = await client.get("/api/v1/invitations", headers=admin["headers"])
    assert r.json() == []
    r = await client.get("/api/v1/api-keys", headers=admin["headers"])
    assert r.json() == []


# --- API keys ---------------------------------------------------------------------------------


async def test_api_key_secret_is_shown_once_and_revoking_stops_it(
    client: httpx.AsyncClient, owner: sa.Engine
) -> None:
    admin_email, _org, _cookie = await web_signup(client)
    page = await client.get(KEYS)
    assert page.status_code == 200 and "Nenhuma chave de API ainda." in page.text
    csrf = await csrf_token(client, KEYS)

    # Nothing named, nothing chosen, a day gone by: each said, nothing created.
    r = await client.post(KEYS, data={"csrf_token": csrf, "name": " "})
    assert r.status_code == 422
    assert "Dê à chave um nome" in r.text and "Escolha pelo menos uma permissão" in r.text
    yesterday = (dt.date.today() - dt.timedelta(days=2)).isoformat()
    r = await client.post(
        KEYS,
        data={
            "csrf_token": csrf,
            "name": "Zapier",
            "scopes": ["leads:read"],
            "expires_on": yesterday,
        },
    )
    assert r.status_code == 422 and "Escolha um dia depois de hoje" in r.text
    assert 'value="Zapier"' in r.text
    r = await client.post(
        KEYS,
        data={
            "csrf_token": csrf,
            "name": "Zapier",
            "scopes": ["leads:read"],
            "expires_on": "amanhã",
        },
    )
    assert r.status_code == 422
    r = await client.post(KEYS, data={"csrf_token": csrf, "name": "Zapier", "scopes": ["root"]})
    assert r.status_code == 422 and "Escolha pelo menos uma permissão" in r.text
    assert (await client.get("/api/v1/api-keys")).json() == []

    # Created: the whole key is on this answer, uncached, and works.
    next_year = (dt.date.today() + dt.timedelta(days=365)).isoformat()
    r = await client.post(
        KEYS,
        data={
            "csrf_token": csrf,
            "name": "Zapier",
            "scopes": ["leads:read", "leads:write"],
            "expires_on": next_year,
        },
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    [secret] = set(KEY_RE.findall(r.text))
    assert "é mostrada só desta vez" in r.text
    [key] = (await client.get("/api/v1/api-keys")).json()
    assert key["name"] == "Zapier" and key["scopes"] == ["leads:read", "leads:write"]
    expires = dt.datetime.fromisoformat(key["expires_at"]).astimezone(SAO_PAULO)
    assert expires.date().isoformat() == next_year  # the end of that day, where the team is
    assert (await client.get("/api/v1/leads", headers=bearer(secret))).status_code == 200

    # Never again: the list shows its prefix only.
    page = await client.get(KEYS)
    assert secret not in page.text and f"lcrm_{key['prefix']}_…" in page.text
    assert "Válida" in page.text and "nunca usada" in page.text

    # Revoked: the list says so, and the key stops working.
    r = await client.post(f"{KEYS}/{key['id']}/revoke", data={"csrf_token": csrf})
    assert r.status_code == 303
    page = await client.get(KEYS)
    assert "Chave Zapier revogada: ela não funciona mais." in _flash_of(page.text)
    assert "Revogada" in page.text
    assert (await client.get("/api/v1/leads", headers=bearer(secret))).status_code == 401
    r = await client.post(f"{KEYS}/{uuid.uuid4()}/revoke", data={"csrf_token": csrf})
    assert r.status_code == 404 and "Nenhuma chave de API com esse id" in r.text
    assert _audited(owner, admin_email, "api_key_create") == 1
    assert _audited(owner, admin_email, "api_key_revoke") == 1


# --- My account -------------------------------------------------------------------------------


async def test_profile_password_and_sessions(
    client: httpx.AsyncClient, app: Any, owner: sa.Engine
) -> None:
    user_email, _org, _cookie = await web_signup(client)
    api_a = await login(client, user_email)
    api_b = await login(client, user_email)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        await web_login(other, user_email)
        assert (await other.get("/")).status_code == 200

        page = await client.get(PROFILE)
        assert page.status_code == 200
        assert 'href="/settings/profile" class="tab active"' in page.text
        assert page.text.count('class="row-item"') == 4  # this browser, the other, two API
        assert page.text.count("Este dispositivo") == 1
        assert "IP 198.51.100.4" in page.text and "IP 203.0.113.7" in page.text
        csrf = await csrf_token(client, PROFILE)

        # Profile: bad input named and kept; good input saved (the phone in E.164).
        r = await client.post(PROFILE, data={"csrf_token": csrf, "full_name": "  ", "phone": "12"})
        assert r.status_code == 422
        assert "Escreva seu nome" in r.text and "Isto não é um número de telefone" in r.text
        r = await client.post(
            PROFILE,
            data={"csrf_token": csrf, "full_name": "Carla  Dias Souza", "phone": "(11) 98765-4321"},
        )
        assert r.status_code == 303
        me = (await client.get("/api/v1/auth/me/profile")).json()
        assert me["full_name"] == "Carla Dias Souza" and me["phone"] == "+5511987654321"
        page = await client.get(PROFILE)
        assert "Perfil salvo." in _flash_of(page.text) and "+55 11 98765-4321" in page.text

        # End one API session: its token stops, the others go on.
        sessions = (await client.get("/api/v1/auth/sessions")).json()
        assert sum(s["current"] for s in sessions) == 1
        api_ids = [s["id"] for s in sessions if s["kind"] == "api"]
        assert len(api_ids) == 2
        mine = (await client.get("/api/v1/auth/sessions", headers=api_a)).json()
        a_id = next(s["id"] for s in mine if s["current"])
        r = await client.post(f"{PROFILE}/sessions/{a_id}/end", data={"csrf_token": csrf})
        assert r.status_code == 303
        assert (await client.get("/api/v1/auth/me", headers=api_a)).status_code == 401
        assert (await client.get("/api/v1/auth/me", headers=api_b)).status_code == 200
        r = await client.post(f"{PROFILE}/sessions/{a_id}/end", data={"csrf_token": csrf})
        assert r.status_code == 404
        r = await client.post(f"{PROFILE}/sessions/{uuid.uuid4()}/end", data={"csrf_token": csrf})
        assert r.status_code == 404

        # Password: wrong current, two different new ones, a weak one: said, not changed.
        form = {"csrf_token": csrf, "end_others": "on"}
        r = await client.post(
            PROFILE + "/password",
            data={
                **form,
                "current_password": "nope",
                "new_password": "Nova-senha-123",
                "new_password_again": "Nova-senha-123",
            },
        )
        assert r.status_code == 422 and "Esta não é a sua senha atual." in r.text
        r = await client.post(
            PROFILE + "/password",
            data={
                **form,
                "current_password": PASSWORD,
                "new_password": "Nova-senha-123",
                "new_password_again": "Nova-senha-124",
            },
        )
        assert r.status_code == 422 and "As duas senhas novas são diferentes." in r.text
        r = await client.post(
            PROFILE + "/password",
            data={
                **form,
                "current_password": PASSWORD,
                "new_password": "curta",
                "new_password_again": "curta",
            },
        )
        assert r.status_code == 422 and "Use pelo menos 10 caracteres" in r.text
        assert (await other.get("/")).status_code == 200

        # Changed, the other sessions ended: the other browser and the API token are out.
        r = await client.post(
            PROFILE + "/password",
            data={
                **form,
                "current_password": PASSWORD,
                "new_password": "Nova-senha-123",
                "new_password_again": "Nova-senha-123",
            },
        )
        assert r.status_code == 303
        page = await client.get(PROFILE)
        assert "Senha alterada. 2 outras sessões encerradas." in _flash_of(page.text)
        assert page.text.count('class="row-item"') == 1
        r = await other.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert (await client.get("/api/v1/auth/me", headers=api_b)).status_code == 401
        await login(client, user_email, "Nova-senha-123")

    assert _audited(owner, user_email, "profile_update") == 1
    assert _audited(owner, user_email, "session_end") == 1
    assert _audited(owner, user_email, "password_changed") == 1
    assert _audited(owner, user_email, "sessions_end_others") == 1


async def test_profile_page_in_english_and_end_all_other_sessions(
    client: httpx.AsyncClient,
) -> None:
    user_email, _org, _cookie = await web_signup(client)
    token = await login(client, user_email)
    client.cookies.set(LANG_COOKIE, "en")
    page = await client.get(PROFILE)
    assert "Your sessions" in page.text and "This device" in page.text
    assert "End all other sessions" in page.text and "Python" in page.text
    csrf = await csrf_token(client, PROFILE)
    r = await client.post(PROFILE + "/sessions/end-others", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert "1 session ended." in _flash_of((await client.get(PROFILE)).text)
    assert (await client.get("/api/v1/auth/me", headers=token)).status_code == 401
    r = await client.post(PROFILE + "/sessions/end-others", data={"csrf_token": csrf})
    assert "No other session was open." in _flash_of((await client.get(PROFILE)).text)
    # This session is ended by logging out, not from the list.
    me = next(s for s in (await client.get("/api/v1/auth/sessions")).json() if s["current"])
    r = await client.post(f"{PROFILE}/sessions/{me['id']}/end", data={"csrf_token": csrf})
    assert r.status_code == 303 and (await client.get(PROFILE)).status_code == 200


async def test_last_seen_is_written_at_most_every_few_minutes(
    client: httpx.AsyncClient, owner: sa.Engine
) -> None:
    user_email, _org, _cookie = await web_signup(client)
    [(sid, seen)] = owner_sql(
        owner,
        "SELECT s.id, s.last_seen_at FROM user_sessions s JOIN users u ON u.id = s.user_id"
        " WHERE u.email = :e",
        e=user_email,
    )
    await client.get("/")
    assert (
        owner_sql(owner, "SELECT last_seen_at FROM user_sessions WHERE id = :i", i=sid)[0][0]
        == seen
    )
    owner_sql(
        owner,
        "UPDATE user_sessions SET last_seen_at = now() - interval '1 hour' WHERE id = :i",
        i=sid,
    )
    await client.get("/")
    [(now_seen, db_now)] = owner_sql(
        owner, "SELECT last_seen_at, now() FROM user_sessions WHERE id = :i", i=sid
    )
    assert db_now - now_seen < dt.timedelta(minutes=1)


# --- the JSON API of your account -------------------------------------------------------------


async def test_account_api(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    headers = account["headers"]
    r = await client.get("/api/v1/auth/me/profile", headers=headers)
    assert r.status_code == 200 and r.json()["email"] == account["email"]

    r = await client.patch("/api/v1/auth/me/profile", headers=headers, json={"phone": "banana"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_phone"
    r = await client.patch("/api/v1/auth/me/profile", headers=headers, json={"full_name": " "})
    assert r.status_code == 422
    r = await client.patch("/api/v1/auth/me/profile", headers=headers, json={"role": "admin"})
    assert r.status_code == 422
    r = await client.patch(
        "/api/v1/auth/me/profile",
        headers=headers,
        json={"full_name": "Ana Lima", "phone": "+55 21 99876-5432"},
    )
    assert r.status_code == 200
    assert r.json()["full_name"] == "Ana Lima" and r.json()["phone"] == "+5521998765432"
    r = await client.patch("/api/v1/auth/me/profile", headers=headers, json={"phone": None})
    assert r.status_code == 200 and r.json()["phone"] is None
    assert r.json()["full_name"] == "Ana Lima"

    second = await login(client, account["email"])
    r = await client.get("/api/v1/auth/sessions", headers=headers)
    assert r.status_code == 200
    sessions = r.json()
    assert len(sessions) == 2 and [s["current"] for s in sessions].count(True) == 1
    other = next(s for s in sessions if not s["current"])
    assert other["kind"] == "api" and other["ip_address"] == "203.0.113.7"
    r = await client.delete(f"/api/v1/auth/sessions/{uuid.uuid4()}", headers=headers)
    assert r.status_code == 404 and r.json()["code"] == "session_not_found"
    r = await client.delete(f"/api/v1/auth/sessions/{other['id']}", headers=headers)
    assert r.status_code == 204
    assert (await client.get("/api/v1/auth/me", headers=second)).status_code == 401
    r = await client.post("/api/v1/auth/sessions/end-others", headers=headers)
    assert r.status_code == 200 and r.json() == {"ended": 0}

    # Someone else's session is not yours to end.
    stranger = await signup(client)
    theirs = (await client.get("/api/v1/auth/sessions", headers=stranger["headers"])).json()
    r = await client.delete(f"/api/v1/auth/sessions/{theirs[0]['id']}", headers=headers)
    assert r.status_code == 404
    assert (await client.get("/api/v1/auth/me", headers=stranger["headers"])).status_code == 200

    # The cookie session: writes need the CSRF token; an API key is refused.
    await web_login(client, account["email"])
    r = await client.patch("/api/v1/auth/me/profile", json={"full_name": "Sem CSRF"})
    assert r.status_code == 403
    r = await client.patch(
        "/api/v1/auth/me/profile", headers=await session_headers(client), json={"full_name": "Ana"}
    )
    assert r.status_code == 200
    r = await client.post(
        "/api/v1/api-keys", headers=headers, json={"name": "k", "scopes": ["leads:read"]}
    )
    key = bearer(r.json()["key"])
    for method, path in (("GET", "/api/v1/auth/me/profile"), ("GET", "/api/v1/auth/sessions")):
        r = await client.request(method, path, headers=key)
        assert r.status_code == 403 and r.json()["code"] == "api_keys_require_user"


async def test_the_confirmation_banner_sends_the_link_again(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    email_address, _, _ = await web_signup(client)
    home = await client.get("/")
    assert "Enviar de novo" in home.text and 'action="/verify-email/resend"' in home.text
    assert len(mailed_links(settings.data_dir, email_address, "/verify-email")) == 1
    refused = await client.post("/verify-email/resend")  # no CSRF token
    assert refused.status_code == 403
    csrf = await csrf_token(client, "/")
    r = await client.post("/verify-email/resend", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert len(mailed_links(settings.data_dir, email_address, "/verify-email")) == 2
