"""JSON routes for message sentiment (thin: rules in assistant.service)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from lovedcrm.assistant import service
from lovedcrm.assistant.schemas import (
    AnalyseIn,
    AnalysisOut,
    CorrectionIn,
    ModelStatusOut,
    SentimentOut,
)
from lovedcrm.core.deps import Require, SessionDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal

router = APIRouter(prefix="/api/v1", tags=["assistant"])
Reader = Annotated[Principal, Depends(Require("messages:read"))]
Writer = Annotated[Principal, Depends(Require("messages:write"))]


@router.get(
    "/messages/{message_id}/sentiment",
    response_model=SentimentOut,
    responses=problem_responses(401, 403, 404),
)
async def message_sentiment(
    message_id: uuid.UUID, principal: Reader, session: SessionDep
) -> SentimentOut:
    """The message's stored sentiment, urgency and signals."""
    msg = await service.get_message(session, principal, message_id)
    return SentimentOut.model_validate(service.sentiment_of(msg))


@router.post(
    "/messages/{message_id}/sentiment",
    response_model=SentimentOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def correct_sentiment(
    message_id: uuid.UUID, body: CorrectionIn, principal: Writer, session: SessionDep
) -> SentimentOut:
    """Correct the label of a customer's message. The correction is kept as training data;
    with enough of them the organization's own model is trained and used where it beats the
    default analyser."""
    msg = await service.correct(session, principal, message_id, body.label)
    return SentimentOut.model_validate(service.sentiment_of(msg))


@router.post(
    "/assistant/sentiment/analyse",
    response_model=AnalysisOut,
    responses=problem_responses(401, 403, 422),
)
async def analyse_text(body: AnalyseIn, principal: Reader, session: SessionDep) -> AnalysisOut:
    """Analyse a text as an inbound message would be (nothing is stored)."""
    result = await service.analyse(session, principal.org(), body.text)
    return AnalysisOut.model_validate(result.as_dict())


@router.get(
    "/assistant/sentiment/model",
    response_model=ModelStatusOut,
    responses=problem_responses(401, 403),
)
async def model_status(principal: Reader, session: SessionDep) -> ModelStatusOut:
    """Corrections so far, and the organization's model: held-out accuracy beside the default
    analyser's, and which of the two labels new messages."""
    return ModelStatusOut.model_validate(await service.model_status(session, principal))
