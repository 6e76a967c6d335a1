"""One duplicate rule, four doors: the same pairs of leads through the create API, the create
form, the import and a WhatsApp sender get the same answer — the one ``leads.dedup`` gives."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.leads.dedup import Contact, match_reason
from lovedcrm.messaging import sandbox
from tests.factories import (
    activate_sandbox,
    csrf_token,
    run_import,
    run_wa_jobs,
    signup,
    upload_import,
    web_login,
)


@dataclass(frozen=True)
class Pair:
    name: str
    existing: dict[str, str]
    new: dict[str, str]
    same_person: bool


PAIRS = [
    Pair(
        "same e-mail",
        {"full_name": "Ana Lima", "email": "ana@loja.com.br"},
        {"full_name": "Ana Paula", "email": "ANA@loja.com.br"},
        True,
    ),
    Pair(
        "same phone, typed another way",
        {"full_name": "Bruno Dias", "phone": "+5511987654321"},
        {"full_name": "Bruno", "phone": "(11) 98765-4321"},
        True,
    ),
    Pair(
        "same mobile without the ninth digit",
        {"full_name": "Caio Reis", "phone": "+5511987654322"},
        {"full_name": "Caio", "phone": "+551187654322"},
        True,
    ),
    Pair(
        "same name at a similar company",
        {"full_name": "Joana Albuquerque", "company": "Padaria Pão Quente"},
        {"full_name": "Joana Albuquerque", "company": "Padaria Pao Quente ME"},
        True,
    ),
    Pair(
        "same name at another company",
        {"full_name": "Joana Albuquerque", "company": "Padaria Pão Quente"},
        {"full_name": "Joana Albuquerque", "company": "Oficina Boa Vista"},
        False,
    ),
    Pair(
        "same name, no company",
        {"full_name": "Joana Albuquerque"},
        {"full_name": "Joana Albuquerque"},
        False,
    ),
    Pair(
        "another phone",
        {"full_name": "Davi Souza", "phone": "+5511912345678"},
        {"full_name": "Davi Souza", "phone": "+5521912345678"},
        False,
    ),
]


def _rule(pair: Pair) -> bool:
    region = "BR"
    return (
        match_reason(
            Contact.from_values(pair.new, region), Contact.from_values(pair.existing, region)
        )
        is not None
    )


def test_the_pairs_say_what_the_rule_says() -> None:
    assert [_rule(p) for p in PAIRS] == [p.same_person for p in PAIRS]


async def _organization(client: httpx.AsyncClient, pair: Pair) -> tuple[dict[str, str], str]:
    """A fresh organization holding the pair's existing lead; (headers, its id)."""
    account = await signup(client)
    headers = account["headers"]
    r = await client.post("/api/v1/leads", headers=headers, json=pair.existing)
    assert r.status_code == 201, r.text
    return headers, str(r.json()["id"])


async def _lead_count(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    r = await client.get("/api/v1/leads?limit=100", headers=headers)
    assert r.status_code == 200, r.text
    return len(r.json()["items"])


async def _through_the_api(client: httpx.AsyncClient, pair: Pair) -> bool:
    headers, _ = await _organization(client, pair)
    r = await client.post("/api/v1/leads", headers=headers, json=pair.new)
    assert r.status_code in (201, 409), r.text
    return r.status_code == 409 and r.json()["code"] == "duplicate_lead"


async def _through_the_form(client: httpx.AsyncClient, pair: Pair) -> bool:
    account = await signup(client)
    r = await client.post("/api/v1/leads", headers=account["headers"], json=pair.existing)
    assert r.status_code == 201, r.text
    await web_login(client, account["email"])
    form = {"csrf_token": await csrf_token(client, "/leads/new"), **pair.new}
    r = await client.post("/leads", data=form)
    client.cookies.clear()
    assert r.status_code in (303, 409), r.text
    return r.status_code == 409


async def _through_the_import(
    client: httpx.AsyncClient, pair: Pair, database: Database, settings: Settings
) -> bool:
    headers, _ = await _organization(client, pair)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(pair.new))
    writer.writeheader()
    writer.writerow(pair.new)
    analysis = await upload_import(client, headers, "pair.csv", out.getvalue().encode())
    mapping = {column: column for column in pair.new}
    done = await run_import(
        client, headers, database, settings, analysis, policy="skip", mapping=mapping
    )
    assert done["status"] == "completed", done
    progress = done["progress"]
    assert progress["created"] + progress["skipped"] == 1, done
    return bool(progress["skipped"] == 1)


async def _through_whatsapp(
    client: httpx.AsyncClient, pair: Pair, database: Database, settings: Settings
) -> bool:
    headers, existing_id = await _organization(client, pair)
    await activate_sandbox(client, headers)
    org = await client.get("/api/v1/organizations/current", headers=headers)
    org_id = uuid.UUID(org.json()["id"])
    async with tenant_transaction(database.sessionmaker, org_id, None) as session:
        await sandbox.inject(
            session,
            org_id,
            from_number=pair.new["phone"],
            content="Oi!",
            contact_name=pair.new["full_name"],
        )
    await run_wa_jobs(database, settings)
    r = await client.get(f"/api/v1/leads/{existing_id}/messages", headers=headers)
    assert r.status_code == 200, r.text
    landed_on_existing = len(r.json()) == 1
    assert await _lead_count(client, headers) == (1 if landed_on_existing else 2)
    return landed_on_existing


@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
async def test_every_door_gives_the_same_answer(
    pair: Pair, client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    answers: dict[str, Any] = {
        "api": await _through_the_api(client, pair),
        "form": await _through_the_form(client, pair),
        "import": await _through_the_import(client, pair, database, settings),
    }
    if set(pair.new) <= {"full_name", "phone"} and "phone" in pair.new:
        # A WhatsApp sender brings only a phone and a profile name.
        answers["whatsapp"] = await _through_whatsapp(client, pair, database, settings)
    assert answers == dict.fromkeys(answers, pair.same_person)
