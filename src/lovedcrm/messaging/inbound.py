"""Inbound WhatsApp messages: the stored webhooks of one organization, processed together.

The webhook route (``webhook_ingest``) verifies the provider's signature and stores each raw
body as a ``whatsapp.inbound`` job; the job handler (``jobs.process_inbound``) takes up to a
batch of them, parses each with its configuration's adapter, and gives them all to
:func:`process_webhooks`: for all their messages at once, under locks on the senders (one
statement, in one global order, so batches sharing senders wait for each other and never
deadlock), skip a message id already stored (providers redeliver), find each sender's lead by
phone (E.164, also the Brazilian mobile form without the ninth digit that WhatsApp still uses
for old accounts) or create one (source ``whatsapp``, first stage, the organization's
assignment rule), store the messages with their timeline activities, mark template responses,
and emit ``message.received`` for each -- a few statements for the whole batch, not a dozen
per message. Then the delivery statuses (``whatsapp.apply_status``) and connection changes.

Order: a message's ``created_at`` is the moment its webhook was acknowledged (a microsecond
apart within one webhook), so a conversation lists its messages in the order they arrived,
whichever batch stores them first; a redelivery stored before its first delivery takes the
first delivery's moment when that one comes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.events import DomainEvent, emit, hold_live, release_live
from lovedcrm.core.phones import is_e164
from lovedcrm.jobs.queue import enqueue
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.activities import NewActivity, record_activities
from lovedcrm.leads.models import Lead
from lovedcrm.messaging.models import Message, WhatsappConfig
from lovedcrm.messaging.providers.base import MESSAGE_PROVIDER_TYPE, InboundMessage, ParsedWebhook
from lovedcrm.messaging.whatsapp import (
    Processed,
    apply_status,
    conversation_for,
    mark_template_responses,
    preview,
)


@dataclass(frozen=True)
class Webhook:
    """One verified webhook of an organization, parsed, for :func:`process_webhooks`."""

    config: WhatsappConfig
    parsed: ParsedWebhook
    # When the app acknowledged it: its messages' ``created_at``, so a conversation shows
    # them in the order they arrived, whenever and in whichever batch they are processed.
    received_at: datetime | None = None


@dataclass(frozen=True)
class _Arrival:
    webhook: int  # its position in the webhooks processed together
    position: int  # its position in its webhook
    msg: InboundMessage
    provider_type: str
    config_id: uuid.UUID
    received_at: datetime | None
    phone: str | None  # E.164, or None: not a phone number (kept unlinked)

    def lock_key(self, org_id: uuid.UUID) -> str:
        if self.phone is None:
            return f"wa-unlinked:{org_id}:{self.provider_type}:{self.msg.provider_message_id}"
        return f"wa-sender:{org_id}:{self.phone}"


# Advisory locks on many keys in one statement, in one global order (of the lock ids), so
# two batches that share keys wait for each other and never deadlock.
_LOCK_ALL = text(
    "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(x, 0) AS k"
    " FROM unnest(CAST(:keys AS text[])) AS x) AS ks ORDER BY k"
)
# Inbound messages, one INSERT for a batch: the rows as one JSON array (one parameter, one
# statement text whatever the number of rows, so it is parsed and planned once).
_INSERT_INBOUND = text(
    """
    INSERT INTO messages
        (id, organization_id, lead_id, conversation_id, provider_type, provider_message_id,
         direction, message_type, content, from_number, to_number, contact_name, status,
         delivered_at, metadata, created_at)
    SELECT r.id, :org, r.lead_id, r.conversation_id, r.provider_type, r.provider_message_id,
           'inbound', r.message_type, r.content, r.from_number, r.to_number, r.contact_name,
           'delivered', r.delivered_at, r.metadata, COALESCE(r.created_at, now())
      FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
           id uuid, lead_id uuid, conversation_id uuid, provider_type text,
           provider_message_id text, message_type text, content text, from_number text,
           to_number text, contact_name text, delivered_at timestamptz, metadata jsonb,
           created_at timestamptz)
    """
)
_ARRIVED_EARLIER = text(
    """
    UPDATE messages AS m SET created_at = d.at
      FROM unnest(CAST(:ptypes AS text[]), CAST(:pmids AS text[]), CAST(:ats AS timestamptz[]))
           AS d(ptype, pmid, at)
     WHERE m.organization_id = :org AND m.provider_type = d.ptype
       AND m.provider_message_id = d.pmid AND m.direction = 'inbound' AND m.created_at > d.at
    """
)


async def _lock_all(session: AsyncSession, keys: Sequence[str]) -> None:
    if keys:
        await session.execute(_LOCK_ALL, {"keys": list(keys)})


async def process_webhooks(
    session: AsyncSession, org_id: uuid.UUID, webhooks: Sequence[Webhook]
) -> list[Processed]:
    """Everything ``webhooks`` (of one organization, in the order they were received) say,
    with a few statements for all of them: their messages, then their delivery statuses,
    then their connection changes. One ``Processed`` per webhook."""
    counts = [Processed() for _ in webhooks]
    hold_live(session)  # the live pages' notes go out in one statement at the end
    await _store_messages(session, org_id, webhooks, counts)
    statuses = [
        (i, MESSAGE_PROVIDER_TYPE[w.config.provider_type], st)
        for i, w in enumerate(webhooks)
        for st in w.parsed.statuses
    ]
    await _lock_all(
        session, [f"wa-msg:{org_id}:{ptype}:{st.provider_message_id}" for _, ptype, st in statuses]
    )
    for i, ptype, st in statuses:
        await apply_status(session, org_id, ptype, st, counts[i], locked=True)
    for w in webhooks:
        for s in w.parsed.sessions:
            w.config.connection_status = {"qr": "disconnected"}.get(s.status, s.status)
            if s.status == "connected":
                w.config.last_connected_at = datetime.now(UTC)
            w.config.updated_at = datetime.now(UTC)
    await session.flush()
    await release_live(session)
    return counts


async def _store_messages(
    session: AsyncSession,
    org_id: uuid.UUID,
    webhooks: Sequence[Webhook],
    counts: list[Processed],
) -> None:
    """Store each inbound message once (providers redeliver), under locks on the senders:
    find or create the sender's lead (one read of the candidates for all), insert the
    messages and their timeline entries in one statement each, mark template responses,
    emit ``message.received`` and queue media downloads. A sender that is not an E.164
    number is no one's phone: its message is kept unlinked (no lead, no conversation, no
    event, no download) for review."""
    arrivals = [
        _Arrival(
            webhook=i,
            position=k,
            msg=msg,
            provider_type=MESSAGE_PROVIDER_TYPE[w.config.provider_type],
            config_id=w.config.id,
            received_at=w.received_at,
            phone=msg.from_number if is_e164(msg.from_number) else None,
        )
        for i, w in enumerate(webhooks)
        for k, msg in enumerate(w.parsed.messages)
    ]
    if not arrivals:
        return
    await _lock_all(session, [a.lock_key(org_id) for a in arrivals])
    stored = await session.execute(
        select(Message.provider_type, Message.provider_message_id).where(
            Message.organization_id == org_id,
            Message.provider_type.in_(sorted({a.provider_type for a in arrivals})),
            Message.provider_message_id.in_(sorted({a.msg.provider_message_id for a in arrivals})),
        )
    )
    known: set[tuple[str, str]] = {(r[0], str(r[1])) for r in stored}
    seen: set[tuple[str, str]] = set(known)
    fresh: list[_Arrival] = []
    # A redelivery stored first (another batch ran first) and its first delivery here: the
    # message keeps the earliest arrival.
    earlier: dict[tuple[str, str], datetime] = {}
    for a in arrivals:
        key = (a.provider_type, a.msg.provider_message_id)
        if key in seen:
            counts[a.webhook].duplicates += 1
            if key in known and a.received_at is not None:
                at = a.received_at + timedelta(microseconds=a.position)
                earlier[key] = min(at, earlier.get(key, at))
            continue
        seen.add(key)
        fresh.append(a)
    if earlier:
        await session.execute(
            _ARRIVED_EARLIER,
            {
                "org": org_id,
                "ptypes": [k[0] for k in earlier],
                "pmids": [k[1] for k in earlier],
                "ats": list(earlier.values()),
            },
        )
    linked = [a for a in fresh if a.phone is not None]
    found = await leads_service.leads_for_senders(
        session,
        org_id,
        [(str(a.phone), a.msg.contact_name) for a in linked],
        source="whatsapp",
    )
    leads = {id(a): lead for a, (lead, _) in zip(linked, found, strict=True)}
    for a, (_, created) in zip(linked, found, strict=True):
        counts[a.webhook].leads_created += int(created)
    rows = [_message_row(org_id, a, leads.get(id(a))) for a in fresh]
    if rows:
        await session.execute(
            _INSERT_INBOUND, {"org": org_id, "rows": json.dumps(rows, default=_json_value)}
        )
    ids = {id(a): row["id"] for a, row in zip(fresh, rows, strict=True)}
    await record_activities(
        session,
        [
            NewActivity(
                leads[id(a)],
                activity_type="message",
                title="WhatsApp message received",
                description=preview(a.msg.content) or f"[{a.msg.message_type}]",
                metadata={"message_id": str(ids[id(a)]), "direction": "inbound"},
            )
            for a in linked
        ],
    )
    await mark_template_responses(session, org_id, {lead.id for lead in leads.values()})
    for n, a in enumerate(linked):
        if n % 10 == 9:
            await asyncio.sleep(0)  # other work of this process (acknowledgements) runs too
        await emit(
            session,
            DomainEvent(
                type="message.received",
                organization_id=org_id,
                data={
                    "message_id": str(ids[id(a)]),
                    "lead_id": str(leads[id(a)].id),
                    "from": a.phone,
                    "message_type": a.msg.message_type,
                    "content": a.msg.content,
                },
            ),
        )
        if a.msg.media is not None:
            await enqueue(
                session, "whatsapp.media", {"message_id": ids[id(a)]}, organization_id=org_id
            )
        counts[a.webhook].messages += 1
    for a in fresh:
        if a.phone is None:
            counts[a.webhook].unlinked += 1


def _json_value(value: Any) -> str:
    """Values ``json`` does not know, as PostgreSQL reads them back (uuid, timestamptz)."""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _message_row(org_id: uuid.UUID, a: _Arrival, lead: Lead | None) -> dict[str, Any]:
    """The ``messages`` row of an arrival (``lead`` None: unlinked), as ``_INSERT_INBOUND``
    takes it."""
    msg = a.msg
    metadata: dict[str, Any] = dict(msg.metadata)
    if lead is None:
        metadata["unlinked"] = "the sender is not a phone number"
        metadata["sender"] = (msg.sender or msg.from_number or "")[:255]
    metadata["provider_timestamp"] = msg.timestamp.isoformat()
    metadata["config_id"] = str(a.config_id)
    if msg.reply_to and lead is not None:
        metadata["reply_to"] = msg.reply_to
    if msg.media is not None and lead is None:
        metadata["media"] = {
            k: v for k, v in (("media_id", msg.media.media_id), ("url", msg.media.url)) if v
        }
        metadata["attachment_status"] = "not downloaded (unlinked)"
    elif msg.media is not None:
        metadata["media"] = {
            k: v
            for k, v in (
                ("media_id", msg.media.media_id),
                ("url", msg.media.url),
                ("mime_type", msg.media.mime_type),
                ("filename", msg.media.filename),
                ("sha256", msg.media.sha256),
            )
            if v
        }
        metadata["attachment_status"] = "downloading"
    return {
        "id": uuid.uuid4(),
        "lead_id": lead.id if lead is not None else None,
        "conversation_id": conversation_for(org_id, a.phone) if a.phone is not None else None,
        "provider_type": a.provider_type,
        "provider_message_id": msg.provider_message_id,
        "message_type": msg.message_type,
        "content": msg.content,
        "from_number": a.phone,
        "to_number": msg.to_number,
        "contact_name": msg.contact_name,
        # Inbound: "delivered" (set by the INSERT) until someone opens the conversation.
        "delivered_at": msg.timestamp,
        "metadata": metadata,
        # Arrival order (a microsecond apart within one webhook); now() if not known.
        "created_at": (
            a.received_at + timedelta(microseconds=a.position) if a.received_at else None
        ),
    }
