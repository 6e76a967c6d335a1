"""What messaging does when other domains change, in the same transaction:

- ``organization.created``: the default message templates;
- ``lead.converted``: every template used with the lead is marked ``led_to_conversion``.
"""

from __future__ import annotations

import uuid

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.events import DomainEvent, subscriber
from lovedcrm.messaging.models import MessageTemplate, TemplateUsageStat

DEFAULT_TEMPLATES = [
    (
        "Saudação Inicial",
        "greeting",
        "Olá {{lead_name}}! Obrigado pelo seu interesse em nossos serviços.",
    ),
    (
        "Follow-up",
        "follow_up",
        "Oi {{lead_name}}, como está? Gostaria de saber se teve tempo de avaliar nossa proposta.",
    ),
    (
        "Fechamento",
        "closing",
        "Perfeito {{lead_name}}! Vamos dar início ao projeto. Quando podemos agendar uma reunião?",
    ),
]


@subscriber("organization.created")
async def add_default_templates(session: AsyncSession, event: DomainEvent) -> None:
    for name, category, content in DEFAULT_TEMPLATES:
        session.add(
            MessageTemplate(
                organization_id=event.organization_id,
                created_by=uuid.UUID(event.data["owner_id"]),
                name=name,
                category=category,
                content=content,
                variables=[{"name": "lead_name", "type": "string"}],
            )
        )


@subscriber("lead.converted")
async def mark_conversion(session: AsyncSession, event: DomainEvent) -> None:
    """A won lead: every template used with it gets ``led_to_conversion``."""
    await session.execute(
        update(TemplateUsageStat)
        .where(
            TemplateUsageStat.organization_id == event.organization_id,
            TemplateUsageStat.lead_id == uuid.UUID(event.data["lead_id"]),
        )
        .values(led_to_conversion=True)
    )
