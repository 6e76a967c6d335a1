"""The organization's scoring models (``lead_scoring_models`` rows) and the scorer built from
the active one: a calibrated model whose signed artifact verifies, else the rules.

One row per model ever made: rules (``rules_based``, its points in ``config_data.rules``)
and trained models (``ml_model``), active or kept as history, failed trainings included (with
their error). At most one row is active (a unique partial index); none active means the rules.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import func, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.scoring import artifacts, rules
from lovedcrm.scoring.artifacts import ArtifactRefused, Effect, ScoringModel
from lovedcrm.scoring.models import LeadScoringModel

log = structlog.stdlib.get_logger("lovedcrm.scoring")

RULES = "rules_based"
ML = "ml_model"


async def active_row(session: AsyncSession, organization_id: uuid.UUID) -> LeadScoringModel | None:
    found: LeadScoringModel | None = (
        await session.execute(
            select(LeadScoringModel).where(
                LeadScoringModel.organization_id == organization_id,
                LeadScoringModel.is_active.is_(True),
            )
        )
    ).scalar_one_or_none()
    return found


async def rules_row(session: AsyncSession, organization_id: uuid.UUID) -> LeadScoringModel | None:
    """The organization's latest rules row (None while it uses the default rules)."""
    found: LeadScoringModel | None = (
        await session.execute(
            select(LeadScoringModel)
            .where(
                LeadScoringModel.organization_id == organization_id,
                LeadScoringModel.model_type == RULES,
            )
            .order_by(LeadScoringModel.created_at.desc(), LeadScoringModel.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    return found


def rules_of(row: LeadScoringModel | None) -> dict[str, Any]:
    stored = (row.config_data or {}).get("rules") if row is not None else None
    try:
        return rules.validate(stored) if stored is not None else dict(rules.DEFAULT_RULES)
    except rules.RulesError:
        return dict(rules.DEFAULT_RULES)


async def all_rows(session: AsyncSession, organization_id: uuid.UUID) -> list[LeadScoringModel]:
    return list(
        (
            await session.execute(
                select(LeadScoringModel)
                .where(LeadScoringModel.organization_id == organization_id)
                .order_by(LeadScoringModel.created_at.desc(), LeadScoringModel.id.desc())
            )
        ).scalars()
    )


async def next_version(session: AsyncSession, organization_id: uuid.UUID) -> str:
    count = await session.scalar(
        select(func.count()).where(LeadScoringModel.organization_id == organization_id)
    )
    return str(int(count or 0) + 1)


async def activate(session: AsyncSession, row: LeadScoringModel) -> None:
    """Make ``row`` the organization's active model (the previous one stays as history)."""
    await session.execute(
        update(LeadScoringModel)
        .where(
            LeadScoringModel.organization_id == row.organization_id,
            LeadScoringModel.is_active.is_(True),
            LeadScoringModel.id != row.id,
        )
        .values(is_active=False, updated_at=func.now())
    )
    await session.flush()
    row.is_active = True
    await session.flush()


async def ensure_rules_row(session: AsyncSession, organization_id: uuid.UUID) -> LeadScoringModel:
    """The rules row, made (with the default rules) if the organization has none; active when
    no other model is."""
    row = await rules_row(session, organization_id)
    if row is None:
        row = LeadScoringModel(
            id=uuid.uuid4(),
            organization_id=organization_id,
            model_name="Rules",
            model_version=await next_version(session, organization_id),
            model_type=RULES,
            config_data={"status": "rules", "rules": dict(rules.DEFAULT_RULES)},
            scoring_factors={},
            is_active=False,
        )
        session.add(row)
        await session.flush()
    if await active_row(session, organization_id) is None:
        await activate(session, row)
    return row


# --- the scorer ----------------------------------------------------------------------------------


@dataclass
class Scored:
    score: int
    probability: float | None  # calibrated; None under the rules
    effects: list[Effect] = field(default_factory=list)  # log-odds (model) or points (rules)


@dataclass
class Scorer:
    """Scores records with the active model, or with the rules."""

    organization_id: uuid.UUID
    row: LeadScoringModel | None
    model: ScoringModel | None
    rules: dict[str, Any]
    refused: str | None = None  # why a trained model's artifact was refused

    @property
    def kind(self) -> str:
        return ML if self.model is not None else RULES

    @property
    def model_id(self) -> uuid.UUID | None:
        return self.row.id if self.row is not None and self.model is not None else None

    def score_many(self, records: list[dict[str, Any]]) -> list[Scored]:
        if not records:
            return []
        if self.model is not None:
            probabilities = self.model.predict_records(records)
            return [Scored(round(float(p) * 100), float(p)) for p in probabilities]
        return [Scored(rules.score(self.rules, r)[0], None) for r in records]

    def explain(self, record: dict[str, Any]) -> Scored:
        if self.model is not None:
            probability, effects = self.model.explain(record)
            return Scored(round(probability * 100), probability, effects)
        points, hits = rules.score(self.rules, record)
        return Scored(points, None, [Effect(h.feature, float(h.points)) for h in hits])


async def load_model(
    session: AsyncSession, secret: str, row: LeadScoringModel, signed: str | None, version: str
) -> ScoringModel:
    """The row's verified model, cached by organization, id, signature and row version
    (``xmin``): any change to the stored row is verified again before use."""
    key = (row.organization_id, row.id, f"{signed or ''}:{version}")
    model = artifacts.cached(key)
    if model is not None:
        return model
    blob = (
        await session.execute(
            select(LeadScoringModel.artifact).where(LeadScoringModel.id == row.id)
        )
    ).scalar_one_or_none()
    model = artifacts.open_artifact(secret, row.organization_id, row.id, blob, signed)
    artifacts.remember(key, model)
    return model


async def scorer_for(session: AsyncSession, organization_id: uuid.UUID, secret: str) -> Scorer:
    """What scores the organization's leads now. A trained model whose artifact does not
    verify is refused (logged): the rules score instead, never an unverified model."""
    found: Any = (
        await session.execute(
            select(
                LeadScoringModel,
                LeadScoringModel.artifact_signature,
                literal_column("lead_scoring_models.xmin::text").label("row_version"),
            ).where(
                LeadScoringModel.organization_id == organization_id,
                LeadScoringModel.is_active.is_(True),
            )
        )
    ).one_or_none()
    if found is None:  # no model yet: the default rules
        return Scorer(organization_id, None, None, dict(rules.DEFAULT_RULES))
    row, signed, version = found[0], found[1], str(found[2])
    if row.model_type != ML:
        return Scorer(organization_id, row, None, rules_of(row))
    try:
        model = await load_model(session, secret, row, signed, version)
    except ArtifactRefused as exc:
        log.error(
            "scoring model artifact refused",
            organization_id=str(organization_id),
            model_id=str(row.id),
            reason=str(exc),
        )
        fallback = rules_of(await rules_row(session, organization_id))
        return Scorer(organization_id, row, None, fallback, refused=str(exc))
    return Scorer(organization_id, row, model, rules_of(None))


async def store_artifact(
    session: AsyncSession, secret: str, row: LeadScoringModel, artifact: dict[str, Any]
) -> None:
    blob, signed = artifacts.seal(secret, row.organization_id, row.id, artifact)
    row.artifact = blob
    row.artifact_signature = signed
    await session.flush()
