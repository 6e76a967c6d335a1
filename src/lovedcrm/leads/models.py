"""Leads, the pipeline stages they move through, and their activity timeline."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ColumnElement,
    Computed,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    cast,
    func,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import (
    Base,
    TenantMixin,
    created_at_col,
    jsonb_object,
    named_check,
    org_id_unique,
    same_org_fk,
    updated_at_col,
    uuid_pk,
)

BOARD_POSITION_DEFAULT = "((- EXTRACT(epoch FROM clock_timestamp())))::double precision"

LEAD_STATUSES = ("active", "inactive", "converted", "lost")

SEARCH_TEXT = (
    "lovedcrm_unaccent(lower((full_name)::text)) || ' ' "
    "|| COALESCE(lovedcrm_unaccent(lower((company)::text)), '')"
)


class PipelineStage(TenantMixin, Base):
    __tablename__ = "pipeline_stages"
    __table_args__ = (
        UniqueConstraint("organization_id", "stage_order"),
        org_id_unique("pipeline_stages"),
        named_check("color ~ '^#[0-9a-fA-F]{6}$'", "valid_color_format"),
        Index("ix_pipeline_stages_org_id", "organization_id"),
        Index("ix_pipeline_stages_org_order", "organization_id", "stage_order"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(100))
    stage_order: Mapped[int] = mapped_column(Integer)
    color: Mapped[str | None] = mapped_column(
        String(7), server_default=text("'#6366f1'"), default="#6366f1"
    )
    is_active: Mapped[bool | None] = mapped_column(
        Boolean, server_default=text("true"), default=True
    )
    stage_type: Mapped[str | None] = mapped_column(
        String(50), server_default=text("'custom'"), default="custom"
    )
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


class Lead(TenantMixin, Base):
    __tablename__ = "leads"
    __table_args__ = (
        org_id_unique("leads"),
        same_org_fk("leads", "stage_id", "pipeline_stages"),
        CheckConstraint("lead_score >= 0 AND lead_score <= 100", name="lead_score"),
        CheckConstraint(
            "probability_percentage >= 0 AND probability_percentage <= 100",
            name="probability_percentage",
        ),
        CheckConstraint("status IN ('active', 'inactive', 'converted', 'lost')", name="status"),
        named_check("lead_score >= 0 AND lead_score <= 100", "chk_lead_score_valid"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    full_name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(50))
    company: Mapped[str | None] = mapped_column(String(255))
    job_title: Mapped[str | None] = mapped_column(String(255))
    stage_id: Mapped[uuid.UUID] = mapped_column()
    assigned_to: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    source: Mapped[str | None] = mapped_column(String(100))
    lead_score: Mapped[int | None] = mapped_column(Integer, server_default=text("0"), default=0)
    score_last_calculated_at: Mapped[datetime | None] = mapped_column()
    last_activity_at: Mapped[datetime | None] = mapped_column()
    estimated_value: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    probability_percentage: Mapped[int | None] = mapped_column(
        Integer, server_default=text("0"), default=0
    )
    custom_fields: Mapped[dict[str, Any] | None] = jsonb_object()
    status: Mapped[str | None] = mapped_column(
        String(50), server_default=text("'active'"), default="active"
    )
    converted_at: Mapped[datetime | None] = mapped_column()
    lost_reason: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()
    # Place in its board column, ascending; new leads default to the top (migration 0004).
    board_position: Mapped[float] = mapped_column(
        Double, server_default=text(BOARD_POSITION_DEFAULT)
    )
    # Bumped by a trigger on every UPDATE (optimistic concurrency on the board).
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    # The folded name and company the search reads (migration 0010); never written.
    search_text: Mapped[str | None] = mapped_column(Text, Computed(SEARCH_TEXT, persisted=True))
    # Set when the person's data was erased (LGPD, migration 0022): the row stays, anonymised,
    # so reports keep their totals; jobs that would contact the lead send nothing.
    erased_at: Mapped[datetime | None] = mapped_column()


Index("ix_leads_organization_id", Lead.organization_id)
Index("ix_leads_org_stage", Lead.organization_id, Lead.stage_id)
Index("ix_leads_org_assigned", Lead.organization_id, Lead.assigned_to)
Index("ix_leads_org_score", Lead.organization_id, Lead.lead_score.desc())
Index("ix_leads_email", Lead.email, postgresql_where=text("email IS NOT NULL"))
Index("ix_leads_phone", Lead.phone, postgresql_where=text("phone IS NOT NULL"))
Index("ix_leads_org_stage_score", Lead.organization_id, Lead.stage_id, Lead.lead_score.desc())
Index(
    "ix_leads_org_assigned_active",
    Lead.organization_id,
    Lead.assigned_to,
    postgresql_where=text("status = 'active'"),
)
Index(
    "ix_leads_board",
    Lead.organization_id,
    Lead.stage_id,
    Lead.board_position,
    Lead.id,
    postgresql_where=text("status = 'active'"),
)


def sort_key(column: Any, floor: str, type_: Any) -> ColumnElement[Any]:
    """``column``, or ``floor`` (below every value it can hold) where it is NULL:
    ``GREATEST(column, floor)``, which skips NULLs. Not COALESCE: under row-level security
    PostgreSQL uses a condition on an index only when it cannot leak, and it counts COALESCE as
    an unknown function but GREATEST as a comparison of the type, so the next page's
    ``(key, id) < (…)`` stays an index condition (migration 0010)."""
    return func.greatest(column, literal_column(floor, type_), type_=type_)


NEVER = "'-infinity'::timestamptz"  # the floor of the dates (as the cursor says it: -infinity)

# The lists' orders: each has an index ``(organization_id, key, id)`` (migration 0010).
SORT_KEYS: dict[str, ColumnElement[Any]] = {
    "created_at": sort_key(Lead.created_at, NEVER, DateTime(timezone=True)),
    "updated_at": sort_key(Lead.updated_at, NEVER, DateTime(timezone=True)),
    "full_name": Lead.full_name.expression,
    "lead_score": sort_key(Lead.lead_score, "0", Integer()),
    "company": sort_key(Lead.company, "''", String()),
    "estimated_value": sort_key(Lead.estimated_value, "0", Numeric(10, 2)),  # never negative
    "last_activity_at": sort_key(Lead.last_activity_at, NEVER, DateTime(timezone=True)),
}
CREATED_KEY = SORT_KEYS["created_at"]

for _name, _key in (
    ("ix_leads_org_created", "created_at"),
    ("ix_leads_org_updated", "updated_at"),
    ("ix_leads_org_name", "full_name"),
    ("ix_leads_org_score_key", "lead_score"),
    ("ix_leads_org_company", "company"),
    ("ix_leads_org_value", "estimated_value"),
    ("ix_leads_org_activity", "last_activity_at"),
):
    Index(_name, Lead.organization_id, SORT_KEYS[_key], Lead.id)
# The default order under the filters a list is most often cut by (a member who sees only
# their own leads is always cut by assignee).
Index("ix_leads_org_stage_created", Lead.organization_id, Lead.stage_id, CREATED_KEY, Lead.id)
Index("ix_leads_org_assigned_created", Lead.organization_id, Lead.assigned_to, CREATED_KEY, Lead.id)
Index("ix_leads_org_status_created", Lead.organization_id, Lead.status, CREATED_KEY, Lead.id)


def folded(column: Any) -> ColumnElement[Any]:
    """Lower-cased, accents removed: the expression the search indexes are built on."""
    return func.lovedcrm_unaccent(func.lower(column))


# Search: trigrams of the folded company (the duplicate rule's candidates, pg_trgm), and the
# search's own keys, each tagged with its organization so that a key lists only that
# organization's rows (migration 0025): every three characters of search_text, the e-mail and
# the phone (lovedcrm_search_grams), and search_text's words with their one-letter-less forms
# (lovedcrm_search_words). No pending list: a search never reads new entries row by row.
Index(
    "ix_leads_search_company",
    Lead.organization_id,
    folded(Lead.company).label("expr"),
    postgresql_using="gin",
    postgresql_ops={"expr": "gin_trgm_ops"},
    postgresql_with={"fastupdate": "off"},
)
Index(
    "ix_leads_search_grams",
    func.lovedcrm_search_grams(
        Lead.organization_id,
        Lead.search_text,
        func.lower(cast(Lead.email, Text)),
        cast(Lead.phone, Text),
    ),
    postgresql_using="gin",
    postgresql_with={"fastupdate": "off"},
)
Index(
    "ix_leads_search_words",
    func.lovedcrm_search_words(Lead.organization_id, Lead.search_text),
    postgresql_using="gin",
    postgresql_with={"fastupdate": "off"},
)


class LeadActivity(TenantMixin, Base):
    __tablename__ = "lead_activities"
    __table_args__ = (
        org_id_unique("lead_activities"),
        same_org_fk("lead_activities", "lead_id", "leads", ondelete="CASCADE"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    lead_id: Mapped[uuid.UUID] = mapped_column()
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    activity_type: Mapped[str] = mapped_column(String(50))
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    duration_minutes: Mapped[int | None] = mapped_column(Integer)
    external_id: Mapped[str | None] = mapped_column(String(255))
    external_provider: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[datetime | None] = created_at_col()


Index("ix_lead_activities_org_id", LeadActivity.organization_id)
Index("ix_lead_activities_lead_id", LeadActivity.lead_id)
Index("ix_lead_activities_org_type", LeadActivity.organization_id, LeadActivity.activity_type)
Index("ix_lead_activities_created_at", LeadActivity.created_at.desc())
# Deviation: the spec's predicate (created_at > NOW() - INTERVAL '30 days') is not immutable,
# which PostgreSQL refuses in an index predicate; the index covers every row instead.
Index(
    "ix_lead_activities_org_recent",
    LeadActivity.organization_id,
    LeadActivity.created_at.desc(),
)
# The timeline's order (migration 0010).
Index(
    "ix_lead_activities_org_lead_created",
    LeadActivity.organization_id,
    LeadActivity.lead_id,
    LeadActivity.created_at,
    LeadActivity.id,
)
