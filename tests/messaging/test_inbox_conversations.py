"""The inbox's conversation list reads ``inbox_conversations`` (one row per lead, kept by
triggers on ``messages`` in the same transaction as each change) instead of finding the
latest message of every lead. Whatever happens to messages -- new ones, receipts, reading,
a message moved to another lead or deleted, a lead deleted -- it lists exactly what the
latest-message-per-lead query over all the messages says."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth.authentication import principal_for_member
from lovedcrm.core.principal import Principal
from lovedcrm.db.engine import Database
from lovedcrm.messaging import inbox
from tests.factories import create_lead, signup

# What the inbox listed before the summary table: the latest message of each lead, found
# among all the organization's messages, and the unread inbound ones counted.
REFERENCE = """
    WITH last AS (
        SELECT DISTINCT ON (m.lead_id)
               m.lead_id, m.content, m.direction, m.status, m.message_type, m.created_at
          FROM messages m
         WHERE m.organization_id = :org AND m.lead_id IS NOT NULL
         ORDER BY m.lead_id, m.created_at DESC, m.id DESC
    ), unread AS (
        SELECT lead_id, count(*) AS n FROM messages
         WHERE organization_id = :org AND direction = 'inbound' AND status = 'delivered'
           AND lead_id IS NOT NULL
         GROUP BY lead_id
    )
    SELECT l.id AS lead_id, l.full_name AS lead_name, l.phone, l.assigned_to,
           last.content AS last_message, last.direction AS last_direction,
           last.status AS last_status, last.message_type AS last_type,
           last.created_at AS last_message_at, COALESCE(unread.n, 0) AS unread
      FROM last JOIN leads l ON l.id = last.lead_id
      LEFT JOIN unread ON unread.lead_id = l.id
     ORDER BY last.created_at DESC, l.id
"""


class Inbox:
    def __init__(self, database: Database, org: uuid.UUID, user: uuid.UUID) -> None:
        self.database, self.org, self.user = database, org, user

    async def run(self, sql: str, **params: Any) -> None:
        """A change to messages as the app makes it: its role, its tenant, one transaction."""
        async with self.database.sessionmaker() as s, s.begin():
            await self._principal(s)
            await s.execute(text(sql), {"org": self.org, **params})

    async def _principal(self, s: AsyncSession) -> Principal:
        principal = await principal_for_member(s, self.org, self.user)
        assert principal is not None
        return principal

    async def check(self) -> list[dict[str, Any]]:
        """The inbox's list equals the reference; returns it."""
        async with self.database.sessionmaker() as s, s.begin():
            principal = await self._principal(s)
            listed = await inbox.conversations(s, principal, limit=1000)
            expected = [
                dict(r._mapping) for r in await s.execute(text(REFERENCE), {"org": self.org})
            ]
            unread = await inbox.unread_total(s, principal)
        assert listed == expected
        assert unread == sum(c["unread"] for c in expected)
        return listed


@pytest.fixture
async def world(client: httpx.AsyncClient, database: Database) -> dict[str, Any]:
    data = await signup(client, full_name="Admin Inbox")
    leads = [
        uuid.UUID((await create_lead(client, data["headers"], full_name=f"Cliente {i}"))["id"])
        for i in range(4)
    ]
    box = Inbox(database, uuid.UUID(data["organization_id"]), uuid.UUID(data["user"]["id"]))
    return {"box": box, "leads": leads, "headers": data["headers"]}


INSERT = """
    INSERT INTO messages (id, organization_id, lead_id, provider_type, direction, content,
                          status, created_at)
    VALUES (:id, :org, :lead, 'sandbox', :direction, :content, :status, now() + :offset)
"""


async def _message(
    box: Inbox,
    lead: uuid.UUID,
    content: str,
    *,
    inbound: bool = True,
    minutes: int = 0,
    status: str | None = None,
) -> uuid.UUID:
    message_id = uuid.uuid4()
    await box.run(
        INSERT,
        id=message_id,
        lead=lead,
        direction="inbound" if inbound else "outbound",
        content=content,
        status=status or ("delivered" if inbound else "sent"),
        offset=timedelta(minutes=minutes),
    )
    return message_id


async def test_the_list_follows_every_change_to_messages(world: dict[str, Any]) -> None:
    box: Inbox = world["box"]
    a, b, c, d = world["leads"]
    assert await box.check() == []

    await _message(box, a, "Oi", minutes=1)
    await _message(box, a, "Tudo bem?", minutes=2)
    await _message(box, b, "Olá", minutes=3)
    answer = await _message(box, a, "Tudo, e você?", inbound=False, minutes=4)
    listed = await box.check()
    assert [(x["lead_id"], x["last_message"], x["unread"]) for x in listed] == [
        (a, "Tudo, e você?", 2),
        (b, "Olá", 1),
    ]

    # An older message arriving late (a redelivery) does not become the last one.
    await _message(box, b, "Mensagem antiga", minutes=-30)
    # Receipts move the last message's status; only inbound 'delivered' is unread.
    await box.run("UPDATE messages SET status = 'read' WHERE id = :id", id=answer)
    listed = await box.check()
    assert listed[0]["last_status"] == "read" and listed[1]["unread"] == 2

    # Opening the conversation reads it (the statement whatsapp.mark_conversation_read runs).
    await box.run(
        "UPDATE messages SET status = 'read' WHERE organization_id = :org AND lead_id = :lead"
        " AND direction = 'inbound' AND status <> 'read'",
        lead=a,
    )
    assert (await box.check())[0]["unread"] == 0

    # A message moved to another lead (a merge) leaves its old conversation and joins the new.
    moved = await _message(box, c, "Sou eu, de outro número", minutes=5)
    await box.run("UPDATE messages SET lead_id = :lead WHERE id = :id", lead=d, id=moved)
    listed = await box.check()
    assert {x["lead_id"] for x in listed} == {a, b, d}

    # Deleting the last message brings the previous one back; the only one, the conversation.
    await box.run("DELETE FROM messages WHERE id = :id", id=answer)
    assert (await box.check())[-1]["last_message"] == "Tudo bem?"
    await box.run("DELETE FROM messages WHERE id = :id", id=moved)
    assert {x["lead_id"] for x in await box.check()} == {a, b}

    # A deleted lead keeps its messages (lead_id set to NULL) and leaves the inbox.
    await box.run("DELETE FROM leads WHERE id = :lead", lead=b)
    assert [x["lead_id"] for x in await box.check()] == [a]


async def test_same_time_messages_and_the_filters(world: dict[str, Any]) -> None:
    box: Inbox = world["box"]
    a, b, c, _ = world["leads"]
    # Several messages in one transaction share now(): the last one is the greatest id, as
    # the reference says.
    await box.run(
        "INSERT INTO messages (organization_id, lead_id, provider_type, direction, content,"
        " status) SELECT :org, :lead, 'sandbox', 'inbound', 'Parte ' || g, 'delivered'"
        " FROM generate_series(1, 5) g",
        lead=a,
    )
    await _message(box, b, "Lida", status="read", minutes=1)
    await _message(box, c, "Nova", minutes=2)
    listed = await box.check()
    assert [x["lead_id"] for x in listed] == [c, b, a]
    async with box.database.sessionmaker() as s, s.begin():
        principal = await box._principal(s)
        unread = await inbox.conversations(s, principal, unread_only=True)
        assert [x["lead_id"] for x in unread] == [c, a]
        older = await inbox.conversations(s, principal, before=listed[0]["last_message_at"])
        assert [x["lead_id"] for x in older] == [b, a]
        assert [x["lead_id"] for x in await inbox.conversations(s, principal, limit=1)] == [c]
        mine = await inbox.conversations(s, principal, which="mine")
        assert {x["lead_id"] for x in mine} == {
            x["lead_id"] for x in listed if x["assigned_to"] == box.user
        }
