"""Sentiment of customer messages: stored on each inbound message, corrected by members,
learned per organization.

- :func:`label_inbound` (the ``message.received`` subscriber) analyses the message with the
  organization's active model, else the offline analyser, and stores ``sentiment_score``,
  ``urgency_score``, ``ai_processed_at`` and ``metadata.sentiment`` (label, signals, source)
  on the message and on its timeline entry, in the same transaction; a negative message
  from a hot lead (score >= ``HOT_LEAD_SCORE``) adds an entry for its owner on the lead's
  timeline (there is no notification centre yet, issue 20).
- :func:`correct` records a member's label as an ``ai_training_data`` row
  (``data_type = 'sentiment_label'``) and puts it on the message; with enough corrections a
  training job is queued (``assistant.train``).
- :func:`train_organization` (the job) fits the organization's model and keeps it active
  only when it beats the default analyser on held-out corrections.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from lovedcrm.assistant import sentiment, train
from lovedcrm.assistant.models import AiSentimentModel, AiTrainingData
from lovedcrm.audit import service as audit
from lovedcrm.core import clock
from lovedcrm.core.errors import Conflict, NotFound, ValidationFailed
from lovedcrm.core.principal import Principal
from lovedcrm.jobs.queue import enqueue
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.activities import NewActivity, record_activities
from lovedcrm.leads.models import Lead
from lovedcrm.messaging.models import Message

DATA_TYPE = "sentiment_label"
TRAIN = "assistant.train"
HOT_LEAD_SCORE = 70
ALERT_ACTIVITY = "sentiment_alert"


class TrainPayload(BaseModel):
    pass


# --- the organization's model (cached per process, keyed by when it was trained) -------------

_models: dict[uuid.UUID, tuple[datetime | None, train.OrgModel]] = {}


async def active_model(session: AsyncSession, org_id: uuid.UUID) -> train.OrgModel | None:
    row = (
        await session.execute(
            select(AiSentimentModel.id, AiSentimentModel.trained_at).where(
                AiSentimentModel.organization_id == org_id, AiSentimentModel.is_active.is_(True)
            )
        )
    ).first()
    if row is None:
        _models.pop(org_id, None)
        return None
    cached = _models.get(org_id)
    if cached is not None and cached[0] == row.trained_at:
        return cached[1]
    blob = (
        await session.execute(
            select(AiSentimentModel.artifact).where(AiSentimentModel.id == row.id)
        )
    ).scalar_one()
    if not blob:
        return None
    model = train.OrgModel.loads(blob)
    _models[org_id] = (row.trained_at, model)
    return model


_MODELS_KEY = "assistant.sentiment_models"


async def analyse(
    session: AsyncSession, org_id: uuid.UUID, content: str | None, *, reuse: bool = False
) -> sentiment.Analysis:
    """The organization's model when one is active, else the offline analyser. With
    ``reuse``, the model looked up once per unit of work (a batch of inbound messages asks
    once, not once per message)."""
    if content and content.strip():
        if reuse:
            known: dict[uuid.UUID, train.OrgModel | None] = session.info.setdefault(_MODELS_KEY, {})
            if org_id not in known:
                known[org_id] = await active_model(session, org_id)
            model = known[org_id]
        else:
            model = await active_model(session, org_id)
        if model is not None:
            return model.analyse(content)
    return sentiment.analyse(content)


# --- storing -----------------------------------------------------------------------------------

# The timeline entry of the message carries the badges too (the lead page reads no message).
_STORE_ACTIVITY = text(
    """
    UPDATE lead_activities
       SET metadata = COALESCE(metadata, '{}'::jsonb)
                      || jsonb_build_object('sentiment', CAST(:data AS jsonb))
     WHERE organization_id = :org AND lead_id = :lead AND activity_type = 'message'
       AND metadata ->> 'message_id' = :mid
    """
)


# Inbound messages are labelled in bulk just before their unit of work commits: one statement
# for every message of a batch and one for their timeline entries, whatever the batch's size.
_STORE_MANY = text(
    """
    UPDATE messages AS m
       SET sentiment_score = u.score, urgency_score = u.urgency, ai_processed_at = :at,
           metadata = COALESCE(m.metadata, '{}'::jsonb) || jsonb_build_object('sentiment', u.data)
      FROM unnest(CAST(:ids AS uuid[]), CAST(:scores AS float8[]), CAST(:urgencies AS int[]),
                  CAST(:data AS jsonb[])) AS u(id, score, urgency, data)
     WHERE m.organization_id = :org AND m.id = u.id
    """
)
_STORE_ACTIVITY_MANY = text(
    """
    UPDATE lead_activities AS a
       SET metadata = COALESCE(a.metadata, '{}'::jsonb) || jsonb_build_object('sentiment', u.data)
      FROM unnest(CAST(:leads AS uuid[]), CAST(:mids AS text[]), CAST(:data AS jsonb[]))
           AS u(lead_id, mid, data)
     WHERE a.organization_id = :org AND a.lead_id = u.lead_id AND a.activity_type = 'message'
       AND a.metadata ->> 'message_id' = u.mid
    """
)
_PENDING_KEY = "assistant.sentiment_pending"


@dataclass(frozen=True)
class _Labelled:
    org_id: uuid.UUID
    message_id: uuid.UUID
    lead_id: uuid.UUID | None
    result: sentiment.Analysis
    data: str


def _pending(session: AsyncSession) -> list[_Labelled]:
    pending: list[_Labelled] | None = session.info.get(_PENDING_KEY)
    if pending is None:
        pending = session.info[_PENDING_KEY] = []
        sync = session.sync_session
        event.listen(sync, "before_commit", _write_pending, once=True)
        event.listen(sync, "after_rollback", _drop_pending, once=True)
    return pending


def _drop_pending(sync: Session) -> None:
    sync.info.pop(_PENDING_KEY, None)
    sync.info.pop(_MODELS_KEY, None)


def _write_pending(sync: Session) -> None:
    """Runs inside the commit (the sync session, on the async session's connection)."""
    pending: list[_Labelled] = sync.info.pop(_PENDING_KEY, None) or []
    sync.info.pop(_MODELS_KEY, None)
    at = clock.now()
    for org_id in dict.fromkeys(p.org_id for p in pending):
        rows = [p for p in pending if p.org_id == org_id]
        sync.execute(
            _STORE_MANY,
            {
                "org": org_id,
                "at": at,
                "ids": [p.message_id for p in rows],
                "scores": [p.result.score for p in rows],
                "urgencies": [p.result.urgency for p in rows],
                "data": [p.data for p in rows],
            },
        )
        linked = [p for p in rows if p.lead_id is not None]
        if linked:
            sync.execute(
                _STORE_ACTIVITY_MANY,
                {
                    "org": org_id,
                    "leads": [p.lead_id for p in linked],
                    "mids": [str(p.message_id) for p in linked],
                    "data": [p.data for p in linked],
                },
            )


def _badge_data(result: sentiment.Analysis, corrected: str | None = None) -> dict[str, Any]:
    data = result.as_dict()
    if corrected is not None:
        data["label"] = corrected
        data["corrected"] = True
    return data


async def label_inbound(
    session: AsyncSession,
    org_id: uuid.UUID,
    message_id: uuid.UUID,
    lead_id: uuid.UUID | None,
    content: str | None,
) -> sentiment.Analysis | None:
    """Analyse one inbound message (a message without text is left alone); it is stored
    with the others of its unit of work when that commits."""
    if not content or not content.strip():
        return None
    result = await analyse(session, org_id, content, reuse=True)
    data = json.dumps(_badge_data(result))
    _pending(session).append(_Labelled(org_id, message_id, lead_id, result, data))
    if lead_id is not None and result.label == "negative":
        await _alert_hot_lead(session, org_id, lead_id, message_id, result)
    return result


async def _alert_hot_lead(
    session: AsyncSession,
    org_id: uuid.UUID,
    lead_id: uuid.UUID,
    message_id: uuid.UUID,
    result: sentiment.Analysis,
) -> None:
    lead = await session.get(Lead, lead_id)
    if lead is None or lead.organization_id != org_id or (lead.lead_score or 0) < HOT_LEAD_SCORE:
        return
    await record_activities(
        session,
        [
            NewActivity(
                lead,
                activity_type=ALERT_ACTIVITY,
                title="Negative message from a hot lead",
                metadata={
                    "message_id": str(message_id),
                    "owner_id": str(lead.assigned_to) if lead.assigned_to else None,
                    "lead_score": lead.lead_score,
                    "sentiment_score": result.score,
                },
            )
        ],
    )


# --- corrections -------------------------------------------------------------------------------


async def get_message(
    session: AsyncSession, principal: Principal, message_id: uuid.UUID
) -> Message:
    """An inbound or outbound message of a lead the member can see (404 otherwise)."""
    principal.require("messages:read")
    msg = await session.get(Message, message_id)
    if msg is None or msg.organization_id != principal.org() or msg.lead_id is None:
        raise NotFound("Message not found.")
    await leads_service.get_lead(session, principal, msg.lead_id)  # 404 unless visible
    return msg


def sentiment_of(msg: Message) -> dict[str, Any]:
    """What is stored for a message (label, score, urgency, signals, source, corrected)."""
    data = dict((msg.metadata_ or {}).get("sentiment") or {})
    return {
        "message_id": msg.id,
        "label": data.get("label"),
        "score": msg.sentiment_score,
        "urgency": msg.urgency_score,
        "signals": list(data.get("signals") or []),
        "source": data.get("source"),
        "corrected": bool(data.get("corrected")),
    }


_CANONICAL = {"negative": -0.5, "neutral": 0.0, "positive": 0.5}


async def correct(
    session: AsyncSession, principal: Principal, message_id: uuid.UUID, label: str
) -> Message:
    """A member's label for an inbound message: a training row, and the message shows it."""
    principal.require("messages:write")
    if label not in sentiment.LABELS:
        raise ValidationFailed("The label must be negative, neutral or positive.")
    msg = await get_message(session, principal, message_id)
    if msg.direction != "inbound" or not (msg.content or "").strip():
        raise Conflict(
            "Only a customer's text message can be labelled.", code="not_a_customer_text"
        )
    now = clock.now()
    session.add(
        AiTrainingData(
            organization_id=principal.org(),
            created_by=principal.user_id,
            data_type=DATA_TYPE,
            category=label,
            input_text=msg.content or "",
            expected_output=label,
            is_approved=True,
            approved_by=principal.user_id,
            approved_at=now,
        )
    )
    previous = sentiment_of(msg)
    score = msg.sentiment_score
    if score is None or sentiment.label_of(score) != label:
        score = _CANONICAL[label]
    stored: dict[str, Any] = dict((msg.metadata_ or {}).get("sentiment") or {})
    if not stored:
        stored = sentiment.analyse(msg.content).as_dict()
    stored.update(label=label, corrected=True)
    msg.metadata_ = {**(msg.metadata_ or {}), "sentiment": stored}
    msg.sentiment_score = score
    if msg.urgency_score is None:
        msg.urgency_score = int(stored.get("urgency") or 0)
    msg.ai_processed_at = now
    await session.flush()
    await session.execute(
        _STORE_ACTIVITY,
        {
            "data": json.dumps(stored),
            "org": principal.org(),
            "lead": msg.lead_id,
            "mid": str(msg.id),
        },
    )
    await audit.record(
        session,
        action="sentiment.corrected",
        resource_type="message",
        resource_id=msg.id,
        organization_id=principal.org(),
        user_id=principal.user_id,
        changes={"label": [previous["label"], label]},
    )
    labels = await correction_labels(session, principal.org())
    if train.enough(labels):
        await enqueue(
            session,
            TRAIN,
            TrainPayload(),
            organization_id=principal.org(),
            dedupe_key=f"assistant.train:{principal.org()}",
        )
    return msg


async def correction_labels(session: AsyncSession, org_id: uuid.UUID) -> list[str]:
    rows = await session.execute(
        select(AiTrainingData.expected_output).where(
            AiTrainingData.organization_id == org_id, AiTrainingData.data_type == DATA_TYPE
        )
    )
    return [str(r) for r in rows.scalars()]


async def model_status(session: AsyncSession, principal: Principal) -> dict[str, Any]:
    """Corrections so far and the organization's model (if any)."""
    principal.require("messages:read")
    org = principal.org()
    counts = await session.execute(
        select(AiTrainingData.expected_output, func.count())
        .where(AiTrainingData.organization_id == org, AiTrainingData.data_type == DATA_TYPE)
        .group_by(AiTrainingData.expected_output)
    )
    by_label = {str(k): int(v) for k, v in counts.all()}
    row = (
        await session.execute(
            select(AiSentimentModel).where(AiSentimentModel.organization_id == org)
        )
    ).scalar_one_or_none()
    return {
        "corrections": sum(by_label.values()),
        "corrections_by_label": by_label,
        "needed": train.MIN_ROWS,
        "model": None
        if row is None
        else {
            "active": row.is_active,
            "trained_rows": row.trained_rows,
            "heldout_rows": row.heldout_rows,
            "heldout_accuracy": row.heldout_accuracy,
            "default_heldout_accuracy": row.default_heldout_accuracy,
            "trained_at": row.trained_at,
        },
        "in_use": "org_model" if row is not None and row.is_active else "lexicon",
    }


async def train_organization(session: AsyncSession, org_id: uuid.UUID) -> dict[str, Any]:
    """Fit the organization's model on its corrections; keep it active only if it beat the
    default analyser on the held-out ones. Fewer than enough corrections: nothing changes."""
    rows = (
        await session.execute(
            select(AiTrainingData.input_text, AiTrainingData.expected_output)
            .where(AiTrainingData.organization_id == org_id, AiTrainingData.data_type == DATA_TYPE)
            .order_by(AiTrainingData.created_at, AiTrainingData.id)
        )
    ).all()
    texts = [str(r[0]) for r in rows]
    labels = [str(r[1]) for r in rows]
    if not train.enough(labels):
        return {"trained": False, "corrections": len(labels)}
    judged = train.train_and_judge(texts, labels)
    row = (
        await session.execute(
            select(AiSentimentModel).where(AiSentimentModel.organization_id == org_id)
        )
    ).scalar_one_or_none()
    if row is None:
        row = AiSentimentModel(organization_id=org_id)
        session.add(row)
    row.is_active = judged.active
    row.trained_rows = judged.trained_rows
    row.heldout_rows = judged.heldout_rows
    row.heldout_accuracy = judged.heldout_accuracy
    row.default_heldout_accuracy = judged.default_heldout_accuracy
    row.details = {"classes": judged.classes, "features": len(judged.model.vocab)}
    row.artifact = judged.model.dumps()
    row.trained_at = clock.now()
    await session.flush()
    return {
        "trained": True,
        "active": judged.active,
        "heldout_accuracy": judged.heldout_accuracy,
        "default_heldout_accuracy": judged.default_heldout_accuracy,
    }
