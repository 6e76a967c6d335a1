"""What the reports answer (the JSON API and the pages show the same objects)."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, Field


class Period(BaseModel):
    start: date = Field(description="First day (organization time), inclusive.")
    end: date = Field(description="Last day (organization time), inclusive.")
    days: int


class AppliedFilters(BaseModel):
    period: Period
    previous: Period = Field(description="The period of equal length just before.")
    owner_id: uuid.UUID | None = None
    source: str | None = None
    stage_id: uuid.UUID | None = None
    own_only: bool = Field(description="True when only the reader's own leads are counted.")


class Kpis(BaseModel):
    leads_created: int
    won: int
    lost: int
    win_rate: float | None = Field(description="won / (won + lost) closed in the period.")
    won_value: Decimal
    average_deal_size: Decimal | None
    sales_cycle_median_days: float | None
    sales_cycle_average_days: float | None


class OverviewReport(BaseModel):
    filters: AppliedFilters
    current: Kpis
    previous: Kpis


class FunnelStep(BaseModel):
    stage_id: uuid.UUID | None = Field(description="None for the last step, won.")
    name: str
    reached: int = Field(description="Leads of the cohort that reached this step or beyond.")
    conversion_from_previous: float | None


class FunnelReport(BaseModel):
    filters: AppliedFilters
    cohort: int = Field(description="Leads created in the period.")
    previous_cohort: int
    steps: list[FunnelStep]
    overall_conversion: float | None
    previous_overall_conversion: float | None


class StageTime(BaseModel):
    stage_id: uuid.UUID
    name: str
    stays: int = Field(description="Stays in the stage that ended in the period.")
    median_days: float | None
    p75_days: float | None
    average_days: float | None
    open_now: int = Field(description="Leads in the stage now.")


class StagesReport(BaseModel):
    filters: AppliedFilters
    stages: list[StageTime]


class OwnerRow(BaseModel):
    owner_id: uuid.UUID | None
    name: str | None
    leads_created: int
    won: int
    lost: int
    win_rate: float | None
    won_value: Decimal
    open_leads: int
    open_value: Decimal
    activities: int


class OwnersReport(BaseModel):
    filters: AppliedFilters
    owners: list[OwnerRow]


class SourceRow(BaseModel):
    source: str | None
    leads: int = Field(description="Leads created in the period.")
    won: int = Field(description="Of those, won by now.")
    conversion: float | None
    won_value: Decimal
    previous_leads: int


class SourcesReport(BaseModel):
    filters: AppliedFilters
    sources: list[SourceRow]


class TemplateRow(BaseModel):
    template_id: uuid.UUID
    family_id: uuid.UUID
    name: str
    is_variant: bool
    sends: int
    answered: int
    answer_rate: float | None
    converted: int
    conversion: float | None
    median_response_minutes: float | None


class VariantComparison(BaseModel):
    family_id: uuid.UUID
    leader_id: uuid.UUID
    leader_name: str
    other_id: uuid.UUID
    other_name: str
    leader_sends: int
    other_sends: int
    leader_rate: float | None
    other_rate: float | None
    test: str = "two-proportion z-test on the answer rate"
    z: float | None
    p_value: float | None
    enough_data: bool
    minimum_sends: int = Field(description="Sends each variant needs before a verdict.")
    significant: bool


class TemplatesReport(BaseModel):
    filters: AppliedFilters
    templates: list[TemplateRow]
    comparisons: list[VariantComparison]


class WhatsappRow(BaseModel):
    owner_id: uuid.UUID | None
    name: str | None
    conversations: int = Field(description="Leads whose first message came in the period.")
    answered: int
    answer_rate: float | None
    median_first_response_minutes: float | None
    p75_first_response_minutes: float | None


class WhatsappReport(BaseModel):
    filters: AppliedFilters
    owners: list[WhatsappRow]
    total: WhatsappRow


class ActivityKind(BaseModel):
    activity_type: str
    count: int
    previous: int


class ActivityDay(BaseModel):
    day: date
    count: int


class ActivityMember(BaseModel):
    user_id: uuid.UUID
    name: str | None
    count: int


class ActivityReport(BaseModel):
    filters: AppliedFilters
    total: int
    previous_total: int
    kinds: list[ActivityKind]
    days: list[ActivityDay]
    members: list[ActivityMember]


class Bottleneck(BaseModel):
    stage_id: uuid.UUID
    name: str
    median_days: float | None
    history_median_days: float | None
    conversion: float | None
    history_conversion: float | None
    slowest: bool
    lowest_conversion: bool
    slower_than_usual: bool
    converting_less_than_usual: bool


class StalledLead(BaseModel):
    lead_id: uuid.UUID
    full_name: str
    days_in_stage: float


class StalledStage(BaseModel):
    stage_id: uuid.UUID
    name: str
    threshold_days: int = Field(description="The stage's p75 time in whole days (at least 1).")
    count: int
    leads: list[StalledLead] = Field(description="The longest stalled first (up to 5).")
    url: str = Field(description="The leads list filtered to these leads' stage.")


class Action(BaseModel):
    kind: str = Field(description="stalled, unanswered or bottleneck.")
    text: str
    count: int
    stage: str | None = None
    days: int | None = None
    names: list[str] = Field(default_factory=list, description="Some of the leads named.")
    url: str


class OptimizationReport(BaseModel):
    filters: AppliedFilters
    bottlenecks: list[Bottleneck]
    stalled: list[StalledStage]
    actions: list[Action]
    enough_history: bool


class Recomputed(BaseModel):
    leads: int
    spans: int
    activity_buckets: int
