"""JSON routes for lead scoring (thin: rules in scoring.service)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from lovedcrm.core.deps import Require, SessionDep, SettingsDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.leads.access import organization_settings
from lovedcrm.scoring import service, store
from lovedcrm.scoring.schemas import (
    FactorOut,
    LeadScoreOut,
    ModelRefOut,
    ModelsOut,
    OutcomesOut,
    RetrainOut,
    RulesIn,
    RulesOut,
    model_out,
)
from lovedcrm.web.i18n import Localizer, choose_locale, localizer_for

router = APIRouter(prefix="/api/v1", tags=["scoring"])
Reader = Annotated[Principal, Depends(Require("leads:read"))]
ReportReader = Annotated[Principal, Depends(Require("reports:read"))]
Manager = Annotated[Principal, Depends(Require("settings:manage"))]


def _outcomes(counts: service.Outcomes) -> OutcomesOut:
    won_needed, lost_needed = counts.needed
    return OutcomesOut(
        won=counts.won, lost=counts.lost, won_needed=won_needed, lost_needed=lost_needed
    )


async def _localizer(request: Request, session: SessionDep, principal: Principal) -> Localizer:
    """The factors' language: the organization's, else the caller's Accept-Language."""
    org_settings = await organization_settings(session, principal.org())
    locale = choose_locale(None, org_settings.get("locale"), request.headers.get("accept-language"))
    return localizer_for(locale, org_settings)


@router.get(
    "/leads/{lead_id}/score",
    response_model=LeadScoreOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def lead_score(
    lead_id: uuid.UUID,
    request: Request,
    principal: Reader,
    session: SessionDep,
    settings: SettingsDep,
) -> LeadScoreOut:
    """The lead's score and win probability as of now, with the factors pushing it up and
    down in words (the organization's language). Only for a lead you can see."""
    found = await service.lead_score(
        session,
        principal,
        lead_id,
        secret=settings.secret_key.get_secret_value(),
        loc=await _localizer(request, session, principal),
    )
    scorer = found.scorer
    row = scorer.row if scorer.model is not None else None
    return LeadScoreOut(
        lead_id=found.lead.id,
        score=found.scored.score,
        probability=(
            None if found.scored.probability is None else round(found.scored.probability, 4)
        ),
        stored_score=found.lead.lead_score if found.lead.score_last_calculated_at else None,
        score_last_calculated_at=found.lead.score_last_calculated_at,
        model=ModelRefOut(
            id=row.id if row is not None else None,
            model_type="ml_model" if row is not None else "rules_based",
            model_version=row.model_version if row is not None else None,
            calibrated=row is not None,
        ),
        factors_up=[FactorOut(**f.__dict__) for f in found.up],
        factors_down=[FactorOut(**f.__dict__) for f in found.down],
        outcomes=_outcomes(found.outcomes),
    )


@router.get("/scoring/models", response_model=ModelsOut, responses=problem_responses(401, 403))
async def list_models(
    principal: ReportReader, session: SessionDep, settings: SettingsDep
) -> ModelsOut:
    """Every model of the organization, newest first, with its metrics on held-out recent
    outcomes; which one is active, and how many outcomes there are (and are still needed)."""
    found = await service.status(session, principal, secret=settings.secret_key.get_secret_value())
    active = found.scorer.row
    return ModelsOut(
        items=[model_out(r) for r in found.rows],
        active_model_id=active.id if active is not None else None,
        active_model_type="ml_model" if found.scorer.kind == store.ML else "rules_based",
        outcomes=_outcomes(found.outcomes),
        training_queued=found.queued_training,
        artifact_refused=found.scorer.refused,
    )


@router.post(
    "/scoring/retrain",
    response_model=RetrainOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(401, 403, 409),
)
async def retrain(principal: Manager, session: SessionDep) -> RetrainOut:
    """Train a new model now (in the background). 409 ``not_enough_outcomes`` says how many
    more won and lost leads the organization needs."""
    job_id = await service.request_training(session, principal)
    return RetrainOut(job_id=job_id, status="queued" if job_id else "already_queued")


@router.get("/scoring/rules", response_model=RulesOut, responses=problem_responses(401, 403))
async def get_rules(principal: ReportReader, session: SessionDep) -> RulesOut:
    """The rules model's points (used until the organization has enough outcomes)."""
    return RulesOut.of(await service.get_rules(session, principal))


@router.put("/scoring/rules", response_model=RulesOut, responses=problem_responses(401, 403, 422))
async def put_rules(body: RulesIn, principal: Manager, session: SessionDep) -> RulesOut:
    """Replace the rules; a rule left out takes its default. The leads are rescored."""
    return RulesOut.of(await service.update_rules(session, principal, body.as_rules()))
