"""WhatsApp messages: webhooks in, the inbox's conversations, sends out, delivery statuses.

Inbound: the webhook route (``webhook_ingest``) verifies the provider's signature and stores
the raw body as a ``whatsapp.inbound`` job, then answers 200; the jobs store the messages
(``inbound``). Here: what inbound and outbound share.

Statuses are applied under a lock on the provider message id: to the message when it exists,
else to ``whatsapp_status_backlog``, which is applied when the send job records the id. A
status never moves a message backwards (sent < delivered < read; failed unless read), so
statuses arriving out of order leave the right result.

Outbound: ``send_message`` checks the lead, the active provider and (Cloud API) the 24-hour
window before anything is stored, then stores the message as ``pending`` and queues a
``whatsapp.send`` job. The job resolves the active configuration when it runs — messages
queued during a provider switch leave through the new provider — and respects the
configuration's rate limits.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth.models import User
from lovedcrm.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from lovedcrm.core.events import DomainEvent, emit, notify_live
from lovedcrm.core.principal import Principal
from lovedcrm.jobs.queue import enqueue
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.activities import record_activity
from lovedcrm.leads.models import Lead, PipelineStage
from lovedcrm.messaging import templates as templates_service
from lovedcrm.messaging.models import (
    Message,
    MessageTemplate,
    TemplateUsageStat,
    WhatsappStatusBacklog,
)
from lovedcrm.messaging.providers.base import (
    MESSAGE_PROVIDER_TYPE,
    StatusUpdate,
)
from lovedcrm.messaging.providers.cloud import error_message
from lovedcrm.messaging.whatsapp_configs import active_config
from lovedcrm.organizations.models import Organization

WINDOW = timedelta(hours=24)
WHATSAPP_TYPES = tuple(MESSAGE_PROVIDER_TYPE.values())
_RANK = "array_position(ARRAY['pending','sent','delivered','read']::text[], CAST({col} AS text))"


def conversation_for(organization_id: uuid.UUID, phone: str) -> uuid.UUID:
    return uuid.uuid5(organization_id, "whatsapp:" + phone)


async def _lock(session: AsyncSession, key: str) -> None:
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})


# --- inbound statuses (the messages themselves: ``inbound``) -------------------------------


@dataclass
class Processed:
    """What the webhooks of one job did (its result)."""

    messages: int = 0
    duplicates: int = 0
    statuses: int = 0
    backlogged: int = 0
    leads_created: int = 0
    unlinked: int = 0


def preview(text_: str | None, limit: int = 120) -> str:
    """A message's text as one short line (its timeline entry)."""
    value = (text_ or "").strip().replace("\n", " ")
    return value if len(value) <= limit else value[: limit - 1] + "…"


_APPLY_STATUS = text(
    f"""
    UPDATE messages SET
        status = CASE
            WHEN :status = 'failed' THEN CASE WHEN status = 'read' THEN status ELSE 'failed' END
            WHEN status = 'failed' THEN status
            WHEN COALESCE({_RANK.format(col=":status")}, 0)
                 > COALESCE({_RANK.format(col="status")}, 0) THEN :status
            ELSE status END,
        delivered_at = CASE WHEN :status IN ('delivered', 'read')
                            THEN COALESCE(delivered_at, :at) ELSE delivered_at END,
        read_at = CASE WHEN :status = 'read' THEN COALESCE(read_at, :at) ELSE read_at END,
        failed_reason = CASE WHEN :status = 'failed' AND status <> 'read'
                             THEN :reason ELSE failed_reason END,
        updated_at = now()
    WHERE organization_id = :org AND provider_type = :ptype AND provider_message_id = :pmid
    RETURNING id, lead_id, status
    """
)


def _reason(update_: StatusUpdate) -> str | None:
    if update_.status != "failed":
        return None
    known = error_message(update_.error_code) if update_.error_code else None
    parts = [p for p in (update_.error_message, known) if p]
    text_ = " — ".join(dict.fromkeys(parts)) or "The provider could not deliver the message."
    return f"[{update_.error_code}] {text_}" if update_.error_code else text_


async def apply_status(
    session: AsyncSession,
    org_id: uuid.UUID,
    provider_type: str,
    update_: StatusUpdate,
    counts: Processed | None = None,
    *,
    locked: bool = False,
) -> bool:
    """Apply a delivery status; keep it for later when its message is not known yet.
    ``locked``: the caller already holds the message id's lock."""
    if not locked:
        await _lock(session, f"wa-msg:{org_id}:{provider_type}:{update_.provider_message_id}")
    row = (
        await session.execute(
            _APPLY_STATUS,
            {
                "status": update_.status,
                "at": update_.timestamp,
                "reason": _reason(update_),
                "org": org_id,
                "ptype": provider_type,
                "pmid": update_.provider_message_id,
            },
        )
    ).first()
    if row is None:
        session.add(
            WhatsappStatusBacklog(
                organization_id=org_id,
                provider_type=provider_type,
                provider_message_id=update_.provider_message_id,
                status=update_.status,
                occurred_at=update_.timestamp,
                error_code=update_.error_code,
                error_message=update_.error_message,
            )
        )
        await session.flush()
        if counts:
            counts.backlogged += 1
        return False
    if counts:
        counts.statuses += 1
    await emit(
        session,
        DomainEvent(
            type="message.status_changed",
            organization_id=org_id,
            data={
                "message_id": str(row.id),
                "lead_id": str(row.lead_id) if row.lead_id else None,
                "status": row.status,
            },
        ),
    )
    return True


async def _apply_backlog(
    session: AsyncSession, org_id: uuid.UUID, provider_type: str, provider_message_id: str
) -> None:
    """Statuses that arrived before this message's id was known (caller holds the lock)."""
    rows = (
        (
            await session.execute(
                select(WhatsappStatusBacklog)
                .where(
                    WhatsappStatusBacklog.organization_id == org_id,
                    WhatsappStatusBacklog.provider_type == provider_type,
                    WhatsappStatusBacklog.provider_message_id == provider_message_id,
                )
                .order_by(WhatsappStatusBacklog.occurred_at)
            )
        )
        .scalars()
        .all()
    )
    for b in rows:
        await session.execute(
            _APPLY_STATUS,
            {
                "status": b.status,
                "at": b.occurred_at,
                "reason": _reason(
                    StatusUpdate(
                        provider_message_id=b.provider_message_id,
                        status=b.status,  # type: ignore[arg-type]
                        timestamp=b.occurred_at,
                        error_code=b.error_code,
                        error_message=b.error_message,
                    )
                ),
                "org": org_id,
                "ptype": provider_type,
                "pmid": provider_message_id,
            },
        )
        await session.delete(b)
    await session.flush()


async def record_sent(
    session: AsyncSession,
    org_id: uuid.UUID,
    msg: Message,
    provider_message_id: str,
    metadata: dict[str, Any],
) -> None:
    """The provider accepted a message: keep its id and apply any status that came first."""
    await _lock(session, f"wa-msg:{org_id}:{msg.provider_type}:{provider_message_id}")
    metadata.pop("last_error", None)
    metadata["sent_at"] = datetime.now(UTC).isoformat()
    msg.metadata_ = metadata
    msg.provider_message_id = provider_message_id
    if msg.status == "pending":
        msg.status = "sent"
    msg.updated_at = datetime.now(UTC)
    await session.flush()
    await _apply_backlog(session, org_id, msg.provider_type, provider_message_id)
    await session.refresh(msg)
    await emit(
        session,
        DomainEvent(
            type="message.sent",
            organization_id=org_id,
            data={
                "message_id": str(msg.id),
                "lead_id": str(msg.lead_id) if msg.lead_id else None,
                "to": msg.to_number,
                "status": msg.status,
                "content": msg.content,
            },
        ),
    )


# --- template statistics ---------------------------------------------------------------------


async def _refresh_success_rates(session: AsyncSession, template_ids: set[uuid.UUID]) -> None:
    """success_rate = share of a template's uses that got an answer from the lead."""
    for tid in template_ids:
        await session.execute(
            text(
                """
                UPDATE message_templates t SET
                    usage_count = s.uses,
                    success_rate = CASE WHEN s.uses = 0 THEN 0
                                        ELSE s.answered::float / s.uses END,
                    updated_at = now()
                  FROM (SELECT count(*) AS uses,
                               count(*) FILTER (WHERE response_received) AS answered
                          FROM template_usage_stats WHERE template_id = :t) s
                 WHERE t.id = :t
                """
            ),
            {"t": tid},
        )


async def mark_template_responses(
    session: AsyncSession, org_id: uuid.UUID, lead_ids: Collection[uuid.UUID]
) -> None:
    """The leads answered: the templates used with them got a response."""
    if not lead_ids:
        return
    rows = await session.execute(
        text(
            """
            UPDATE template_usage_stats SET
                response_received = true,
                response_time_minutes = GREATEST(0,
                    (EXTRACT(EPOCH FROM (now() - created_at)) / 60)::int)
             WHERE organization_id = :org AND lead_id = ANY(CAST(:leads AS uuid[]))
               AND NOT response_received
             RETURNING template_id
            """
        ),
        {"org": org_id, "leads": sorted(lead_ids)},
    )
    await _refresh_success_rates(session, {r.template_id for r in rows})


async def record_template_use(
    session: AsyncSession,
    principal: Principal,
    template_id: uuid.UUID,
    lead_id: uuid.UUID,
    *,
    context_type: str = "ai_suggested",
) -> MessageTemplate:
    """A template's text was used with the lead outside ``send_message`` (a suggested reply
    picked in the inbox): one more use, answered when the lead next writes."""
    template = await templates_service.get_template(session, principal, template_id)
    session.add(
        TemplateUsageStat(
            organization_id=principal.org(),
            template_id=template.id,
            user_id=principal.user_id,
            lead_id=lead_id,
            context_type=context_type,
        )
    )
    await session.flush()
    await _refresh_success_rates(session, {template.id})
    await session.refresh(template)
    return template


async def choose_variant(
    session: AsyncSession, template: MessageTemplate, *, approved_only: bool = False
) -> MessageTemplate:
    """An A/B family (the original and its active variants) is used evenly: the least used
    member is chosen, ties at random. The original's row lock serializes concurrent picks.
    ``approved_only`` (outside the 24-hour window): only members mapped to a Meta template."""
    root_id = template.parent_template_id or template.id
    await session.execute(
        select(MessageTemplate.id).where(MessageTemplate.id == root_id).with_for_update()
    )
    family = (
        (
            await session.execute(
                select(MessageTemplate).where(
                    MessageTemplate.organization_id == template.organization_id,
                    MessageTemplate.is_active.is_(True),
                    (MessageTemplate.id == root_id)
                    | (MessageTemplate.parent_template_id == root_id),
                )
            )
        )
        .scalars()
        .all()
    )
    if approved_only:
        family = [t for t in family if t.whatsapp_template_name]
    if not family:
        return template
    fewest = min(t.usage_count or 0 for t in family)
    candidates = [t for t in family if (t.usage_count or 0) == fewest]
    return random.choice(candidates)  # noqa: S311 - an even split, not a secret


# --- outbound ------------------------------------------------------------------------------


async def last_inbound_at(session: AsyncSession, lead_id: uuid.UUID) -> datetime | None:
    result = await session.execute(
        select(func.max(Message.created_at)).where(
            Message.lead_id == lead_id,
            Message.direction == "inbound",
            Message.provider_type.in_(WHATSAPP_TYPES),
        )
    )
    return result.scalar_one_or_none()


@dataclass(frozen=True)
class WindowState:
    applies: bool
    open: bool
    closes_at: datetime | None
    last_inbound_at: datetime | None


async def window_state(session: AsyncSession, kind: str | None, lead_id: uuid.UUID) -> WindowState:
    """Meta's customer-service window: free-form messages only within 24 hours of the
    customer's last message (Cloud API only; the other providers have no such rule)."""
    last = await last_inbound_at(session, lead_id)
    if kind != "business_api":
        return WindowState(False, True, None, last)
    if last is None:
        return WindowState(True, False, None, None)
    closes = last + WINDOW
    return WindowState(True, closes > datetime.now(UTC), closes, last)


async def send_message(
    session: AsyncSession,
    principal: Principal,
    lead_id: uuid.UUID,
    *,
    content: str | None = None,
    template_id: uuid.UUID | None = None,
    reply_to_message_id: uuid.UUID | None = None,
    context_type: str = "manual",
) -> Message:
    principal.require("messages:write")
    if bool(content) == bool(template_id):
        raise ValidationFailed(
            "Send either a text (content) or a template (template_id).",
            extra={"errors": [{"field": "content", "message": "give content or template_id"}]},
        )
    lead = await leads_service.get_lead(session, principal, lead_id)
    # Members message the leads they may edit; an organization's key with messages:write
    # messages any of its leads.
    if principal.via != "api_key" and not leads_service.may_edit(principal, lead):
        raise NotFound("No lead with that id.", code="lead_not_found")
    if not lead.phone:
        raise ValidationFailed(
            "This lead has no phone number to send WhatsApp messages to.",
            code="lead_without_phone",
            extra={"errors": [{"field": "phone", "message": "the lead has no phone"}]},
        )
    org_id = principal.org()
    config = await active_config(session, org_id)
    if config is None:
        raise Conflict(
            "WhatsApp is not set up: add and activate a provider in Settings → WhatsApp.",
            code="whatsapp_not_configured",
        )
    org = await session.get(Organization, org_id)
    metadata: dict[str, Any] = {"sent_by": str(principal.user_id)}
    template: MessageTemplate | None = None
    window = await window_state(session, config.provider_type, lead.id)
    if template_id is not None:
        chosen = await templates_service.get_template(session, principal, template_id)
        if not chosen.is_active:
            raise ValidationFailed("This template is inactive.", code="template_inactive")
        template = await choose_variant(
            session, chosen, approved_only=window.applies and not window.open
        )
        stage = await session.get(PipelineStage, lead.stage_id)
        assignee = await session.get(User, lead.assigned_to) if lead.assigned_to else None
        content = templates_service.render(template, lead, org, stage=stage, assignee=assignee)
        metadata["template"] = {
            "id": str(template.id),
            "name": template.name,
            "requested_id": str(template_id),
            "whatsapp_template_name": template.whatsapp_template_name,
            "language": template.whatsapp_language,
            "parameters": _template_parameters(template, lead, org, stage, assignee),
        }
    if window.applies and not window.open:
        approved = template is not None and template.whatsapp_template_name
        if not approved:
            since = (
                f"the customer's last message was at {window.last_inbound_at:%Y-%m-%d %H:%M} UTC"
                if window.last_inbound_at
                else "the customer has never written"
            )
            raise ValidationFailed(
                "Outside WhatsApp's 24-hour window: only an approved template (a template "
                f"mapped to a Meta template name) can be sent now; {since}.",
                code="outside_window",
                extra={
                    "last_inbound_at": window.last_inbound_at.isoformat()
                    if window.last_inbound_at
                    else None
                },
            )
    if reply_to_message_id is not None:
        original = await session.get(Message, reply_to_message_id)
        if original is None or original.lead_id != lead.id:
            raise NotFound("The message to reply to was not found in this conversation.")
        if original.provider_message_id:
            metadata["reply_to"] = original.provider_message_id
    message = Message(
        id=uuid.uuid4(),
        organization_id=org_id,
        lead_id=lead.id,
        conversation_id=conversation_for(org_id, lead.phone),
        provider_type=MESSAGE_PROVIDER_TYPE[config.provider_type],
        direction="outbound",
        message_type="template" if template is not None else "text",
        content=content,
        to_number=lead.phone,
        contact_name=lead.full_name,
        status="pending",
        metadata_=metadata,
    )
    session.add(message)
    await session.flush()
    if template is not None:
        session.add(
            TemplateUsageStat(
                organization_id=org_id,
                template_id=template.id,
                user_id=principal.user_id,
                lead_id=lead.id,
                used_in_message_id=message.id,
                context_type=context_type,
            )
        )
        await session.flush()
        await _refresh_success_rates(session, {template.id})
    await record_activity(
        session,
        lead,
        user_id=principal.user_id,
        activity_type="message",
        title="WhatsApp message sent",
        description=preview(content),
        metadata={"message_id": str(message.id), "direction": "outbound"},
    )
    await enqueue(
        session,
        "whatsapp.send",
        {"message_id": message.id},
        organization_id=org_id,
        max_attempts=8,
    )
    return message


def _template_parameters(
    template: MessageTemplate,
    lead: Lead,
    org: Organization | None,
    stage: PipelineStage | None,
    assignee: User | None,
) -> list[str]:
    """The values of the template's placeholders in order: Meta's {{1}}, {{2}}, …"""
    values: list[str] = []
    for match in templates_service.PLACEHOLDER.finditer(template.content):
        values.append(
            templates_service.render(match.group(0), lead, org, stage=stage, assignee=assignee)
        )
    return values


def may_mark_read(principal: Principal, lead: Lead) -> bool:
    """Whether ``principal`` may mark ``lead``'s conversation read (as for sending to it)."""
    return principal.can("messages:write") and (
        principal.via == "api_key" or leads_service.may_edit(principal, lead)
    )


async def mark_conversation_read(
    session: AsyncSession, principal: Principal, lead_id: uuid.UUID
) -> int:
    """Opening a conversation reads its inbound messages. Reading changes the unread counts
    the whole team works from: it needs what answering needs (``messages:write`` and, for a
    member, a lead they may edit); a viewer only looks."""
    principal.require("messages:write")
    lead = await leads_service.get_lead(session, principal, lead_id)  # visibility
    if not may_mark_read(principal, lead):
        raise Forbidden(
            "Only members who may answer this conversation can mark it read.",
            code="permission_denied",
            extra={"permission": "messages:write"},
        )
    result = await session.execute(
        text(
            """
            UPDATE messages SET status = 'read', read_at = COALESCE(read_at, now()),
                   updated_at = now()
             WHERE organization_id = :org AND lead_id = :lead AND direction = 'inbound'
               AND status <> 'read'
            RETURNING id
            """
        ),
        {"org": principal.org(), "lead": lead_id},
    )
    count = len(result.all())
    if count:
        await notify_live(session, principal.org(), "conversation.read", lead_id=lead_id)
    return count
