"""Inbound WhatsApp webhooks processed in batches (issue 11): the jobs of one organization
claimed together run in one transaction with a few statements for all their messages, and
still every message is stored exactly once, in the order it arrived for its sender, whatever
order the batches run in; a message that fails does not take the others with it.

The webhooks are posted, signed, to the app's real route; the batches are run by the job
engine's own worker (claim, group, execute), here driven step by step so a test decides
which batch runs first."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import ClaimedJob, Worker
from lovedcrm.messaging import webhook_ingest
from tests.factories import create_lead, join, login, owner_sql, signup
from tests.fakes.graph_api import (
    ACCESS_TOKEN,
    PHONE_NUMBER_ID,
    FakeGraphApi,
    meta_message,
    meta_signature,
    meta_text_message,
    meta_webhook,
)

APP_SECRET = "meta-app-secret-batching"
INBOUND = ["whatsapp.inbound"]


@pytest.fixture(scope="module")
def graph() -> Iterator[FakeGraphApi]:
    with FakeGraphApi() as fake:
        yield fake


@pytest.fixture
async def org(client: httpx.AsyncClient, graph: FakeGraphApi) -> dict[str, Any]:
    data = await signup(client)
    r = await client.post(
        "/api/v1/whatsapp/configs",
        headers=data["headers"],
        json={
            "provider_type": "business_api",
            "business_phone_id": PHONE_NUMBER_ID,
            "access_token": ACCESS_TOKEN,
            "app_secret": APP_SECRET,
            "graph_base_url": graph.url,
        },
    )
    assert r.status_code == 201, r.text
    data["config_id"] = r.json()["id"]
    return data


async def post(client: httpx.AsyncClient, org: dict[str, Any], payload: Any) -> None:
    body = json.dumps(payload).encode()
    r = await client.post(
        f"/webhooks/whatsapp/{org['config_id']}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": meta_signature(body, APP_SECRET),
        },
    )
    assert r.status_code == 200, r.text


def text_from(phone: str, body: str, wamid: str | None = None) -> dict[str, Any]:
    return meta_text_message(body, from_number=phone, name=f"Cliente {phone[-4:]}", wamid=wamid)


def worker(database: Database, settings: Settings, batch: int) -> Worker:
    limited = settings.model_copy(update={"worker_max_batch": batch})
    return Worker(database, limited, run_periodic=False, types=INBOUND)


async def claim_batches(w: Worker, org_id: str) -> tuple[list[list[ClaimedJob]], list[Any]]:
    """Everything ready, grouped as the worker groups it: this organization's batches, and
    the others' (jobs other tests left, run too so nothing stays claimed). Claims until
    nothing is left: a claim shares its jobs out between the organizations waiting."""
    mine: list[ClaimedJob] = []
    others: list[ClaimedJob] = []
    while claimed := await w.claim(1000):
        for job in claimed:
            (mine if str(job.organization_id) == org_id else others).append(job)
    return w._chunks(mine), w._chunks(others)


async def run_others(w: Worker, others: list[list[ClaimedJob]]) -> None:
    for chunk in others:
        await w.execute_chunk(chunk)


def job_statuses(owner: sa.Engine, org_id: str) -> Counter[str]:
    rows = owner_sql(
        owner,
        "SELECT status FROM background_jobs WHERE organization_id = :o"
        " AND job_type = 'whatsapp.inbound'",
        o=org_id,
    )
    return Counter(r.status for r in rows)


def stored_ids(owner: sa.Engine, org_id: str) -> Counter[str]:
    rows = owner_sql(
        owner,
        "SELECT provider_message_id FROM messages WHERE organization_id = :o"
        " AND direction = 'inbound'",
        o=org_id,
    )
    return Counter(r.provider_message_id for r in rows)


async def conversation(
    client: httpx.AsyncClient, org: dict[str, Any], phone: str
) -> tuple[str, list[str]]:
    """The lead of ``phone`` (E.164 without +) and its messages' texts, oldest first."""
    r = await client.get("/api/v1/conversations", headers=org["headers"])
    assert r.status_code == 200, r.text
    lead_id = next(c["lead_id"] for c in r.json() if c["phone"] == "+" + phone)
    r = await client.get(f"/api/v1/leads/{lead_id}/messages", headers=org["headers"])
    assert r.status_code == 200, r.text
    return lead_id, [m["content"] for m in r.json()]


@pytest.mark.parametrize("how", ["later_batches_first", "all_batches_at_once"])
async def test_every_message_once_in_arrival_order_per_sender_whatever_batch_runs_first(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    database: Database,
    settings: Settings,
    owner: sa.Engine,
    how: str,
) -> None:
    org_id = org["organization_id"]
    # Ana already is a lead, under the old 8-digit form of her mobile: her messages join it.
    ana, bia, caio = "5511987650001", "5511987650002", "5511987650003"
    known = await create_lead(client, org["headers"], full_name="Ana", phone="+551187650001")
    posted: dict[str, list[str]] = {ana: [], bia: [], caio: []}
    bodies: list[dict[str, Any]] = []
    for i in range(8):
        for phone in (ana, bia, caio):
            text = f"{phone[-1]}-{i}"
            bodies.append(text_from(phone, text))
            posted[phone].append(text)
    # Two messages in one webhook (Meta batches them): they keep their order too.
    two = text_from(bia, "2-8")
    extra = text_from(bia, "2-9")["entry"][0]["changes"][0]["value"]["messages"][0]
    two["entry"][0]["changes"][0]["value"]["messages"].append(extra)
    bodies.append(two)
    posted[bia] += ["2-8", "2-9"]
    for body in bodies:
        await post(client, org, body)
    for body in bodies[3:9]:  # the provider delivers six of them again, later
        await post(client, org, body)

    w = worker(database, settings, batch=5)
    mine, others = await claim_batches(w, org_id)
    assert len(mine) == 7 and all(len(c) <= 5 for c in mine)
    if how == "later_batches_first":
        # The batches holding the latest webhooks run first.
        queued = dict(
            owner_sql(
                owner,
                "SELECT id, created_at FROM background_jobs WHERE organization_id = :o",
                o=org_id,
            )
        )
        for chunk in sorted(mine, key=lambda c: max(queued[j.id] for j in c), reverse=True):
            await w.execute_chunk(chunk)
    else:
        await asyncio.gather(*(w.execute_chunk(c) for c in mine))
    await run_others(w, others)

    assert job_statuses(owner, org_id) == {"completed": len(bodies) + 6}
    ids = stored_ids(owner, org_id)
    assert len(ids) == len(bodies) + 1 and set(ids.values()) == {1}  # none lost, none doubled
    for phone, texts in posted.items():
        # Ana's conversation is her existing lead's, under the phone that lead has.
        lead_id, shown = await conversation(client, org, "551187650001" if phone == ana else phone)
        assert shown == texts, phone  # in the order they arrived
        if phone == ana:
            assert lead_id == known["id"]
    leads = owner_sql(owner, "SELECT phone FROM leads WHERE organization_id = :o", o=org_id)
    assert sorted(r.phone for r in leads) == sorted(["+551187650001", "+" + bia, "+" + caio])
    # The inbox's summary followed the bulk inserts: last message and unread count.
    r = await client.get("/api/v1/conversations", headers=org["headers"])
    summary = {c["phone"]: (c["last_message"], c["unread"]) for c in r.json()}
    assert summary["+" + bia] == ("2-9", 10)
    assert summary["+" + caio] == ("3-7", 8)


async def test_the_same_message_in_two_batches_running_together_is_stored_once(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    database: Database,
    settings: Settings,
    owner: sa.Engine,
) -> None:
    org_id = org["organization_id"]
    sender = "5511976540009"  # a new sender: its lead is created once
    first = text_from(sender, "oi, tudo bem?")
    filler = [text_from(f"55119765401{i:02d}", f"outro {i}") for i in range(3)]
    for body in [first, *filler, first, *filler[:2], first]:
        await post(client, org, body)

    w = worker(database, settings, batch=4)
    mine, others = await claim_batches(w, org_id)
    assert len(mine) == 2
    await asyncio.gather(*(w.execute_chunk(c) for c in mine))
    await run_others(w, others)

    assert job_statuses(owner, org_id) == {"completed": 8}
    ids = stored_ids(owner, org_id)
    assert set(ids.values()) == {1} and len(ids) == 4
    leads = owner_sql(
        owner,
        "SELECT count(*) AS n FROM leads WHERE organization_id = :o AND phone = :p",
        o=org_id,
        p="+" + sender,
    )
    assert leads[0].n == 1
    results = owner_sql(
        owner,
        "SELECT result_data FROM background_jobs WHERE organization_id = :o"
        " AND job_type = 'whatsapp.inbound'",
        o=org_id,
    )
    assert sum(r.result_data["duplicates"] for r in results) == 4
    assert sum(r.result_data["leads_created"] for r in results) == 4


async def test_a_message_that_fails_leaves_the_rest_of_its_batch_stored_once(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    database: Database,
    settings: Settings,
    owner: sa.Engine,
) -> None:
    org_id = org["organization_id"]
    good = [text_from(f"55119654300{i:02d}", f"bom {i}") for i in range(8)]
    # Not a webhook at all: fails for good at once, the others of its batch commit.
    not_a_webhook: list[Any] = [meta_webhook({})]
    # A text PostgreSQL cannot store (a NUL character): the batch's transaction fails, so
    # each of its jobs runs again alone; that one keeps failing and is retried later.
    poison = text_from("5511965430099", "antes\u0000depois")
    for body in [*good[:3], not_a_webhook, *good[3:6], poison, *good[6:]]:
        await post(client, org, body)

    w = worker(database, settings, batch=50)
    mine, others = await claim_batches(w, org_id)
    assert [len(c) for c in mine] == [10]
    await w.execute_chunk(mine[0])
    await run_others(w, others)

    rows = owner_sql(
        owner,
        "SELECT job_data, status, attempts, error_message FROM background_jobs"
        " WHERE organization_id = :o AND job_type = 'whatsapp.inbound'",
        o=org_id,
    )
    by_body = {r.job_data["body"]: r for r in rows}
    bad = by_body[json.dumps(not_a_webhook)]
    assert (bad.status, bad.attempts) == ("failed", 1)
    assert "not a JSON object" in bad.error_message
    stuck = by_body[json.dumps(poison)]
    assert (stuck.status, stuck.attempts) == ("retrying", 1) and stuck.error_message
    assert Counter(r.status for r in rows) == {"completed": 8, "failed": 1, "retrying": 1}
    ids = stored_ids(owner, org_id)
    wanted = {b["entry"][0]["changes"][0]["value"]["messages"][0]["id"] for b in good}
    assert set(ids) == wanted and set(ids.values()) == {1}
    forget_jobs(owner, org_id)


def forget_jobs(owner: sa.Engine, org_id: str) -> None:
    """Leave no job of this organization for other tests' workers to pick up."""
    owner_sql(owner, "DELETE FROM background_jobs WHERE organization_id = :o", o=org_id)


def sql_counter(database: Database) -> tuple[list[str], Any]:
    """Every statement the app's engine runs (an executemany counts once per row)."""
    seen: list[str] = []

    def count(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        seen.extend([statement] * (len(params) if many else 1))

    return seen, count


async def run_counted(w: Worker, database: Database, chunk: list[ClaimedJob]) -> list[str]:
    seen, count = sql_counter(database)
    engine = database.app_engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        await w.execute_chunk(chunk)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return seen


def breakdown(statements: list[str]) -> str:
    tally = Counter(" ".join(s.split())[:70] for s in statements)
    return "\n".join(f"{n:4} {s}" for s, n in tally.most_common())


async def test_a_batch_of_fifty_costs_a_few_statements_per_message(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    database: Database,
    settings: Settings,
    owner: sa.Engine,
) -> None:
    """Was about 17 statements per message (one transaction per webhook, a dozen round
    trips each, more for a new sender). Now a batch costs a fixed dozen statements whatever
    its size (the new leads, messages, timeline entries and audit rows one INSERT each),
    plus what other domains do per event: an analytics row per ``lead.created`` and
    ``message.received`` (one round trip for all) and scoring's debounced rescore, one per
    lead (``jobs.queue.enqueue`` skips a dedupe key already queued in the transaction)."""
    org_id = org["organization_id"]
    senders = [f"55119543{i:05d}" for i in range(50)]
    w = worker(database, settings, batch=50)

    # Fifty new senders: fifty leads created.
    for i, phone in enumerate(senders):
        await post(client, org, text_from(phone, f"primeira {i}"))
    mine, others = await claim_batches(w, org_id)
    await run_others(w, others)
    assert [len(c) for c in mine] == [50]
    new_senders = await run_counted(w, database, mine[0])

    # The same fifty write again: their leads are found.
    for i, phone in enumerate(senders):
        await post(client, org, text_from(phone, f"segunda {i}"))
    mine, others = await claim_batches(w, org_id)
    await run_others(w, others)
    known_senders = await run_counted(w, database, mine[0])

    assert job_statuses(owner, org_id) == {"completed": 100}
    assert sum(stored_ids(owner, org_id).values()) == 100
    assert len(new_senders) <= 3.5 * 50, breakdown(new_senders)
    assert len(known_senders) <= 2.5 * 50, breakdown(known_senders)
    # What does not depend on the number of messages stays one statement per batch.
    for kind in ("INSERT INTO messages", "INSERT INTO lead_activities", "pg_notify"):
        assert sum(kind in s for s in known_senders) == 1, kind


async def test_a_picture_is_still_fetched_after_a_batch(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    database: Database,
    settings: Settings,
    owner: sa.Engine,
) -> None:
    """Media messages inside a batch still queue their download, once each."""
    org_id = org["organization_id"]
    image = meta_message(
        "image",
        {"mime_type": "image/jpeg", "sha256": "x", "id": f"media-{uuid.uuid4().hex[:8]}"},
        from_number="5511954399999",
    )
    for body in [text_from("5511954399998", "oi"), image, image]:
        await post(client, org, body)
    w = worker(database, settings, batch=50)
    mine, others = await claim_batches(w, org_id)
    await w.execute_chunk(mine[0])
    await run_others(w, others)
    media = owner_sql(
        owner,
        "SELECT count(*) AS n FROM background_jobs WHERE organization_id = :o"
        " AND job_type = 'whatsapp.media'",
        o=org_id,
    )
    assert media[0].n == 1
    forget_jobs(owner, org_id)


async def test_webhooks_arriving_together_are_stored_together_and_a_bad_one_alone(
    client: httpx.AsyncClient, org: dict[str, Any], database: Database, owner: sa.Engine
) -> None:
    """The intake stores the webhooks that arrive while it is storing others in one INSERT
    (one commit); each request is answered only once its job is stored. A job the database
    refuses fails its own request only: the others of its INSERT are stored one by one."""
    org_id = org["organization_id"]
    bodies = [text_from(f"55119432100{i:02d}", f"junto {i}") for i in range(20)]
    inserts, count = sql_counter(database)
    engine = database.side_engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        answers = await asyncio.gather(
            *(post(client, org, b) for b in bodies),
            # A job for an organization that does not exist: refused by its foreign key.
            webhook_ingest.store_job(database.side_engine, uuid.uuid4(), "{}"),
            return_exceptions=True,
        )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert answers[:20] == [None] * 20
    assert isinstance(answers[20], sa.exc.IntegrityError)
    stores = [s for s in inserts if "lovedcrm_store_webhook" in s]
    assert len(stores) < 20  # together, not one by one
    assert job_statuses(owner, org_id) == {"pending": 20}
    forget_jobs(owner, org_id)


async def test_a_body_with_a_nul_byte_is_refused_not_stored(
    client: httpx.AsyncClient, org: dict[str, Any], owner: sa.Engine
) -> None:
    """A raw NUL is never JSON, and a job cannot hold it (PostgreSQL's jsonb): it is refused
    at once instead of failing the request for the provider to retry forever."""
    body = json.dumps(text_from("5511943210099", "oi")).encode().replace(b"oi", b"o\x00i")
    r = await client.post(
        f"/webhooks/whatsapp/{org['config_id']}",
        content=body,
        headers={"X-Hub-Signature-256": meta_signature(body, APP_SECRET)},
    )
    assert r.status_code == 403 and r.json()["code"] == "webhook_body_invalid", r.text
    assert job_statuses(owner, org["organization_id"]) == {}


async def test_a_burst_on_an_assigned_lead_is_one_unread_notification_for_its_owner(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    database: Database,
    settings: Settings,
) -> None:
    """The owner of a lead gets one unread "new message" however many messages arrive (the
    database keeps it unique, no read per message); once read, the next message makes a new
    one. The owner and their preference are read once per batch, not once per message."""
    org_id = org["organization_id"]
    member_email = await join(client, org["headers"], "sales")
    member = await login(client, member_email)
    me = await client.get("/api/v1/auth/me", headers=member)
    member_id = me.json()["user"]["id"]
    phones = [f"55119544{i:05d}" for i in range(3)]
    lead_ids = []
    for phone in phones:
        lead = await create_lead(client, org["headers"], phone="+" + phone)
        r = await client.patch(
            f"/api/v1/leads/{lead['id']}", headers=org["headers"], json={"assigned_to": member_id}
        )
        assert r.status_code == 200, r.text
        lead_ids.append(lead["id"])
    w = worker(database, settings, batch=50)

    async def unread() -> list[dict[str, Any]]:
        r = await client.get("/api/v1/notifications", headers=member, params={"unread": "true"})
        assert r.status_code == 200, r.text
        return [n for n in r.json()["items"] if n["notification_type"] == "message_received"]

    for round_ in range(4):
        for phone in phones:
            await post(client, org, text_from(phone, f"oi {round_}"))
    mine, others = await claim_batches(w, org_id)
    await run_others(w, others)
    statements = [s for chunk in mine for s in await run_counted(w, database, chunk)]
    found = await unread()
    assert sorted(n["lead_id"] for n in found) == sorted(lead_ids)
    joined = [s for s in statements if "notification_preferences" in s]
    assert len(joined) == 1, breakdown(statements)

    r = await client.post("/api/v1/notifications/read-all", headers=member)
    assert r.status_code == 200, r.text
    assert await unread() == []
    await post(client, org, text_from(phones[0], "mais uma"))
    mine, others = await claim_batches(w, org_id)
    await run_others(w, others)
    for chunk in mine:
        await w.execute_chunk(chunk)
    assert [n["lead_id"] for n in await unread()] == [lead_ids[0]]
