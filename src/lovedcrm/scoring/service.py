"""Lead scoring: a lead's score and its reasons, the models' status, the rules, rescoring and
(re)training. The public face of the ``scoring`` domain.

- Scores are written by jobs (``scoring.jobs``): a lead is rescored ``DEBOUNCE`` after it or
  its activity changes (one job per lead per window, ``schedule_rescore``), every open lead
  nightly, and all of an organization's leads after its model or rules change.
- ``lead_score`` = 100 × the calibrated probability under a trained model, the rules' points
  otherwise; ``probability_percentage`` is written only by a trained (calibrated) model.
- Training (``train_organization``) runs in a child process (``scoring.training``) so the
  web process never loads scikit-learn nor blocks its event loop; the new model becomes
  active only if it beats the active one on held-out recent outcomes
  (:func:`promotion`), else it is kept as history. A failed training leaves the active model
  in place and is recorded with its error.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.auth.models import OrganizationMember, User
from lovedcrm.core import clock
from lovedcrm.core.errors import Conflict, ValidationFailed
from lovedcrm.core.principal import Principal
from lovedcrm.jobs.periodic import period_start
from lovedcrm.jobs.queue import enqueue
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.access import organization_settings
from lovedcrm.leads.models import Lead, PipelineStage
from lovedcrm.organizations.custom_fields import definitions_in
from lovedcrm.scoring import factors, features, rules, store
from lovedcrm.scoring.factors import Factor, Names
from lovedcrm.scoring.models import LeadScoringModel
from lovedcrm.scoring.store import Scored, Scorer
from lovedcrm.web.i18n import Localizer

RESCORE_LEAD = "scoring.rescore_lead"
RESCORE_ORGANIZATION = "scoring.rescore_organization"
TRAIN = "scoring.train"
DEBOUNCE = timedelta(seconds=30)
CHUNK = 1000


class LeadPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lead_id: uuid.UUID


class OrganizationPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = "scheduled"


class TrainPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requested_by: uuid.UUID | None = None


# --- keeping scores current ------------------------------------------------------------------


async def schedule_rescore(
    session: AsyncSession, organization_id: uuid.UUID, lead_id: uuid.UUID
) -> None:
    """Rescore the lead at the end of the current ``DEBOUNCE`` window: every change within
    the window shares one job, which runs after all of them."""
    start = period_start(clock.now(), DEBOUNCE)
    await enqueue(
        session,
        RESCORE_LEAD,
        LeadPayload(lead_id=lead_id),
        organization_id=organization_id,
        scheduled_for=start + DEBOUNCE,
        dedupe_key=f"scoring:lead:{lead_id}:{start.isoformat()}",
    )


async def schedule_organization_rescore(
    session: AsyncSession, organization_id: uuid.UUID, reason: str
) -> None:
    start = period_start(clock.now(), timedelta(minutes=1))
    await enqueue(
        session,
        RESCORE_ORGANIZATION,
        OrganizationPayload(reason=reason),
        organization_id=organization_id,
        dedupe_key=f"scoring:organization:{organization_id}:{reason}:{start.isoformat()}",
    )


# A score is not an edit: the board's optimistic version is left alone (migration 0004's
# trigger reads lovedcrm.skip_version). The setting is made in the statement itself (a row
# of the join, so before any row is updated) and cleared after it.
_WRITE = text(
    """
    UPDATE leads AS l
       SET lead_score = u.score,
           probability_percentage = COALESCE(u.probability, l.probability_percentage),
           score_last_calculated_at = :at
      FROM (SELECT set_config('lovedcrm.skip_version', 'on', true)) AS skip(version),
           unnest(CAST(:ids AS uuid[]), CAST(:scores AS int[]), CAST(:probabilities AS int[]))
           AS u(id, score, probability)
     WHERE l.id = u.id AND l.organization_id = :org AND skip.version = 'on'
    """
)
_RESET = text("SELECT set_config('lovedcrm.skip_version', '', true)")


async def write_scores(
    session: AsyncSession,
    organization_id: uuid.UUID,
    lead_ids: Sequence[uuid.UUID],
    scored: Sequence[Scored],
    at: datetime,
) -> None:
    if not lead_ids:
        return
    await session.execute(
        _WRITE,
        {
            "org": organization_id,
            "at": at,
            "ids": list(lead_ids),
            "scores": [s.score for s in scored],
            "probabilities": [
                None if s.probability is None else round(s.probability * 100) for s in scored
            ],
        },
    )
    await session.execute(_RESET)


async def custom_definitions(
    session: AsyncSession, organization_id: uuid.UUID
) -> list[dict[str, Any]]:
    return definitions_in(await organization_settings(session, organization_id))


async def rescore(
    session: AsyncSession,
    organization_id: uuid.UUID,
    secret: str,
    lead_ids: Sequence[uuid.UUID] | None = None,
) -> int:
    """Score the open leads among ``lead_ids`` (all open leads when None) with the active
    model and write the scores; how many were scored."""
    now = clock.now()
    scorer = await store.scorer_for(session, organization_id, secret)
    definitions = await custom_definitions(session, organization_id)
    if lead_ids is None:
        query = select(Lead.id).where(
            Lead.organization_id == organization_id, Lead.status.in_(features.OPEN_STATUSES)
        )
        lead_ids = list((await session.execute(query.order_by(Lead.id))).scalars())
    scored = 0
    for i in range(0, len(lead_ids), CHUNK):
        targets = [features.Target(lead_id) for lead_id in lead_ids[i : i + CHUNK]]
        records = await features.records_for(
            session, organization_id, targets, definitions, now, only_open=True
        )
        ids = list(records)
        await write_scores(
            session, organization_id, ids, scorer.score_many([records[k] for k in ids]), now
        )
        scored += len(ids)
    return scored


# --- a lead's score and its reasons ------------------------------------------------------------


@dataclass
class Outcomes:
    won: int
    lost: int

    @property
    def needed(self) -> tuple[int, int]:
        return rules.needed(self.won, self.lost)

    @property
    def enough(self) -> bool:
        return self.needed == (0, 0)


@dataclass
class LeadScore:
    lead: Lead
    scorer: Scorer
    scored: Scored
    up: list[Factor]
    down: list[Factor]
    outcomes: Outcomes


async def names_for(
    session: AsyncSession, organization_id: uuid.UUID, definitions: Sequence[dict[str, Any]]
) -> Names:
    stages = await session.execute(
        select(PipelineStage.id, PipelineStage.name).where(
            PipelineStage.organization_id == organization_id
        )
    )
    members = await session.execute(
        select(User.id, User.full_name, User.email)
        .join(OrganizationMember, OrganizationMember.user_id == User.id)
        .where(OrganizationMember.organization_id == organization_id)
    )
    return Names(
        stages={str(r.id): r.name for r in stages},
        members={str(r.id): r.full_name or r.email for r in members},
        custom_labels={str(d["key"]): str(d.get("label") or d["key"]) for d in definitions},
    )


async def calibrated_since(session: AsyncSession, organization_id: uuid.UUID) -> datetime | None:
    """Since when the organization's scores are a trained model's calibrated win
    probabilities (written to ``leads.probability_percentage``); None while its scores come
    from rules, whose ``probability_percentage`` is whatever a person typed. A lead scored at
    or after this time carries the model's probability."""
    row = await store.active_row(session, organization_id)
    if row is None or row.model_type != store.ML:
        return None
    times = [t for t in (row.training_completed_at, row.updated_at) if t is not None]
    return max(times) if times else None


async def outcome_counts(session: AsyncSession, organization_id: uuid.UUID) -> Outcomes:
    won, lost = await features.outcome_counts(session, organization_id)
    return Outcomes(won, lost)


async def lead_score(
    session: AsyncSession,
    principal: Principal,
    lead_id: uuid.UUID,
    *,
    secret: str,
    loc: Localizer,
) -> LeadScore:
    """The lead's score as of now with its strongest reasons (404 for a lead the principal
    may not see: the same scope as the lead itself)."""
    lead = await leads_service.get_lead(session, principal, lead_id)
    organization_id = principal.org()
    scorer = await store.scorer_for(session, organization_id, secret)
    definitions = await custom_definitions(session, organization_id)
    records = await features.records_for(
        session, organization_id, [features.Target(lead.id)], definitions, clock.now()
    )
    record = records[lead.id]
    scored = scorer.explain(record)
    names = await names_for(session, organization_id, definitions)
    names.custom_values = dict(lead.custom_fields or {})
    threshold = 0.02 if scorer.model is not None else 0.5
    up, down = factors.factors(loc, scored.effects, record, names, threshold=threshold)
    return LeadScore(lead, scorer, scored, up, down, await outcome_counts(session, organization_id))


# --- the models: status, rules, training on demand ---------------------------------------------


@dataclass
class Status:
    scorer: Scorer
    rows: list[LeadScoringModel]
    outcomes: Outcomes
    rules: dict[str, Any]
    queued_training: bool = False
    history: list[LeadScoringModel] = field(default_factory=list)


async def _training_queued(session: AsyncSession, organization_id: uuid.UUID) -> bool:
    found = await session.execute(
        text(
            "SELECT 1 FROM background_jobs WHERE organization_id = :org AND job_type = :t"
            " AND status IN ('pending', 'running', 'retrying') LIMIT 1"
        ),
        {"org": organization_id, "t": TRAIN},
    )
    return found.first() is not None


async def status(session: AsyncSession, principal: Principal, *, secret: str) -> Status:
    principal.require("reports:read")
    organization_id = principal.org()
    scorer = await store.scorer_for(session, organization_id, secret)
    rows = await store.all_rows(session, organization_id)
    return Status(
        scorer=scorer,
        rows=rows,
        outcomes=await outcome_counts(session, organization_id),
        rules=store.rules_of(await store.rules_row(session, organization_id)),
        queued_training=await _training_queued(session, organization_id),
        history=[r for r in rows if r.model_type == store.ML],
    )


async def get_rules(session: AsyncSession, principal: Principal) -> dict[str, Any]:
    principal.require("reports:read")
    return store.rules_of(await store.rules_row(session, principal.org()))


async def update_rules(
    session: AsyncSession, principal: Principal, raw: dict[str, Any]
) -> dict[str, Any]:
    """Replace the rules (missing keys take the defaults); the leads are rescored when the
    rules are what scores them."""
    principal.require("settings:manage")
    try:
        new = rules.validate(raw)
    except rules.RulesError as exc:
        raise ValidationFailed(
            f"The scoring rules are invalid: {exc}",
            code="invalid_rules",
            extra={"errors": [{"field": f"rules.{exc.field}", "message": exc.message}]},
        ) from exc
    organization_id = principal.org()
    row = await store.ensure_rules_row(session, organization_id)
    before = store.rules_of(row)
    row.config_data = {**(row.config_data or {}), "status": "rules", "rules": new}
    row.updated_at = func.now()
    await session.flush()
    await audit.record_by(
        session,
        principal,
        "update",
        "lead_scoring_model",
        row.id,
        audit.diff({"rules": before}, {"rules": new}),
    )
    if row.is_active:
        await schedule_organization_rescore(session, organization_id, "rules")
    return new


async def request_training(session: AsyncSession, principal: Principal) -> uuid.UUID | None:
    """Queue a training of the organization's model now (None when one was queued in the
    last minute); refused with how many outcomes are missing when there are too few."""
    principal.require("settings:manage")
    organization_id = principal.org()
    counts = await outcome_counts(session, organization_id)
    won_needed, lost_needed = counts.needed
    if won_needed or lost_needed:
        raise Conflict(
            f"A model needs at least {rules.MIN_WON} won and {rules.MIN_LOST} lost leads: "
            f"{won_needed} more won and {lost_needed} more lost to go.",
            code="not_enough_outcomes",
            extra={
                "won": counts.won,
                "lost": counts.lost,
                "won_needed": won_needed,
                "lost_needed": lost_needed,
            },
        )
    start = period_start(clock.now(), timedelta(minutes=1))
    job_id = await enqueue(
        session,
        TRAIN,
        TrainPayload(requested_by=principal.user_id),
        organization_id=organization_id,
        dedupe_key=f"scoring:train:{organization_id}:{start.isoformat()}",
    )
    await audit.record_by(
        session, principal, "retrain", "lead_scoring_model", None, {"job_id": str(job_id)}
    )
    return job_id
