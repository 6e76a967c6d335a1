"""What leads do when other domains change: a new organization starts with the
default stages (spec §12.2), named in its language."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.events import DomainEvent, subscriber
from lovedcrm.leads.models import PipelineStage
from lovedcrm.web.i18n import DEFAULT_LOCALE, N_, catalog_name, translations

# (name, order, stage_type, color); names are msgids, stored in the organization's language.
DEFAULT_STAGES = [
    (N_("Lead"), 1, "lead", "#ef4444"),
    (N_("Contact"), 2, "contact", "#f97316"),
    (N_("Proposal"), 3, "proposal", "#eab308"),
    (N_("Negotiation"), 4, "negotiation", "#22c55e"),
    (N_("Closed"), 5, "closed", "#6366f1"),
]


def default_stage_names(locale: str | None) -> list[str]:
    """The default stage names in ``locale`` (a tag such as ``pt-BR`` or ``en``)."""
    catalog = translations(catalog_name(locale) or DEFAULT_LOCALE)
    return [catalog.gettext(name) for name, *_ in DEFAULT_STAGES]


@subscriber("organization.created")
async def add_default_stages(session: AsyncSession, event: DomainEvent) -> None:
    names = default_stage_names(str(event.data.get("locale") or ""))
    for name, (_, order, stage_type, color) in zip(names, DEFAULT_STAGES, strict=True):
        session.add(
            PipelineStage(
                organization_id=event.organization_id,
                name=name,
                stage_order=order,
                stage_type=stage_type,
                color=color,
            )
        )
