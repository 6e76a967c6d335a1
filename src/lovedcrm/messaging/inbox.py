"""The inbox's reads: conversations (one per lead with messages) and a lead's messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.errors import NotFound
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.principal import Principal
from lovedcrm.leads import service as leads_service
from lovedcrm.messaging.models import Message, MessageAttachment

Filter = Literal["all", "mine", "unassigned", "urgent", "negative"]

# The conversation's latest message from the customer (its scores are kept by the assistant).
_LAST_INBOUND = (
    "(SELECT mi.{column} FROM messages mi WHERE mi.organization_id = :org"
    " AND mi.lead_id = c.lead_id AND mi.direction = 'inbound'"
    " ORDER BY mi.created_at DESC LIMIT 1)"
)
URGENT_AT = 50  # urgency_score
NEGATIVE_BELOW = -0.05  # sentiment_score

# One row per conversation in ``inbox_conversations`` (kept by triggers on ``messages``,
# migration 0010), newest first on its index; the last message is read by id.
_CONVERSATIONS = """
    SELECT l.id AS lead_id, l.full_name AS lead_name, l.phone, l.assigned_to,
           m.content AS last_message, m.direction AS last_direction,
           m.status AS last_status, m.message_type AS last_type,
           c.last_message_at, c.unread_count AS unread
      FROM inbox_conversations c
      JOIN leads l ON l.id = c.lead_id AND l.organization_id = :org
      JOIN messages m ON m.id = c.last_message_id AND m.organization_id = :org
     WHERE c.organization_id = :org AND {where}
     ORDER BY c.last_message_at DESC, c.lead_id
     LIMIT :limit
"""


async def conversations(
    session: AsyncSession,
    principal: Principal,
    *,
    which: Filter = "all",
    before: datetime | None = None,
    limit: int = 50,
    unread_only: bool = False,
) -> list[dict[str, Any]]:
    """Newest first. Without ``leads:read_all`` only the member's own leads."""
    principal.require("messages:read")
    where = ["TRUE"]
    params: dict[str, Any] = {"org": principal.org(), "limit": limit}
    if not principal.can("leads:read_all") or which == "mine":
        where.append("l.assigned_to = :me")
        params["me"] = principal.user_id
    if which == "unassigned":
        where.append("l.assigned_to IS NULL")
    if which == "urgent":
        where.append(_LAST_INBOUND.format(column="urgency_score") + f" >= {URGENT_AT}")
    if which == "negative":
        where.append(_LAST_INBOUND.format(column="sentiment_score") + f" <= {NEGATIVE_BELOW}")
    if unread_only:
        where.append("c.unread_count > 0")
    if before is not None:
        where.append("c.last_message_at < :before")
        params["before"] = before
    rows = await session.execute(text(_CONVERSATIONS.format(where=" AND ".join(where))), params)
    return [dict(r._mapping) for r in rows]


async def unread_total(session: AsyncSession, principal: Principal) -> int:
    """Unread inbound messages on the leads the member sees (the navigation's badge)."""
    principal.require("messages:read")
    own = (
        ""
        if principal.can("leads:read_all")
        else " AND c.lead_id IN (SELECT id FROM leads WHERE organization_id = :org"
        " AND assigned_to = :me)"
    )
    count = await session.execute(
        text(
            "SELECT COALESCE(sum(c.unread_count), 0) FROM inbox_conversations c"
            " WHERE c.organization_id = :org AND c.unread_count > 0" + own
        ),
        {"org": principal.org(), "me": principal.user_id},
    )
    return int(count.scalar_one())


async def messages(
    session: AsyncSession,
    principal: Principal,
    lead_id: uuid.UUID,
    *,
    before: datetime | None = None,
    limit: int = 50,
) -> list[tuple[Message, list[MessageAttachment]]]:
    """The lead's messages, oldest first (the last ``limit`` before ``before``)."""
    principal.require("messages:read")
    await leads_service.get_lead(session, principal, lead_id)  # 404 unless visible
    query = select(Message).where(
        Message.organization_id == principal.org(), Message.lead_id == lead_id
    )
    if before is not None:
        query = query.where(Message.created_at < before)
    rows = list(
        (await session.execute(query.order_by(Message.created_at.desc()).limit(limit)))
        .scalars()
        .all()
    )
    rows.reverse()
    files: dict[uuid.UUID, list[MessageAttachment]] = {m.id: [] for m in rows}
    if rows:
        found = await session.execute(
            select(MessageAttachment)
            .where(MessageAttachment.message_id.in_(list(files)))
            .order_by(MessageAttachment.created_at)
        )
        for a in found.scalars():
            files[a.message_id].append(a)
    return [(m, files[m.id]) for m in rows]


async def get_message(
    session: AsyncSession, principal: Principal, message_id: uuid.UUID
) -> tuple[Message, list[MessageAttachment]]:
    principal.require("messages:read")
    msg = await session.get(Message, message_id)
    if msg is None or msg.organization_id != principal.org() or msg.lead_id is None:
        raise NotFound("Message not found.")
    await leads_service.get_lead(session, principal, msg.lead_id)
    found = await session.execute(
        select(MessageAttachment).where(MessageAttachment.message_id == msg.id)
    )
    return msg, list(found.scalars())


async def attachment(
    session: AsyncSession, principal: Principal, attachment_id: uuid.UUID
) -> MessageAttachment:
    """An attachment, for members who can see its lead (RLS keeps other organizations out)."""
    principal.require("messages:read")
    row = await get_in_org(
        session, MessageAttachment, attachment_id, principal, NotFound("Attachment not found.")
    )
    msg = await session.get(Message, row.message_id)
    if msg is None or msg.lead_id is None:
        raise NotFound("Attachment not found.")
    await leads_service.get_lead(session, principal, msg.lead_id)
    return row
