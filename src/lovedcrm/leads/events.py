"""What leads do when other domains change: a new organization starts with the
default stages (spec §12.2), named in its language."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.events import DomainEvent, subscriber
from lovedcrm.leads.models import PipelineStage

# (name, order, stage_type, color)
DEFAULT_STAGES = [
    ("Lead", 1, "lead", "#ef4444"),
    ("Contact", 2, "contact", "#f97316"),
    ("Proposal", 3, "proposal", "#eab308"),
    ("Negotiation", 4, "negotiation", "#22c55e"),
    ("Closed", 5, "closed", "#6366f1"),
]


@subscriber("organization.created")
async def add_default_stages(session: AsyncSession, event: DomainEvent) -> None:
    for name, order, stage_type, color in DEFAULT_STAGES:
        session.add(
            PipelineStage(
                organization_id=event.organization_id,
                name=name,
                stage_order=order,
                stage_type=stage_type,
                color=color,
            )
        )
